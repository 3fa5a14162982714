package tenancy_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/tenancy"
)

// fuzzOps is the number of operations of each leak fuzz:
// TENANCY_FUZZ_OPS overrides the default of 10,000.
func fuzzOps(t *testing.T) int {
	if v := os.Getenv("TENANCY_FUZZ_OPS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err)
		return n
	}
	return 10_000
}

func TestLeakFuzzDirect(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *pgxpool.Config) { c.MaxConns = 3 })
	runLeakFuzz(t, e, e.app, fuzzOps(t))
}

func TestLeakFuzzThroughPgBouncer(t *testing.T) {
	t.Parallel()
	if _, err := pgtest.FindPgBouncer(); err != nil {
		t.Skip(err)
	}
	e := newEnv(t)
	// The role's password is not needed by a trust-auth test server; give
	// PgBouncer the role to log in as, and connect through it.
	b := pgtest.StartPgBouncer(t, e.db.Server, pgtest.PgBouncerOptions{Database: e.db.Name, User: e.role, PoolSize: 3})
	cfg, err := pgxpool.ParseConfig(b.URL())
	require.NoError(t, err)
	cfg.MaxConns = 8 // more clients than PgBouncer's 3 server connections
	// PgBouncer 1.18 in transaction mode keeps no prepared statements across
	// transactions: use unnamed statements (still bind parameters).
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	var user string
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT current_user`).Scan(&user))
	require.Equal(t, e.role, user, "PgBouncer logs in as the application role")
	runLeakFuzz(t, e, pool, fuzzOps(t))
}

// runLeakFuzz runs ops random operations from many goroutines on pool as
// random tenants (shared and dedicated): reads, writes, failing statements,
// rollbacks, cancelled statements, inserts for another tenant, unscoped
// queries. Every row read must belong to the scoped tenant, every scoped
// transaction must see its own tenant's setting and schema, every unscoped
// query must see nothing, and at the end each tenant must hold exactly the
// rows it committed.
func runLeakFuzz(t *testing.T, e *env, pool *pgxpool.Pool, ops int) {
	ctx := context.Background()
	type tenantState struct {
		t         tenancy.Tenant
		committed atomic.Int64
	}
	var tenants []*tenantState
	for i := 0; i < 8; i++ {
		iso := tenancy.Shared
		if i%4 == 3 {
			iso = tenancy.Dedicated
		}
		tenants = append(tenants, &tenantState{t: e.tenant(t, fmt.Sprintf("fuzz-%d", i), iso)})
	}
	errBoom := errors.New("boom")
	var done, reads, rowsRead, leaks, unscoped atomic.Int64
	var leakMsgs sync.Map
	leak := func(format string, args ...any) {
		leaks.Add(1)
		leakMsgs.Store(fmt.Sprintf(format, args...), true)
	}
	workers := 16
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, seed*7+1))
			for done.Add(1) <= int64(ops) {
				ts := tenants[rng.IntN(len(tenants))]
				me := ts.t
				other := tenants[rng.IntN(len(tenants))].t
				wantSchema := "public"
				if me.Isolation == tenancy.Dedicated {
					wantSchema = me.Schema
				}
				var err error
				switch op := rng.IntN(100); {
				case op < 40: // read, with the scope checked in the same statement
					reads.Add(1)
					err = e.m.WithTenant(ctx, pool, me.ID, func(tx pgx.Tx) error {
						rows, err := tx.Query(ctx, `SELECT current_setting('app.tenant_id'), current_schema(), n.tenant_id, n.body
							FROM (SELECT 1) d LEFT JOIN LATERAL (SELECT tenant_id, body FROM notes LIMIT 20) n ON true`)
						if err != nil {
							return err
						}
						var setting, schema string
						var tid *uuid.UUID
						var body *string
						_, err = pgx.ForEachRow(rows, []any{&setting, &schema, &tid, &body}, func() error {
							if setting != me.ID.String() || schema != wantSchema {
								leak("tenant %s saw setting %q schema %q", me.Slug, setting, schema)
							}
							if tid == nil {
								return nil // no rows yet
							}
							rowsRead.Add(1)
							if *tid != me.ID || !strings.HasPrefix(*body, me.Slug+":") {
								leak("tenant %s read row of %s (%q)", me.Slug, *tid, *body)
							}
							return nil
						})
						return err
					})
				case op < 70: // committed write
					err = e.m.WithTenant(ctx, pool, me.ID, func(tx pgx.Tx) error {
						var tid uuid.UUID
						var setting, schema string
						err := tx.QueryRow(ctx, `INSERT INTO notes (body) VALUES ($1)
							RETURNING tenant_id, current_setting('app.tenant_id'), current_schema()`, me.Slug+": ok").Scan(&tid, &setting, &schema)
						if err == nil && (tid != me.ID || setting != me.ID.String() || schema != wantSchema) {
							leak("tenant %s wrote row of %s with setting %q schema %q", me.Slug, tid, setting, schema)
						}
						return err
					})
					if err == nil {
						ts.committed.Add(1)
					}
				case op < 78: // write, then the caller fails: rolled back
					err = e.m.WithTenant(ctx, pool, me.ID, func(tx pgx.Tx) error {
						if _, err := tx.Exec(ctx, `INSERT INTO notes (body) VALUES ($1)`, me.Slug+": rolled back"); err != nil {
							return err
						}
						return errBoom
					})
					if errors.Is(err, errBoom) {
						err = nil
					}
				case op < 86: // write, then a failing statement
					err = e.m.WithTenant(ctx, pool, me.ID, func(tx pgx.Tx) error {
						if _, err := tx.Exec(ctx, `INSERT INTO notes (body) VALUES ($1)`, me.Slug+": failed"); err != nil {
							return err
						}
						_, err := tx.Exec(ctx, `SELECT 1/0`)
						return err
					})
					if pgCode(err) == "22012" {
						err = nil
					}
				case op < 93: // insert for another tenant: refused
					err = e.m.WithTenant(ctx, pool, me.ID, func(tx pgx.Tx) error {
						_, err := tx.Exec(ctx, `INSERT INTO notes (tenant_id, body) VALUES ($1, $2)`, other.ID, other.Slug+": planted")
						return err
					})
					switch {
					case pgCode(err) == "42501":
						err = nil
					case err == nil && other.ID != me.ID:
						leak("tenant %s inserted a row for %s", me.Slug, other.Slug)
					case err == nil:
						ts.committed.Add(1) // its own id: allowed
					}
				case op < 99: // unscoped, straight on the pool: sees nothing
					unscoped.Add(1)
					var n int
					var setting string
					err = pool.QueryRow(ctx, `SELECT count(*), coalesce(current_setting('app.tenant_id', true), '') FROM notes`).Scan(&n, &setting)
					if err == nil && (n != 0 || setting != "") {
						leak("unscoped query saw %d rows, setting %q", n, setting)
					}
				default: // a statement cancelled mid-transaction (1%: each costs a reconnect)
					cctx, cancel := context.WithTimeout(ctx, time.Duration(1+rng.IntN(5))*time.Millisecond)
					err = e.m.WithTenant(cctx, pool, me.ID, func(tx pgx.Tx) error {
						_, err := tx.Exec(cctx, `INSERT INTO notes (body) SELECT $1 FROM pg_sleep(0.05)`, me.Slug+": cancelled")
						return err
					})
					cancel()
					if err != nil {
						err = nil // cancelled (the outcome is checked by the final counts)
					} else {
						ts.committed.Add(1)
					}
				}
				if err != nil {
					errs <- fmt.Errorf("tenant %s: %w", me.Slug, err)
					return
				}
			}
		}(uint64(w + 1))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	leakMsgs.Range(func(k, _ any) bool { t.Error(k); return true })
	require.Zero(t, leaks.Load(), "leaks")

	var total int64
	for _, ts := range tenants {
		got := e.visible(t, e.app, ts.t.ID)
		assert.Len(t, got, int(ts.committed.Load()), "tenant %s holds exactly what it committed", ts.t.Slug)
		total += ts.committed.Load()
	}
	// As the owner, count every row in shared and dedicated tables: nothing
	// else was written anywhere.
	_, err := e.owner.Exec(ctx, `SELECT set_config('app.tenant_id', '', false)`)
	require.NoError(t, err)
	var all int64
	q := `SELECT (SELECT count(*) FROM public.notes)`
	for _, ts := range tenants {
		if ts.t.Schema != "" {
			q += ` + (SELECT count(*) FROM ` + pgx.Identifier{ts.t.Schema, "notes"}.Sanitize() + `)`
		}
	}
	require.NoError(t, e.owner.QueryRow(ctx, q).Scan(&all))
	assert.Equal(t, total, all)
	t.Logf("%d operations: %d scoped reads returning %d rows, %d unscoped queries, %d committed rows, 0 leaks",
		ops, reads.Load(), rowsRead.Load(), unscoped.Load(), total)
	require.Greater(t, rowsRead.Load(), int64(ops), "the reads really read rows")
}
