// Command tenancy compares row-level security (tenancy.WithTenant) with
// hand-written WHERE tenant_id = $1 on the same data and the same pool, and
// times creating and migrating many tenant schemas.
//
//	go run ./tenancy [-tenants 100] [-rows 100000] [-txs 4000] [-schemas 1000]
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/bench/internal/benchdb"
	"github.com/justpg/justpg/tenancy"
)

var (
	nTenants = flag.Int("tenants", 100, "tenants")
	nRows    = flag.Int("rows", 100_000, "notes rows, spread over the tenants")
	nTxs     = flag.Int("txs", 4000, "transactions per round per contender")
	rounds   = flag.Int("rounds", 3, "alternating rounds per contender")
	workers  = flag.Int("workers", 8, "concurrent clients")
	conns    = flag.Int("conns", 4, "pool size")
	nSchemas = flag.Int("schemas", 1000, "tenant schemas to create and migrate (0 skips)")
	variants = flag.Bool("variants", false, "also measure other ways of scoping a transaction (where WithTenant's cost goes)")
)

func main() {
	flag.Parse()
	ctx := context.Background()
	srv, err := benchdb.Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Stop(ctx)
	fmt.Println("machine:", benchdb.Machine())
	if err := rlsVsWhere(ctx, srv); err != nil {
		log.Fatal(err)
	}
	if *nSchemas > 0 {
		if err := schemas(ctx, srv); err != nil {
			log.Fatal(err)
		}
	}
}

func migrations() fstest.MapFS {
	protect, err := tenancy.ProtectSQL("notes")
	if err != nil {
		panic(err)
	}
	return fstest.MapFS{
		"001_notes.sql": {Data: []byte(`CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, ` +
			tenancy.TenantIDColumnSQL + `, n integer NOT NULL, body text NOT NULL);
CREATE INDEX notes_tenant_n_idx ON notes (tenant_id, n);
` + protect)},
	}
}

type contender struct {
	name  string
	point string
	rng   string
	ins   string
	rls   bool   // the table has the policy: statements carry no tenant id
	bare  bool   // scope with set_config alone instead of WithTenant
	enter string // with bare: statements (";"-separated) to scope the transaction instead of set_config
}

func rlsVsWhere(ctx context.Context, srv *benchdb.Server) error {
	owner, url, err := srv.FreshDB(ctx, "bench_tenancy", 0)
	if err != nil {
		return err
	}
	defer owner.Close()
	m, err := tenancy.New(tenancy.Config{TenantMigrations: migrations()})
	if err != nil {
		return err
	}
	if err := tenancy.Migrate(ctx, owner); err != nil {
		return err
	}
	if _, err := m.MigrateApp(ctx, owner, "public"); err != nil {
		return err
	}
	// The explicit-WHERE contender's table: the same columns, indexes and
	// rows, without the policy.
	if _, err := owner.Exec(ctx, `CREATE TABLE notes_plain (id bigint PRIMARY KEY GENERATED ALWAYS AS IDENTITY, tenant_id uuid NOT NULL, n integer NOT NULL, body text NOT NULL);
		CREATE INDEX ON notes_plain (tenant_id, n); CREATE INDEX ON notes_plain (tenant_id)`); err != nil {
		return err
	}
	ids := make([]uuid.UUID, *nTenants)
	for i := range ids {
		t, err := m.Create(ctx, owner, tenancy.NewTenant{Slug: fmt.Sprintf("t%04d", i), Name: "T"})
		if err != nil {
			return err
		}
		ids[i] = t.ID
	}
	if _, err := owner.Exec(ctx, `
		INSERT INTO notes (tenant_id, n, body) OVERRIDING SYSTEM VALUE
			SELECT ($1::uuid[])[1 + g % $2], g / $2, repeat('x', 100) FROM generate_series(0, $3 - 1) g;
		`, ids, *nTenants, *nRows); err != nil {
		return fmt.Errorf("loading: %w", err)
	}
	for _, q := range []string{
		`INSERT INTO notes_plain (tenant_id, n, body) OVERRIDING SYSTEM VALUE SELECT tenant_id, n, body FROM notes ORDER BY id`,
		`VACUUM ANALYZE notes`, `VACUUM ANALYZE notes_plain`,
	} {
		if _, err := owner.Exec(ctx, q); err != nil {
			return fmt.Errorf("loading: %w", err)
		}
	}
	// Each tenant's ids (the same in both tables: identical load order).
	byTenant := map[uuid.UUID][]int64{}
	rows, _ := owner.Query(ctx, `SELECT tenant_id, id FROM notes_plain`)
	var tid uuid.UUID
	var id int64
	if _, err := pgx.ForEachRow(rows, []any{&tid, &id}, func() error { byTenant[tid] = append(byTenant[tid], id); return nil }); err != nil {
		return err
	}
	role := "bench_tenancy_app"
	_, _ = owner.Exec(ctx, `DROP OWNED BY `+role)
	_, _ = owner.Exec(ctx, `DROP ROLE IF EXISTS `+role)
	if err := m.CreateAppRole(ctx, owner, tenancy.AppRole{Name: role, Password: "bench", Schemas: []string{"public"}}); err != nil {
		return err
	}
	defer func() {
		_, _ = owner.Exec(context.Background(), `DROP OWNED BY `+role)
		_, _ = owner.Exec(context.Background(), `DROP ROLE IF EXISTS `+role)
	}()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return err
	}
	cfg.ConnConfig.User, cfg.ConnConfig.Password = role, "bench"
	cfg.MaxConns = int32(*conns)
	app, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer app.Close()
	if err := tenancy.Check(ctx, app); err != nil {
		return err
	}

	rls := contender{name: "RLS (WithTenant)", rls: true,
		point: `SELECT body FROM notes WHERE id = $1`,
		rng:   `SELECT id, body FROM notes WHERE n >= $1 ORDER BY n LIMIT 20`,
		ins:   `INSERT INTO notes (n, body) VALUES ($1, $2)`}
	bare := rls
	bare.name, bare.bare = "RLS (set_config only)", true
	plain := contender{name: "WHERE tenant_id = $1",
		point: `SELECT body FROM notes_plain WHERE id = $1 AND tenant_id = $2`,
		rng:   `SELECT id, body FROM notes_plain WHERE tenant_id = $2 AND n >= $1 ORDER BY n LIMIT 20`,
		ins:   `INSERT INTO notes_plain (n, body, tenant_id) VALUES ($1, $2, $3)`}

	fmt.Printf("\nRLS vs explicit WHERE: %d tenants, %d rows, %d clients, pool of %d, mix 50%% point reads / 30%% range reads (20 rows) / 20%% inserts\n",
		*nTenants, *nRows, *workers, *conns)
	fmt.Println("  every contender runs BEGIN, the statements and COMMIT in a transaction of its own, with the same statements")
	fmt.Println("  (prepared and cached by pgx); they differ only in how the transaction is scoped to the tenant:")
	fmt.Println("    WHERE: BEGIN alone, then statements that name tenant_id = $n, on a table without a policy")
	fmt.Println("    RLS (set_config only): BEGIN pipelined with set_config('app.tenant_id', $1, true), then the statements, policy on")
	fmt.Println("    RLS (WithTenant): BEGIN pipelined with the tenant's shared lock and one statement (role check, tenant status, set_config), then the statements")
	fmt.Println("  (the contenders' transactions alternate in every client, so load from elsewhere hits them alike;")
	fmt.Println("   figures are summed transaction latencies, pool waits included)")
	for _, stmts := range []int{1, 5, 50} {
		txs := *nTxs * *rounds
		if stmts == 50 {
			txs /= 10
		}
		cs := []contender{plain, bare, rls}
		if *variants {
			cs = append(cs, variantContenders(bare)...)
		}
		lat, err := run(ctx, app, m, cs, ids, byTenant, stmts, txs)
		if err != nil {
			return err
		}
		p, b, q := lat[0], lat[1], lat[2]
		fmt.Printf("  %2d statements/transaction, %5d tx each: WHERE %7.3f ms/tx | RLS set_config only %7.3f ms/tx, / WHERE = %.3f (%+.1f%%) | RLS WithTenant %7.3f ms/tx, / WHERE = %.3f (%+.1f%%)\n",
			stmts, txs, ms(p, txs), ms(b, txs), b.Seconds()/p.Seconds(), 100*(b.Seconds()/p.Seconds()-1),
			ms(q, txs), q.Seconds()/p.Seconds(), 100*(q.Seconds()/p.Seconds()-1))
		for i, c := range cs[3:] {
			fmt.Printf("     variant %s: %.3f ms/tx, / WHERE = %.3f (%+.1f%%)\n", c.name, ms(lat[3+i], txs),
				lat[3+i].Seconds()/p.Seconds(), 100*(lat[3+i].Seconds()/p.Seconds()-1))
		}
	}
	return nil
}

func ms(d time.Duration, n int) float64 { return float64(d.Microseconds()) / 1000 / float64(n) }

// run executes txs transactions of stmts statements per contender from
// workers goroutines, each alternating between the contenders, and returns
// each contender's summed transaction latency.
func run(ctx context.Context, pool *pgxpool.Pool, m *tenancy.Manager, cs []contender, ids []uuid.UUID, byTenant map[uuid.UUID][]int64, stmts, txs int) ([]time.Duration, error) {
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	lat := make([]time.Duration, len(cs))
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 42))
			local := make([]time.Duration, len(cs))
			defer func() {
				mu.Lock()
				for i := range lat {
					lat[i] += local[i]
				}
				mu.Unlock()
			}()
			for i := next.Add(1) - 1; i < int64(txs*len(cs)); i = next.Add(1) - 1 {
				ci := int(i) % len(cs)
				c := cs[ci]
				t := ids[rng.IntN(len(ids))]
				mine := byTenant[t]
				body := func(tx pgx.Tx) error {
					for s := 0; s < stmts; s++ {
						var err error
						switch op := rng.IntN(10); {
						case op < 5:
							var b string
							if c.rls {
								err = tx.QueryRow(ctx, c.point, mine[rng.IntN(len(mine))]).Scan(&b)
							} else {
								err = tx.QueryRow(ctx, c.point, mine[rng.IntN(len(mine))], t).Scan(&b)
							}
						case op < 8:
							var rows pgx.Rows
							if c.rls {
								rows, err = tx.Query(ctx, c.rng, rng.IntN(len(mine)))
							} else {
								rows, err = tx.Query(ctx, c.rng, rng.IntN(len(mine)), t)
							}
							if err == nil {
								for rows.Next() {
								}
								rows.Close()
								err = rows.Err()
							}
						default:
							if c.rls {
								_, err = tx.Exec(ctx, c.ins, 1<<30, "new")
							} else {
								_, err = tx.Exec(ctx, c.ins, 1<<30, "new", t)
							}
						}
						if err != nil {
							return err
						}
					}
					return nil
				}
				start := time.Now()
				var err error
				switch {
				case c.enter != "":
					err = customTenant(ctx, pool, c.enter, t, body)
				case c.bare:
					err = bareTenant(ctx, pool, t, body)
				case c.rls:
					err = m.WithTenant(ctx, pool, t, body)
				default:
					err = pgx.BeginFunc(ctx, pool, body)
				}
				local[ci] += time.Since(start)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("%s: %w", c.name, err)
					}
					mu.Unlock()
					return
				}
			}
		}(uint64(w + 1))
	}
	wg.Wait()
	return lat, firstErr
}

// variantContenders scope the transaction in other ways, each a list of
// statements pipelined with BEGIN, to show where WithTenant's cost goes:
// the earlier design (one call of the PL/pgSQL function tenancy_enter, which
// does the same checks as WithTenant's two statements), the tenant's shared
// lock alone, and the tenant lookup alone.
func variantContenders(bare contender) []contender {
	fn, lock, lookup := bare, bare, bare
	fn.name, fn.enter = "tenancy_enter() (the earlier design)", `SELECT * FROM justpg.tenancy_enter($1)`
	lock.name, lock.enter = "advisory lock + set_config", `SELECT pg_catalog.pg_advisory_xact_lock_shared(pg_catalog.hashtextextended('justpg.tenancy:' || $1::text, 0));SELECT pg_catalog.set_config('app.tenant_id', $1::text, true)`
	lookup.name, lookup.enter = "tenant lookup + set_config", `SELECT pg_catalog.set_config('app.tenant_id', id::text, true), status FROM justpg.tenancy_tenants WHERE id = $1`
	return []contender{fn, lock, lookup}
}

// customTenant pipelines BEGIN with the statements of q (separated by ";"),
// each given the tenant id as $1.
func customTenant(ctx context.Context, pool *pgxpool.Pool, q string, tenant uuid.UUID, fn func(pgx.Tx) error) error {
	b := &pgx.Batch{}
	b.BeginTx(pgx.TxOptions{})
	for _, s := range strings.Split(q, ";") {
		b.Queue(s, tenant)
	}
	br := pool.SendBatch(ctx, b)
	tx := br.Tx()
	defer func() { _ = tx.Rollback(ctx) }()
	if err := br.Close(); err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// bareTenant is the least a policy needs: BEGIN pipelined with
// set_config('app.tenant_id', $1, true), no checks.
func bareTenant(ctx context.Context, pool *pgxpool.Pool, tenant uuid.UUID, fn func(pgx.Tx) error) error {
	return customTenant(ctx, pool, `SELECT set_config('app.tenant_id', $1::text, true)`, tenant, fn)
}

func schemas(ctx context.Context, srv *benchdb.Server) error {
	owner, _, err := srv.FreshDB(ctx, "bench_tenancy_schemas", 8)
	if err != nil {
		return err
	}
	defer owner.Close()
	m, err := tenancy.New(tenancy.Config{TenantMigrations: migrations()})
	if err != nil {
		return err
	}
	if err := tenancy.Migrate(ctx, owner); err != nil {
		return err
	}
	fmt.Printf("\nschema per tenant: %d dedicated tenants, 4 at a time\n", *nSchemas)
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(*nSchemas); i = next.Add(1) - 1 {
				if _, err := m.Create(ctx, owner, tenancy.NewTenant{Slug: fmt.Sprintf("s%05d", i), Name: "S", Isolation: tenancy.Dedicated}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	created := time.Since(start)
	fmt.Printf("  create + migrate (001) %d schemas: %v (%.1f ms/schema)\n", *nSchemas, created.Round(time.Millisecond),
		float64(created.Microseconds())/1000/float64(*nSchemas))
	v2 := migrations()
	v2["002_pinned.sql"] = &fstest.MapFile{Data: []byte(`ALTER TABLE notes ADD COLUMN pinned boolean NOT NULL DEFAULT false;
CREATE INDEX notes_pinned_idx ON notes (tenant_id) WHERE pinned;`)}
	m2, err := tenancy.New(tenancy.Config{TenantMigrations: v2})
	if err != nil {
		return err
	}
	for _, par := range []int{1, 4} {
		if par == 4 {
			// Add another migration so the second run has work to do.
			v2["003_tags.sql"] = &fstest.MapFile{Data: []byte(`ALTER TABLE notes ADD COLUMN tags text[] NOT NULL DEFAULT '{}';`)}
			if m2, err = tenancy.New(tenancy.Config{TenantMigrations: v2}); err != nil {
				return err
			}
		}
		start = time.Now()
		rep, err := m2.MigrateTenants(ctx, owner, par)
		if err != nil {
			return err
		}
		d := time.Since(start)
		var names []string
		for _, r := range rep.Results[:1] {
			names = append(names, r.Applied...)
		}
		sort.Strings(names)
		fmt.Printf("  migrate all %d schemas (%v each), parallelism %d: %v (%.1f ms/schema)\n", len(rep.Results), names, par,
			d.Round(time.Millisecond), float64(d.Microseconds())/1000/float64(len(rep.Results)))
	}
	return nil
}
