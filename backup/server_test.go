package backup_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/justpg/justpg/backup"
)

// Bad options are refused before pg_ctl runs; a setting name cannot carry
// anything to the shell that pg_ctl hands the server's options to.
func TestServerOptionsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	for name, o := range map[string]backup.ServerOptions{
		"no data directory": {},
		"negative port":     {DataDir: dir, Port: -1},
		"port too big":      {DataDir: dir, Port: 70000},
		"shell in a name":   {DataDir: dir, Settings: map[string]string{"work_mem=1MB; touch /tmp/x": "1"}},
		"empty name":        {DataDir: dir, Settings: map[string]string{"": "1"}},
	} {
		assert.ErrorIs(t, backup.StartServer(ctx, o), backup.ErrConfig, name)
	}
	assert.ErrorIs(t, backup.StopServer(ctx, backup.ServerOptions{}), backup.ErrConfig)
	// No server runs on an empty directory: pg_ctl's own error comes back.
	assert.Error(t, backup.StopServer(ctx, backup.ServerOptions{DataDir: dir}))
}
