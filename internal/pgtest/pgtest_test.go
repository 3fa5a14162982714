package pgtest_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Two parallel tests write the same table; each must see only its own row.
func TestParallelDatabasesAreIsolated(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	names := map[string]bool{}
	for _, who := range []string{"alice", "bob"} {
		t.Run(who, func(t *testing.T) {
			t.Parallel()
			db := pgtest.NewDB(t)
			ctx := context.Background()
			mu.Lock()
			names[db.Name] = true
			mu.Unlock()
			_, err := db.Pool.Exec(ctx, `CREATE TABLE notes (who text)`)
			require.NoError(t, err)
			_, err = db.Pool.Exec(ctx, `INSERT INTO notes VALUES ($1)`, who)
			require.NoError(t, err)
			rows, err := db.Pool.Query(ctx, `SELECT who FROM notes`)
			require.NoError(t, err)
			got, err := pgx.CollectRows(rows, pgx.RowTo[string])
			require.NoError(t, err)
			assert.Equal(t, []string{who}, got)
		})
	}
	t.Cleanup(func() {
		assert.Len(t, names, 2, "each test got a database of its own")
	})
}

func TestDatabaseIsDroppedAfterTest(t *testing.T) {
	t.Parallel()
	var name string
	t.Run("inner", func(t *testing.T) {
		db := pgtest.NewDB(t)
		name = db.Name
		require.NoError(t, db.Pool.Ping(context.Background()))
	})
	srv := pgtest.Shared(t)
	conn, err := pgx.Connect(context.Background(), srv.AdminURL())
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var n int
	require.NoError(t, conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_database WHERE datname = $1`, name).Scan(&n))
	assert.Equal(t, 0, n, "database %s still exists after its test", name)
}

func TestExtensionsAreInstalled(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	var sim float64
	var unaccented string
	require.NoError(t, db.Pool.QueryRow(context.Background(),
		`SELECT similarity('postgres', 'postgre'), unaccent('crème brûlée')`).Scan(&sim, &unaccented))
	assert.Greater(t, sim, 0.5)
	assert.Equal(t, "creme brulee", unaccented)
	var exts []string
	rows, err := db.Pool.Query(context.Background(), `SELECT extname FROM pg_extension ORDER BY extname`)
	require.NoError(t, err)
	exts, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	for _, e := range pgtest.Extensions {
		assert.Contains(t, exts, e)
	}
}

func TestWithSetupPreparesTemplateOnce(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	calls := 0
	setup := func(ctx context.Context, pool *pgxpool.Pool) error {
		mu.Lock()
		calls++
		mu.Unlock()
		_, err := pool.Exec(ctx, `CREATE TABLE prepared (n int); INSERT INTO prepared VALUES (42)`)
		return err
	}
	for i := range 3 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			db := pgtest.NewDB(t, pgtest.WithSetup("prepared-test", setup))
			var n int
			require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT n FROM prepared`).Scan(&n))
			assert.Equal(t, 42, n)
			var sim float64
			require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT similarity('a','a')`).Scan(&sim),
				"a set-up template keeps the extensions")
		})
	}
	assert.Equal(t, 1, calls)
}

func TestTerminateBackendsKillsPoolConnections(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	ctx := context.Background()
	conn, err := db.Pool.Acquire(ctx)
	require.NoError(t, err)
	var pid uint32
	require.NoError(t, conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
	assert.GreaterOrEqual(t, db.TerminateBackends(t), 1)
	_, err = conn.Exec(ctx, `SELECT 1`)
	require.Error(t, err, "the terminated connection fails")
	conn.Release()
	// The pool replaces the dead connection.
	var newPid uint32
	require.Eventually(t, func() bool {
		return db.Pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&newPid) == nil
	}, 10*time.Second, 20*time.Millisecond)
	assert.NotEqual(t, pid, newPid)
}

func TestEnvURLIsUsedAsIs(t *testing.T) {
	// Not parallel: it sets an environment variable.
	srv := pgtest.Shared(t)
	t.Setenv(pgtest.EnvURL, srv.AdminURL())
	got, err := pgtest.Start(context.Background())
	require.NoError(t, err)
	assert.Equal(t, pgtest.KindURL, got.Kind())
	assert.Equal(t, srv.AdminURL(), got.AdminURL())
	db := pgtest.NewDB(t, pgtest.OnServer(got))
	require.NoError(t, db.Pool.Ping(context.Background()))
	require.NoError(t, got.Stop(context.Background()), "stopping a server found through the URL leaves it running")
	require.NoError(t, db.Pool.Ping(context.Background()))

	t.Setenv(pgtest.EnvURL, "postgres://nobody@127.0.0.1:1/none?connect_timeout=2")
	_, err = pgtest.Start(context.Background())
	require.ErrorContains(t, err, pgtest.EnvURL)
}

func TestContainerServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if ok, why := pgtest.DockerAvailable(ctx); !ok {
		t.Skipf("no Docker engine answers, so the testcontainers path cannot run here: %v", why)
	}
	srv, err := pgtest.StartContainer(ctx, "")
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Stop(context.Background()) })
	assert.Equal(t, pgtest.KindContainer, srv.Kind())
	db := pgtest.NewDB(t, pgtest.OnServer(srv))
	var sim float64
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT similarity('ab', 'ab')`).Scan(&sim))
	assert.Equal(t, 1.0, sim)
}

func TestRestartLocalCluster(t *testing.T) {
	t.Parallel()
	srv := pgtest.NewCluster(t, pgtest.ClusterOptions{Settings: map[string]string{"application_name": "restart-test"}})
	db := pgtest.NewDB(t, pgtest.OnServer(srv))
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)`)
	require.NoError(t, err)
	require.NoError(t, srv.Restart(ctx))
	var n int
	require.Eventually(t, func() bool {
		return db.Pool.QueryRow(ctx, `SELECT n FROM kept`).Scan(&n) == nil
	}, 20*time.Second, 20*time.Millisecond, "the pool reconnects after the restart")
	assert.Equal(t, 7, n)
	var app string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT current_setting('application_name')`).Scan(&app))
	assert.NotEmpty(t, app)
	dir, err := srv.DataDir()
	require.NoError(t, err)
	assert.FileExists(t, filepath.Join(dir, "PG_VERSION"))
}

// The child process starts a cluster and then panics. Afterwards nothing of
// the cluster may remain: no process, no files.
func TestClusterIsRemovedAfterPanic(t *testing.T) {
	t.Parallel()
	if _, err := pgtest.FindBinDir(); err != nil {
		t.Skip(err)
	}
	if os.Getenv("JUSTPG_PANIC_CHILD") != "" {
		t.Skip("child")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPanicChild$", "-test.v")
	cmd.Env = append(os.Environ(), "JUSTPG_PANIC_CHILD=1")
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "the child panics")
	var dir, port string
	for _, line := range strings.Split(string(out), "\n") {
		if d, ok := strings.CutPrefix(line, "CLUSTER "); ok {
			parts := strings.Fields(d)
			dir, port = parts[0], parts[1]
		}
	}
	require.NotEmpty(t, dir, "child output: %s", out)
	require.Eventually(t, func() bool {
		_, statErr := os.Stat(dir)
		c, dialErr := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second)
		if dialErr == nil {
			c.Close()
		}
		return os.IsNotExist(statErr) && dialErr != nil
	}, 60*time.Second, 100*time.Millisecond, "cluster dir %s or port %s still there", dir, port)
}

func TestPanicChild(t *testing.T) {
	if os.Getenv("JUSTPG_PANIC_CHILD") == "" {
		t.Skip("run by TestClusterIsRemovedAfterPanic")
	}
	srv, err := pgtest.StartLocal(context.Background(), pgtest.ClusterOptions{})
	require.NoError(t, err)
	dir, _ := srv.DataDir()
	port, _ := srv.Port()
	fmt.Printf("CLUSTER %s %d\n", filepath.Dir(dir), port)
	panic("simulated crash with a running cluster")
}

// A stale test database left on a shared server by a killed run is dropped
// by the next run that finds the server through the environment; a fresh
// one is left alone.
func TestStaleDatabasesAreDroppedOnSharedServer(t *testing.T) {
	srv := pgtest.Shared(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, srv.AdminURL())
	require.NoError(t, err)
	defer conn.Close(ctx)
	for name, age := range map[string]time.Duration{"justpg_test_stale0001": 7 * time.Hour, "justpg_test_fresh0001": time.Minute} {
		_, err := conn.Exec(ctx, "CREATE DATABASE "+name)
		require.NoError(t, err)
		_, err = conn.Exec(ctx, "COMMENT ON DATABASE "+name+" IS 'justpg pgtest "+time.Now().Add(-age).UTC().Format(time.RFC3339)+"'")
		require.NoError(t, err)
	}
	t.Cleanup(func() { _, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS justpg_test_fresh0001") })
	t.Setenv(pgtest.EnvURL, srv.AdminURL())
	_, err = pgtest.Start(ctx)
	require.NoError(t, err)
	var names []string
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE 'justpg_test_%0001' ORDER BY 1`)
	require.NoError(t, err)
	names, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	assert.Equal(t, []string{"justpg_test_fresh0001"}, names)
}

// BenchmarkNewDB measures what each test pays for its fresh database (the
// drops happen in the benchmark's clean-up, outside the timing).
func BenchmarkNewDB(b *testing.B) {
	pgtest.NewDB(b) // start the server and build the template first
	b.ResetTimer()
	for b.Loop() {
		pgtest.NewDB(b)
	}
}

// NewDB's pool runs in the mode JUSTPG_TEST_EXEC_MODE selects (pgx's default
// when it is unset), and WithPoolConfig sees that mode and may change it.
func TestExecModeFromEnvironment(t *testing.T) {
	t.Parallel()
	mode, set, err := pgtest.ExecMode()
	require.NoError(t, err)
	if !set {
		mode = pgx.QueryExecModeCacheStatement
	}
	var seen pgx.QueryExecMode
	db := pgtest.NewDB(t, pgtest.WithPoolConfig(func(c *pgxpool.Config) { seen = c.ConnConfig.DefaultQueryExecMode }))
	assert.Equal(t, mode, seen, "the mode WithPoolConfig sees")
	assert.Equal(t, mode, db.Pool.Config().ConnConfig.DefaultQueryExecMode)
	db = pgtest.NewDB(t, pgtest.WithPoolConfig(func(c *pgxpool.Config) {
		c.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	}))
	assert.Equal(t, pgx.QueryExecModeSimpleProtocol, db.Pool.Config().ConnConfig.DefaultQueryExecMode)
	var s string
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT $1::text`, "x").Scan(&s))
	assert.Equal(t, "x", s)
}
