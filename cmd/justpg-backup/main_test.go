package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/backup"
	"github.com/justpg/justpg/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func runCLI(t *testing.T, args ...string) (code int, out, errOut string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(context.Background(), args, &o, &e)
	return code, o.String(), e.String()
}

func TestCLIDumpListVerifyDrillPrune(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	var num int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&num))
	for _, tool := range []string{"pg_dump", "pg_restore"} {
		if _, err := backup.FindTool(ctx, "", tool, num/10000); err != nil {
			var te *backup.ToolError
			if errors.As(err, &te) {
				t.Skipf("skipping: %v", err)
			}
			require.NoError(t, err)
		}
	}
	_, err := db.Pool.Exec(ctx, `CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 321) g`)
	require.NoError(t, err)
	repo := t.TempDir()

	code, out, errOut := runCLI(t, "dump", "--quiet", "--db", db.URL, "--repo", repo)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "1 tables, 321 rows")
	id := regexp.MustCompile(`dump (\S+) of`).FindStringSubmatch(out)[1]

	code, out, _ = runCLI(t, "list", "--repo", repo, "--db", db.URL)
	require.Equal(t, 0, code)
	assert.Contains(t, out, id)
	assert.Contains(t, out, "1 backup(s)")

	code, out, _ = runCLI(t, "verify", "--repo", repo, id)
	require.Equal(t, 0, code)
	assert.Contains(t, out, "verified "+id)

	code, out, errOut = runCLI(t, "drill", "--quiet", "--db", db.URL, "--repo", repo)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "drill "+id+" passed: 1 tables, 321 rows")

	code, out, _ = runCLI(t, "prune", "--db", db.URL, "--repo", repo, "--daily", "1", "--dry-run")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "keep 1, delete 0")

	// Corrupt it: verify and drill fail with status 1.
	dump := filepath.Join(repo, "logical", id, "dump")
	require.NoError(t, os.Truncate(dump, 10))
	code, _, errOut = runCLI(t, "verify", "--repo", repo, id)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "checksum mismatch")
	code, out, _ = runCLI(t, "drill", "--quiet", "--db", db.URL, "--repo", repo, "--id", id)
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "FAILED")

	// Nothing is old enough to sweep; no base backups yet; a base backup
	// wants exactly one of --repo and --dir.
	code, out, errOut = runCLI(t, "sweep-drills", "--db", db.URL, "--max-age", "10000h")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "0 stale drill database(s) dropped")
	code, out, errOut = runCLI(t, "list-base", "--repo", repo)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "0 base backup(s)")
	code, _, errOut = runCLI(t, "basebackup", "--db", db.URL, "--repo", repo, "--dir", t.TempDir())
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "want --repo")
	code, _, errOut = runCLI(t, "restore-base", "--repo", repo, "not-an-id", t.TempDir())
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "is not a backup ID")
}

func TestCLIArchiveRestoreWAL(t *testing.T) {
	t.Parallel()
	repo := t.TempDir()
	src := filepath.Join(t.TempDir(), "seg")
	require.NoError(t, os.WriteFile(src, []byte("wal bytes"), 0o600))
	name := "00000001000000000000000A"
	code, _, errOut := runCLI(t, "archive-wal", "--repo", repo, src, name)
	require.Equal(t, 0, code, errOut)
	code, _, _ = runCLI(t, "archive-wal", "--repo", repo, src, name)
	require.Equal(t, 0, code, "identical: success")
	require.NoError(t, os.WriteFile(src, []byte("other bytes"), 0o600))
	code, _, errOut = runCLI(t, "archive-wal", "--repo", repo, src, name)
	require.Equal(t, 1, code)
	assert.Contains(t, errOut, "different WAL file")

	dst := filepath.Join(t.TempDir(), "RECOVERYXLOG")
	code, _, errOut = runCLI(t, "restore-wal", "--repo", repo, name, dst)
	require.Equal(t, 0, code, errOut)
	b, err := os.ReadFile(dst)
	require.NoError(t, err)
	assert.Equal(t, "wal bytes", string(b))
	code, _, _ = runCLI(t, "restore-wal", "--repo", repo, "00000002.history", dst)
	assert.Equal(t, 1, code, "missing: non-zero, as PostgreSQL expects")
}

func TestCLIUsage(t *testing.T) {
	t.Parallel()
	code, _, errOut := runCLI(t)
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "usage:")
	code, _, _ = runCLI(t, "nope")
	assert.Equal(t, 2, code)
	code, _, errOut = runCLI(t, "archive-wal", "--repo", t.TempDir(), "onlyone")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "want %p %f")
	code, _, _ = runCLI(t, "dump", "--db", "", "--repo", t.TempDir())
	assert.Equal(t, 2, code)
	code, _, _ = runCLI(t, "pitr", "--repo", t.TempDir(), "--base", "b", "--data", "d", "--target", "yesterday")
	assert.Equal(t, 2, code)
	code, _, _ = runCLI(t, "help")
	assert.Equal(t, 0, code)
}
