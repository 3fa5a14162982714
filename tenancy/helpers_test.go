package tenancy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/tenancy"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// appMigrations are the test application's migrations: a notes table and a
// comments table referencing it, both per-tenant and protected, applied to
// the shared schema and to every dedicated tenant schema alike.
func appMigrations() fstest.MapFS {
	notes, err := tenancy.ProtectSQL("notes")
	if err != nil {
		panic(err)
	}
	comments, err := tenancy.ProtectSQL("comments")
	if err != nil {
		panic(err)
	}
	return fstest.MapFS{
		"001_notes.sql": {Data: []byte(`
CREATE TABLE notes (
    id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    ` + tenancy.TenantIDColumnSQL + `,
    body      text NOT NULL,
    n         integer NOT NULL DEFAULT 0
);
` + notes + `
CREATE TABLE comments (
    id        uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    ` + tenancy.TenantIDColumnSQL + `,
    note_id   uuid NOT NULL REFERENCES notes (id) ON DELETE CASCADE,
    body      text NOT NULL
);
` + comments)},
	}
}

type env struct {
	db    *pgtest.DB
	m     *tenancy.Manager
	owner *pgxpool.Pool // the superuser that owns the tables
	app   *pgxpool.Pool // the application role, subject to RLS
	role  string
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newEnv gives a test a migrated database, a Manager, and a pool connected
// as a fresh application role (cluster-wide, so uniquely named and dropped
// in cleanup).
func newEnv(t testing.TB, poolCfg ...func(*pgxpool.Config)) *env {
	t.Helper()
	return newEnvOn(t, nil, poolCfg...)
}

// newEnvOn is newEnv on srv (nil: the shared server).
func newEnvOn(t testing.TB, srv *pgtest.Server, poolCfg ...func(*pgxpool.Config)) *env {
	t.Helper()
	ctx := context.Background()
	var opts []pgtest.Option
	if srv != nil {
		opts = append(opts, pgtest.OnServer(srv))
	}
	db := pgtest.NewDB(t, append(opts, pgtest.WithSetup("tenancy-app-v1", func(ctx context.Context, pool *pgxpool.Pool) error {
		if err := tenancy.Migrate(ctx, pool); err != nil {
			return err
		}
		m, err := tenancy.New(tenancy.Config{TenantMigrations: appMigrations()})
		if err != nil {
			return err
		}
		_, err = m.MigrateApp(ctx, pool, "public")
		return err
	}))...)
	role := "tenancy_app_" + randHex(6)
	m, err := tenancy.New(tenancy.Config{TenantMigrations: appMigrations(), AppRole: role})
	require.NoError(t, err)
	e := &env{db: db, m: m, owner: db.Pool, role: role}
	e.app = newRolePool(t, db, role, func(pw string) error {
		return m.CreateAppRole(ctx, db.Pool, tenancy.AppRole{Name: role, Password: pw, Schemas: []string{"public"}})
	}, poolCfg...)
	return e
}

// newRolePool runs create (which makes role with password pw), connects a
// pool as the role, and drops the role in cleanup.
func newRolePool(t testing.TB, db *pgtest.DB, role string, create func(pw string) error, poolCfg ...func(*pgxpool.Config)) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	pw := randHex(12)
	require.NoError(t, create(pw))
	cfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	cfg.ConnConfig.User, cfg.ConnConfig.Password = role, pw
	pgtest.ApplyExecMode(t, cfg.ConnConfig)
	pgtest.ApplySession(t, cfg.ConnConfig)
	for _, f := range poolCfg {
		f(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		pool.Close()
		q := pgx.Identifier{role}.Sanitize()
		// A fresh connection: the pool's idle ones may have been killed by
		// a fault test (terminated backends, a server restart).
		conn, err := pgx.Connect(ctx, db.URL)
		if err != nil {
			t.Errorf("connecting to drop role %s: %v", role, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP OWNED BY "+q); err != nil {
			t.Errorf("dropping what %s owns: %v", role, err)
		}
		if _, err := conn.Exec(ctx, "DROP ROLE "+q); err != nil {
			t.Errorf("dropping role %s: %v", role, err)
		}
	})
	return pool
}

func (e *env) tenant(t testing.TB, slug string, iso tenancy.Isolation) tenancy.Tenant {
	t.Helper()
	tn, err := e.m.Create(context.Background(), e.owner, tenancy.NewTenant{Slug: slug, Name: strings.ToUpper(slug), Isolation: iso})
	require.NoError(t, err)
	return tn
}

func (e *env) insertNotes(t testing.TB, id uuid.UUID, n int) {
	t.Helper()
	err := e.m.WithTenant(context.Background(), e.app, id, func(tx pgx.Tx) error {
		for i := 0; i < n; i++ {
			if _, err := tx.Exec(context.Background(), `INSERT INTO notes (body, n) VALUES ($1, $2)`, fmt.Sprintf("note %d of %s", i, id), i); err != nil {
				return err
			}
		}
		return nil
	})
	require.NoError(t, err)
}

// visible returns the tenant_ids of every note the tenant's transaction sees.
func (e *env) visible(t *testing.T, db tenancy.DB, id uuid.UUID) []uuid.UUID {
	t.Helper()
	var out []uuid.UUID
	err := e.m.WithTenant(context.Background(), db, id, func(tx pgx.Tx) error {
		rows, err := tx.Query(context.Background(), `SELECT tenant_id FROM notes`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		return err
	})
	require.NoError(t, err)
	return out
}

type mapFile = fstest.MapFile

type bytesBuffer = bytes.Buffer
