package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/internal/ident"
)

var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// Shared returns the process-wide server, starting it on first use. It fails
// the test with HowToGetOne when no server can be found. The server lives
// until the process exits.
func Shared(tb testing.TB) *Server {
	tb.Helper()
	srv, err := sharedServer(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return srv
}

func sharedServer(ctx context.Context) (*Server, error) {
	shared.once.Do(func() {
		shared.srv, shared.err = Start(ctx)
	})
	return shared.srv, shared.err
}

// Main runs a package's tests and then stops the shared server cleanly. It is
// optional (the server is removed at exit anyway); use it as
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	if shared.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		dropTemplates(ctx, shared.srv)
		_ = shared.srv.Stop(ctx)
		cancel()
	}
	os.Exit(code)
}

// DB is one test's database.
type DB struct {
	// Pool is connected to the database; it is closed in t.Cleanup.
	Pool *pgxpool.Pool
	// Name is the database's name.
	Name string
	// URL connects to the database with the admin role.
	URL string
	// Server is the server the database lives on.
	Server *Server
}

// AdminExec runs sql (any number of statements) on a session of its own,
// opened from URL with none of the pool's settings (search_path, exec mode,
// EnvSession's): as the database's owner runs a migration. It fails the
// test on an error.
func (d *DB) AdminExec(tb testing.TB, sql string) {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, d.URL)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
		tb.Fatal(err)
	}
}

// TerminateBackends ends every session connected to this database, including
// the pool's, and returns how many it ended.
func (d *DB) TerminateBackends(tb testing.TB) int {
	tb.Helper()
	n, err := d.Server.TerminateBackends(context.Background(), d.Name)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// Option configures NewDB.
type Option func(*dbOptions)

type dbOptions struct {
	setupKey string
	setup    func(ctx context.Context, pool *pgxpool.Pool) error
	poolCfg  []func(*pgxpool.Config)
	server   *Server
}

// WithSetup clones the database from a template prepared once per process by
// setup (for example a package's Migrate), so each test starts migrated
// without paying for the migration again. key names the template: the same
// key must always mean the same setup.
func WithSetup(key string, setup func(ctx context.Context, pool *pgxpool.Pool) error) Option {
	return func(o *dbOptions) { o.setupKey, o.setup = key, setup }
}

// WithPoolConfig adjusts the pool's configuration before it connects (after
// the exec mode EnvExecMode selects and the settings EnvSession gives are
// set, which fn may change). Several
// run in the order given.
func WithPoolConfig(fn func(*pgxpool.Config)) Option {
	return func(o *dbOptions) { o.poolCfg = append(o.poolCfg, fn) }
}

// OnServer creates the database on srv instead of the shared server.
func OnServer(srv *Server) Option {
	return func(o *dbOptions) { o.server = srv }
}

// NewDB creates a fresh database for this test, cloned from a template that
// has Extensions (and the WithSetup state), and a pool connected to it. The
// pool is closed and the database dropped in t.Cleanup.
func NewDB(tb testing.TB, opts ...Option) *DB {
	tb.Helper()
	var o dbOptions
	for _, opt := range opts {
		opt(&o)
	}
	srv := o.server
	if srv == nil {
		srv = Shared(tb)
	}
	ctx := context.Background()
	tpl, err := templateFor(ctx, srv, o.setupKey, o.setup)
	if err != nil {
		tb.Fatal(err)
	}
	name := "justpg_test_" + randomHex(6)
	if err := createDatabase(ctx, srv, name, tpl); err != nil {
		tb.Fatal(err)
	}
	d := &DB{Name: name, URL: srv.DatabaseURL(name), Server: srv}
	tb.Cleanup(func() {
		if d.Pool != nil {
			d.Pool.Close()
		}
		if err := dropDatabase(context.Background(), srv, name); err != nil {
			tb.Errorf("pgtest: dropping %s: %v", name, err)
		}
	})
	cfg, err := pgxpool.ParseConfig(d.URL)
	if err != nil {
		tb.Fatal(err)
	}
	if err := applyExecMode(cfg.ConnConfig); err != nil {
		tb.Fatal(err)
	}
	if err := applySession(cfg.ConnConfig); err != nil {
		tb.Fatal(err)
	}
	for _, fn := range o.poolCfg {
		fn(cfg)
	}
	if d.Pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		tb.Fatal(err)
	}
	return d
}

// NewCluster starts a private local cluster for one test (for tests that
// change server settings, restart the server or need a second cluster) and
// removes it in t.Cleanup. The test is skipped when no local server binaries
// exist, for example when only JUSTPG_TEST_DATABASE_URL is available.
func NewCluster(tb testing.TB, opts ClusterOptions) *Server {
	tb.Helper()
	if _, err := FindBinDir(); err != nil {
		tb.Skipf("pgtest: this test needs local PostgreSQL server binaries: %v", err)
	}
	srv, err := StartLocal(context.Background(), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = srv.Stop(context.Background()) })
	return srv
}

var templates struct {
	mu    sync.Mutex
	byKey map[string]*templateState
}

type templateState struct {
	once sync.Once
	name string
	err  error
}

// templateFor returns the name of the template database for (srv, key),
// creating it on first use.
func templateFor(ctx context.Context, srv *Server, key string, setup func(context.Context, *pgxpool.Pool) error) (string, error) {
	templates.mu.Lock()
	if templates.byKey == nil {
		templates.byKey = map[string]*templateState{}
	}
	mapKey := fmt.Sprintf("%d/%s", srv.id, key)
	st := templates.byKey[mapKey]
	if st == nil {
		st = &templateState{}
		templates.byKey[mapKey] = st
	}
	templates.mu.Unlock()

	st.once.Do(func() {
		st.name, st.err = makeTemplate(ctx, srv, key, setup)
	})
	return st.name, st.err
}

func makeTemplate(ctx context.Context, srv *Server, key string, setup func(context.Context, *pgxpool.Pool) error) (string, error) {
	base := "template0"
	if key != "" {
		var err error
		if base, err = templateFor(ctx, srv, "", nil); err != nil {
			return "", err
		}
	}
	name := "justpg_tpl_" + randomHex(6)
	if err := createDatabase(ctx, srv, name, base); err != nil {
		return "", err
	}
	cfg, err := pgxpool.ParseConfig(srv.DatabaseURL(name))
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	if err := applyExecMode(cfg.ConnConfig); err != nil {
		return "", err
	}
	if err := applySession(cfg.ConnConfig); err != nil {
		return "", err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	defer pool.Close()
	if key == "" {
		for _, ext := range Extensions {
			if _, err := pool.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS "+ident.MustQuote(ext)); err != nil {
				return "", fmt.Errorf("pgtest: creating extension %s (install the PostgreSQL contrib modules): %w", ext, err)
			}
		}
	} else if err := setup(ctx, pool); err != nil {
		return "", fmt.Errorf("pgtest: template setup %q: %w", key, err)
	}
	pool.Close() // no session may remain on a template while it is cloned
	return name, nil
}

func createDatabase(ctx context.Context, srv *Server, name, template string) error {
	conn, err := pgx.Connect(ctx, srv.adminURL)
	if err != nil {
		return fmt.Errorf("pgtest: connecting to %s server: %w", srv.kind, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	sql := "CREATE DATABASE " + ident.MustQuote(name) + " TEMPLATE " + ident.MustQuote(template)
	if template == "template0" {
		sql += " ENCODING 'UTF8'"
	}
	// Cloning fails while another session is connected to the template;
	// such sessions are short-lived (autovacuum), so retry briefly.
	for attempt := 0; ; attempt++ {
		_, err = conn.Exec(ctx, sql)
		if err == nil || attempt == 50 || !strings.Contains(err.Error(), "being accessed by other users") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("pgtest: creating database %s: %w", name, err)
	}
	if srv.kind == KindURL {
		// Mark it so that stale ones left by a killed process can be found.
		_, _ = conn.Exec(ctx, "COMMENT ON DATABASE "+ident.MustQuote(name)+" IS 'justpg pgtest "+time.Now().UTC().Format(time.RFC3339)+"'")
	}
	return nil
}

func dropDatabase(ctx context.Context, srv *Server, name string) error {
	conn, err := pgx.Connect(ctx, srv.adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident.MustQuote(name)+" WITH (FORCE)")
	return err
}

func dropTemplates(ctx context.Context, srv *Server) {
	templates.mu.Lock()
	defer templates.mu.Unlock()
	for _, st := range templates.byKey {
		if st.name != "" {
			_ = dropDatabase(ctx, srv, st.name)
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ExampleDatabase gives the example programs a database: DATABASE_URL when it
// is set, otherwise a database named name on a throwaway server found as
// Start does. stop releases what was started.
func ExampleDatabase(ctx context.Context, name string) (dbURL string, stop func(), err error) {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u, func() {}, nil
	}
	srv, err := Start(ctx)
	if err != nil {
		return "", nil, err
	}
	if err := createDatabase(ctx, srv, name, "template0"); err != nil {
		_ = srv.Stop(ctx)
		return "", nil, err
	}
	return srv.DatabaseURL(name), func() { _ = srv.Stop(context.Background()) }, nil
}

// ForExample gives a package's Example function what NewDB gives a test: a
// fresh database on the process's shared server. Call done to close the pool
// and drop the database. It exits the process (log.Fatal) if no server can be
// had, since an Example has no testing.TB to fail.
func ForExample() (db *DB, done func()) {
	tb := &exampleTB{}
	db = NewDB(tb)
	return db, func() {
		for i := len(tb.cleanups) - 1; i >= 0; i-- {
			tb.cleanups[i]()
		}
	}
}

// exampleTB is the part of testing.TB that NewDB uses, for ForExample.
type exampleTB struct {
	testing.TB // nil: any other method panics, which NewDB never calls
	cleanups   []func()
}

func (*exampleTB) Helper()                   {}
func (tb *exampleTB) Cleanup(f func())       { tb.cleanups = append(tb.cleanups, f) }
func (*exampleTB) Fatal(args ...any)         { log.Fatal(args...) }
func (*exampleTB) Fatalf(f string, a ...any) { log.Fatalf(f, a...) }
func (*exampleTB) Errorf(f string, a ...any) { log.Printf(f, a...) }
func (*exampleTB) Skipf(f string, a ...any)  { log.Fatalf(f, a...) }
