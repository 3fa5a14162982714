package backup_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/backup"
)

func TestParseConnString(t *testing.T) {
	t.Parallel()
	p, err := backup.ParseConnString("postgres://u%40x:p%3Aw@db.example:6543/my%20db?sslmode=verify-full&pool_max_conns=4")
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"user": "u@x", "password": "p:w", "host": "db.example", "port": "6543",
		"dbname": "my db", "sslmode": "verify-full", "pool_max_conns": "4"}, p)
	_, err = backup.ParseConnString(`host=/tmp port = 5432 dbname='it''s' password='a\'b c' user=x\ y`)
	require.Error(t, err, "'' is not an escape in libpq conninfo")
	p, err = backup.ParseConnString(`host=/tmp port = 5432 dbname='a\'b c' user=x\ y`)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"host": "/tmp", "port": "5432", "dbname": "a'b c", "user": "x y"}, p)
	for _, bad := range []string{"host", "host='x", "=x"} {
		_, err := backup.ParseConnString(bad)
		assert.Error(t, err, bad)
	}
}

func FuzzParseConnString(f *testing.F) {
	for _, s := range []string{"host=x dbname='a b'", "postgres://u:p@h:1/d?sslmode=disable", `a='\'' b=\\`, "x=", "'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = backup.ParseConnString(s) // must not panic or hang
	})
}

func TestParseToolVersion(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int{
		"pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n": 15,
		"pg_restore (PostgreSQL) 17.2":                          17,
		"pg_dump (PostgreSQL) 18beta1":                          18,
		"pg_dump (PostgreSQL) 9.6.24":                           9,
	} {
		_, major, err := backup.ParseToolVersion(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, major, in)
	}
	_, _, err := backup.ParseToolVersion("bash: pg_dump: command not found")
	assert.Error(t, err)
}

func FuzzParseToolVersion(f *testing.F) {
	f.Add("pg_dump (PostgreSQL) 15.18")
	f.Add("(PostgreSQL) 99999999999999999999")
	f.Fuzz(func(t *testing.T, s string) {
		v, major, err := backup.ParseToolVersion(s)
		if err == nil {
			require.Positive(t, major)
			require.NotEmpty(t, v)
		}
	})
}

func TestFindToolErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	_, err := backup.FindTool(ctx, t.TempDir(), "pg_dump", 15)
	require.ErrorIs(t, err, backup.ErrToolMissing)
	assert.Contains(t, err.Error(), "postgresql-client-15")

	tool, err := backup.FindTool(ctx, "", "pg_dump", 0)
	if err != nil {
		t.Skipf("no pg_dump installed: %v", err)
	}
	_, err = backup.FindTool(ctx, "", "pg_dump", tool.Major+1)
	require.ErrorIs(t, err, backup.ErrToolTooOld)
	var te *backup.ToolError
	require.ErrorAs(t, err, &te)
	assert.Equal(t, tool.Major+1, te.Need)
	assert.Contains(t, err.Error(), "need version")
	assert.Contains(t, err.Error(), tool.Version)
}
