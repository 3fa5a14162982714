package pgtest

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestMajorOf(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "15", majorOf("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n"))
	assert.Equal(t, "17", majorOf("postgres (PostgreSQL) 17.2"))
	assert.Equal(t, "18", majorOf("postgres (PostgreSQL) 18.0"))
	assert.Equal(t, "", majorOf("something else 15.1"))
	assert.Equal(t, "", majorOf("postgres (PostgreSQL) devel"))
}

func TestContainerImageFollowsLocalClients(t *testing.T) {
	t.Setenv(EnvImage, "")
	if localMajor() == "" {
		assert.Equal(t, DefaultImage, containerImage())
		return
	}
	assert.Equal(t, "postgres:"+localMajor()+"-alpine", containerImage())
	t.Setenv(EnvImage, "postgres:16")
	assert.Equal(t, "postgres:16", containerImage())
}
