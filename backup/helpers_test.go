package backup_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/backup"
	"github.com/justpg/justpg/internal/pgtest"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(runHelper())
	}
	pgtest.Main(m)
}

// helperEnv makes the test binary act as the archive/restore command
// PostgreSQL runs (see runHelper): the test's server calls the real Go
// functions, not a shell script.
const helperEnv = "JUSTPG_BACKUP_TEST_HELPER"

func runHelper() int {
	ctx := context.Background()
	args := os.Args[1:]
	if len(args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: archive|restore <repo> <path> <name>")
		return 2
	}
	repo, err := backup.NewDirRepository(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	switch os.Getenv(helperEnv) {
	case "archive":
		err = backup.ArchiveWAL(ctx, repo, args[1], args[2])
	case "restore":
		err = backup.RestoreWAL(ctx, repo, args[2], args[1])
	default:
		err = errors.New("unknown helper")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// newManager returns a Manager on db with a fresh local repository; it
// skips the test when the client programs are missing or older than the
// server (for example a newer server in a container).
func newManager(t *testing.T, db *pgtest.DB, cfg backup.Config) (*backup.Manager, *backup.DirRepository) {
	t.Helper()
	requireTools(t, db, "pg_dump", "pg_restore")
	repo, ok := cfg.Repository.(*backup.DirRepository)
	if cfg.Repository == nil {
		var err error
		repo, err = backup.NewDirRepository(t.TempDir())
		require.NoError(t, err)
		cfg.Repository = repo
		ok = true
	}
	if !ok {
		repo = nil
	}
	m, err := backup.New(db.Pool, cfg)
	require.NoError(t, err)
	return m, repo
}

func requireTools(t *testing.T, db *pgtest.DB, tools ...string) {
	t.Helper()
	var num int
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT current_setting('server_version_num')::int`).Scan(&num))
	for _, name := range tools {
		if _, err := backup.FindTool(context.Background(), "", name, num/10000); err != nil {
			var te *backup.ToolError
			if errors.As(err, &te) {
				t.Skipf("skipping: %v", err)
			}
			require.NoError(t, err)
		}
	}
}

// seed creates two tables (one with awkward names) and fills them.
func seed(t *testing.T, db *pgtest.DB, rows int) {
	t.Helper()
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `
		CREATE TABLE items (id bigserial PRIMARY KEY, sku text NOT NULL, qty int NOT NULL, note text, created timestamptz NOT NULL DEFAULT now());
		CREATE SCHEMA "odd ""schema""";
		CREATE TABLE "odd ""schema"""."Line Items" (id bigserial PRIMARY KEY, item_id bigint, amount numeric(12,2));
		CREATE TABLE empty_table (id int);`)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `INSERT INTO items (sku, qty, note) SELECT 'SKU-' || g, g % 97, md5(g::text) || md5((g*7)::text) FROM generate_series(1, $1) g`, rows)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `INSERT INTO "odd ""schema"""."Line Items" (item_id, amount) SELECT g, g * 1.25 FROM generate_series(1, $1::int / 3) g`, rows)
	require.NoError(t, err)
}

func count(t *testing.T, db *pgtest.DB, table string) int64 {
	t.Helper()
	var n int64
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM `+table).Scan(&n))
	return n
}

func tableRows(m *backup.Manifest, schema, table string) int64 {
	for _, tc := range m.Tables {
		if tc.Schema == schema && tc.Table == table {
			return tc.Rows
		}
	}
	return -1
}

// drillDatabaseExists reports whether the drill database name is still on
// the server. (Other tests drill in parallel on the same server, so only a
// drill's own database can be checked.)
func drillDatabaseExists(t *testing.T, db *pgtest.DB, name string) bool {
	t.Helper()
	var exists bool
	require.NoError(t, db.Pool.QueryRow(context.Background(),
		`SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)`, name).Scan(&exists))
	return exists
}

// killPgDump kills the pg_dump process whose command line mentions snapshot
// text marker, and reports whether it found one.
func killPgDump(marker string) bool {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := string(b)
		if strings.Contains(cmd, "pg_dump") && strings.Contains(cmd, marker) {
			var pid int
			if _, err := fmt.Sscanf(filepath.Base(filepath.Dir(p)), "%d", &pid); err == nil {
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					return true
				}
			}
		}
	}
	return false
}
