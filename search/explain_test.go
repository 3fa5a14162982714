package search_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/search"
)

const (
	tenantA = "aaaaaaaa-0000-0000-0000-000000000001"
	tenantB = "bbbbbbbb-0000-0000-0000-000000000002"
	// largeRows is enough rows that the planner prefers the indexes.
	largeRows = 30000
)

var commonWords = strings.Fields(`time year people way day man thing woman life child world school
state family student group country problem hand part place case week company system program
question work government number night point home water room mother area money story fact month
lot right study book eye job word business issue side kind head house service friend father power
hour game line end member law car city community name president team minute idea kid body
information back parent face others level office door health person art war history party result
change morning reason research girl guy moment air teacher force education foot boy age policy
process music market sense nation plan college interest death experience effect use class control
care field development role effort rate heart drug show leader light voice wife police mind price
report decision son view relationship town road arm difference value building action model season
society tax director position player record paper space ground form event official matter center
couple site project activity star table need court oil situation cost industry figure street image`)

// largeSetup builds a products table of largeRows rows over two tenants,
// with a tenant-aware index, refreshed words and fresh statistics.
func largeSetup(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, productsTable); err != nil {
		return err
	}
	_, err := pool.Exec(ctx, `INSERT INTO products (id, tenant_id, title, body, category, price)
SELECT g, CASE WHEN g % 2 = 0 THEN $2::uuid ELSE $3::uuid END,
	initcap(w[1 + (g * 7) % n] || ' ' || w[1 + (g * 13) % n] || ' ' || w[1 + (g * 31) % n]),
	(SELECT string_agg(w[1 + ((g * k * 17 + k * 101) % n)], ' ') FROM generate_series(1, 12) k)
		|| (SELECT string_agg(' ' || s[1 + get_byte(h, 0) % 20] || s[1 + get_byte(h, 1) % 20] || s[1 + get_byte(h, 2) % 20] || s[1 + get_byte(h, 3) % 20], '')
			FROM generate_series(1, 3) k, LATERAL (SELECT decode(md5(g::text || '/' || k), 'hex') AS h) hh),
	'cat' || (g % 10), g % 500
FROM generate_series(1, $4::int) g, (SELECT $1::text[] AS w, cardinality($1::text[]) AS n) c,
	(SELECT '{ka,lo,mi,ne,ru,sa,to,vi,ze,pa,bo,di,fu,ga,he,ji,ko,lu,mo,nu}'::text[] AS s) sy`, commonWords, tenantA, tenantB, largeRows)
	if err != nil {
		return err
	}
	_, err = pool.Exec(ctx, `UPDATE products SET title = title || ' harpsichord' WHERE id % 5000 IN (7, 8)`)
	if err != nil {
		return err
	}
	ix, err := search.New(tenantConfig())
	if err != nil {
		return err
	}
	if err := ix.Create(ctx, pool); err != nil {
		return err
	}
	for _, tenant := range []string{"", tenantA, tenantB} {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true)`, tenant); err != nil {
				return err
			}
			return ix.RefreshWords(ctx, tx)
		})
		if err != nil {
			return err
		}
	}
	plain, err := search.New(productsConfig())
	if err != nil {
		return err
	}
	if err := plain.RefreshWords(ctx, pool); err != nil {
		return err
	}
	if _, err = pool.Exec(ctx, `VACUUM ANALYZE products`); err != nil {
		return err
	}
	_, err = pool.Exec(ctx, `ANALYZE products_search_words`)
	return err
}

// planLog collects the plans auto_explain reports for every statement,
// nested ones included, on a one-connection pool.
type planLog struct {
	mu    sync.Mutex
	plans []string
}

func (l *planLog) take() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.Join(l.plans, "\n----\n")
	l.plans = nil
	return s
}

// explainingPool connects to db with auto_explain logging every plan to the
// client, optionally as role (a non-superuser, so row-level security
// applies).
func explainingPool(t *testing.T, db *pgtest.DB, role string) (*pgxpool.Pool, *planLog) {
	t.Helper()
	probe, err := pgx.Connect(context.Background(), db.URL)
	require.NoError(t, err)
	_, err = probe.Exec(context.Background(), `LOAD 'auto_explain'`)
	_ = probe.Close(context.Background())
	skipIfUnprivileged(t, err, "LOAD 'auto_explain'")
	l := &planLog{}
	cfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	pgtest.ApplyExecMode(t, cfg.ConnConfig)
	pgtest.ApplySession(t, cfg.ConnConfig)
	cfg.MaxConns = 1
	cfg.ConnConfig.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		if strings.Contains(n.Message, "Query Text") || strings.Contains(n.Message, "duration") {
			l.mu.Lock()
			l.plans = append(l.plans, n.Message)
			l.mu.Unlock()
		}
	}
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		sql := `LOAD 'auto_explain';
			SET auto_explain.log_min_duration = 0;
			SET auto_explain.log_nested_statements = on;
			SET auto_explain.log_level = notice;`
		if role != "" {
			sql += "SET ROLE " + pgx.Identifier{role}.Sanitize()
		}
		_, err := c.Exec(ctx, sql)
		return err
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool, l
}

func newLarge(t *testing.T) *pgtest.DB {
	return pgtest.NewDB(t, pgtest.WithSetup("search-large", largeSetup))
}

// TestExplainUsesIndexes proves with the real plans of the API's own
// statements that full-text, typo and substring searches are served by the
// GIN indexes and never scan the table sequentially.
func TestExplainUsesIndexes(t *testing.T) {
	t.Parallel()
	db := newLarge(t)
	pool, plans := explainingPool(t, db, "")
	ix, err := search.New(productsConfig())
	require.NoError(t, err)
	ctx := context.Background()

	r, err := ix.Search(ctx, pool, search.Query{Text: "harpsichord", NoTypos: true})
	require.NoError(t, err)
	assert.EqualValues(t, 12, r.Total)
	p := plans.take()
	assert.Contains(t, p, "Bitmap Index Scan on products_search_vector_idx", p)
	assertNoSeqScan(t, p)

	r, err = ix.Search(ctx, pool, search.Query{Text: "harpsicord", Highlight: true})
	require.NoError(t, err)
	assert.EqualValues(t, 12, r.Total)
	p = plans.take()
	// The word list's trigram index of the words of 11 letters (harpsichord).
	assert.Contains(t, p, "Bitmap Index Scan on products_search_words_trgm11", p)
	assert.Contains(t, p, "products_search_words_word_idx", "transpositions are looked up in the btree: %s", p)
	assert.Contains(t, p, "Bitmap Index Scan on products_search_vector_idx", p)
	assertNoSeqScan(t, p)

	r, err = ix.Substring(ctx, pool, search.Query{Text: "arpsicho"})
	require.NoError(t, err)
	assert.EqualValues(t, 12, r.Total)
	p = plans.take()
	assert.Contains(t, p, "Bitmap Index Scan on products_title_trgm_idx", p)
	assert.Contains(t, p, "Bitmap Index Scan on products_body_trgm_idx", p)
	assertNoSeqScan(t, p)

	s, err := ix.Suggest(ctx, pool, "harpsicord", 1)
	require.NoError(t, err)
	require.Len(t, s, 1)
	assert.Equal(t, "harpsichord", s[0].Word)
	p = plans.take()
	assert.Contains(t, p, "Bitmap Index Scan on products_search_words_trgm11", p)

	// Stop words only: the plan is gated by a one-time filter and the
	// table is never scanned.
	r, err = ix.Search(ctx, pool, search.Query{Text: "the and of "})
	require.NoError(t, err)
	assert.Empty(t, r.Hits)
	p = plans.take()
	assertNoSeqScan(t, p)

	// A stop word of four letters or more alone is matched as a whole word
	// through the trigram indexes.
	_, err = ix.Search(ctx, pool, search.Query{Text: "whose "})
	require.NoError(t, err)
	p = plans.take()
	assert.Contains(t, p, "Bitmap Index Scan on products_title_trgm_idx", p)
	assert.Contains(t, p, "Bitmap Index Scan on products_body_trgm_idx", p)
	assertNoSeqScan(t, p)
}

// rlsSetup creates an owner role that owns products, an app role that is
// subject to row-level security, and the tenancy convention's policies on
// products and on the word list.
func rlsSetup(t *testing.T, db *pgtest.DB) (owner, app string) {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	sfx := hex.EncodeToString(b)
	owner, app = "search_owner_"+sfx, "search_app_"+sfx
	ctx := context.Background()
	pol := `USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid))`
	_, err := db.Pool.Exec(ctx, fmt.Sprintf(`
		CREATE ROLE %[1]s; CREATE ROLE %[2]s;
		GRANT USAGE, CREATE ON SCHEMA public TO %[1]s;
		GRANT USAGE ON SCHEMA public TO %[2]s;
		ALTER TABLE products OWNER TO %[1]s;
		ALTER TABLE products_search_words OWNER TO %[1]s;
		ALTER FUNCTION products_search_match(tsquery) OWNER TO %[1]s;
		ALTER FUNCTION products_search_contains(text) OWNER TO %[1]s;
		ALTER FUNCTION products_search_corrections(text, real, integer, integer, integer) OWNER TO %[1]s;
		GRANT SELECT, INSERT, UPDATE, DELETE ON products, products_search_words TO %[2]s;
		ALTER TABLE products ENABLE ROW LEVEL SECURITY;
		ALTER TABLE products_search_words ENABLE ROW LEVEL SECURITY;
		CREATE POLICY tenant ON products %[3]s;
		CREATE POLICY tenant ON products_search_words %[3]s;`,
		pgx.Identifier{owner}.Sanitize(), pgx.Identifier{app}.Sanitize(), pol))
	skipIfUnprivileged(t, err, "creating roles")
	dropRolesAfter(t, db, owner, app)
	return owner, app
}

func inTenant(t *testing.T, pool *pgxpool.Pool, tenant string, fn func(tx pgx.Tx)) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true)`, tenant)
		require.NoError(t, err)
		fn(tx)
		return nil
	}))
}

// TestExplainUnderRLS shows the problem (a plain index under row-level
// security cannot use its GIN indexes: @@, ILIKE and % are not leakproof)
// and the fix (TenantColumn's SECURITY DEFINER lookups use them), with the
// plans of the API's own statements run as a role subject to the policy.
func TestExplainUnderRLS(t *testing.T) {
	t.Parallel()
	db := newLarge(t)
	_, app := rlsSetup(t, db)
	pool, plans := explainingPool(t, db, app)
	ctx := context.Background()

	plain, err := search.New(productsConfig())
	require.NoError(t, err)
	inTenant(t, pool, tenantA, func(tx pgx.Tx) {
		r, err := plain.Search(ctx, tx, search.Query{Text: "harpsichord", NoTypos: true})
		require.NoError(t, err)
		assert.EqualValues(t, 6, r.Total, "the policy still filters")
	})
	p := plans.take()
	assert.NotContains(t, p, "Bitmap Index Scan on products_search_vector_idx",
		"if this fails, PostgreSQL learnt to use non-leakproof index quals under RLS: %s", p)

	ix, err := search.New(tenantConfig())
	require.NoError(t, err)
	inTenant(t, pool, tenantA, func(tx pgx.Tx) {
		r, err := ix.Search(ctx, tx, search.Query{Text: "harpsichord", NoTypos: true})
		require.NoError(t, err)
		assert.EqualValues(t, 6, r.Total)
		for _, h := range r.Hits {
			var tenant string
			require.NoError(t, tx.QueryRow(ctx, `SELECT tenant_id::text FROM products WHERE id = $1::bigint`, h.Key).Scan(&tenant))
			assert.Equal(t, tenantA, tenant)
		}
	})
	p = plans.take()
	assert.Contains(t, p, "Bitmap Index Scan on products_search_vector_idx", p)
	assertNoSeqScan(t, p)

	inTenant(t, pool, tenantA, func(tx pgx.Tx) {
		r, err := ix.Search(ctx, tx, search.Query{Text: "harpsicord"})
		require.NoError(t, err)
		assert.EqualValues(t, 6, r.Total)
	})
	p = plans.take()
	assert.Contains(t, p, "Bitmap Index Scan on products_search_words_trgm11", p)
	assert.Contains(t, p, "Bitmap Index Scan on products_search_vector_idx", p)
	assertNoSeqScan(t, p)

	inTenant(t, pool, tenantB, func(tx pgx.Tx) {
		r, err := ix.Substring(ctx, tx, search.Query{Text: "arpsicho"})
		require.NoError(t, err)
		assert.EqualValues(t, 6, r.Total)
	})
	p = plans.take()
	assert.Contains(t, p, "Bitmap Index Scan on products_title_trgm_idx", p)
	assertNoSeqScan(t, p)
}

// TestTenantIsolation: under the tenancy convention's policies, as a
// non-superuser, two tenants never see each other's rows, words or
// suggestions through the API.
func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	db, ix := newProducts(t, tenantConfig())
	owner, app := rlsSetup(t, db)
	_ = owner
	cfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	pgtest.ApplyExecMode(t, cfg.ConnConfig)
	pgtest.ApplySession(t, cfg.ConnConfig)
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, "SET ROLE "+pgx.Identifier{app}.Sanitize())
		return err
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	ctx := context.Background()

	inTenant(t, pool, tenantA, func(tx pgx.Tx) {
		_, err := tx.Exec(ctx, `INSERT INTO products (id, title, body) VALUES (501, 'Accordion', 'secret alpha plans'), (502, 'Accordion stand', '')`)
		require.NoError(t, err)
		require.NoError(t, ix.RefreshWords(ctx, tx))
	})
	inTenant(t, pool, tenantB, func(tx pgx.Tx) {
		_, err := tx.Exec(ctx, `INSERT INTO products (id, title, body) VALUES (601, 'Accordion case', 'bravo confidential roadmap')`)
		require.NoError(t, err)
		require.NoError(t, ix.RefreshWords(ctx, tx))
	})
	check := func(tenant string, own []string, foreignWord, ownWord string) {
		inTenant(t, pool, tenant, func(tx pgx.Tx) {
			for _, text := range []string{"accordion", "acordion", "accord"} {
				r, err := ix.Search(ctx, tx, search.Query{Text: text})
				require.NoError(t, err)
				assert.ElementsMatch(t, own, keys(r), "%s %s", tenant, text)
				assert.EqualValues(t, len(own), r.Total)
			}
			r, err := ix.Substring(ctx, tx, search.Query{Text: "ccordio"})
			require.NoError(t, err)
			assert.ElementsMatch(t, own, keys(r))
			r, err = ix.Search(ctx, tx, search.Query{Text: foreignWord})
			require.NoError(t, err)
			assert.Empty(t, r.Hits, "other tenant's word %s", foreignWord)
			s, err := ix.Suggest(ctx, tx, foreignWord+"x", 5)
			require.NoError(t, err)
			for _, sg := range s {
				assert.NotEqual(t, foreignWord, sg.Word, "suggestion leaked across tenants")
			}
			s, err = ix.Suggest(ctx, tx, ownWord+"x", 5)
			require.NoError(t, err)
			require.NotEmpty(t, s)
			assert.Equal(t, ownWord, s[0].Word)
		})
	}
	check(tenantA, []string{"501", "502"}, "confidential", "secret")
	check(tenantB, []string{"601"}, "secret", "confidential")
	// Calling the lookup function directly cannot reach the other tenant.
	inTenant(t, pool, tenantB, func(tx pgx.Tx) {
		var n int
		require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM products_search_match(to_tsquery('simple', 'secret'))`).Scan(&n))
		assert.Zero(t, n)
	})
}

var seqScanProducts = regexp.MustCompile(`Seq Scan on products(\s|$)`)

func assertNoSeqScan(t *testing.T, plan string) {
	t.Helper()
	assert.NotRegexp(t, seqScanProducts, plan)
}

// skipIfUnprivileged skips a test that needs superuser-like rights (loading
// auto_explain, creating roles) on a server given by URL whose role lacks
// them; any other error fails it.
func skipIfUnprivileged(t *testing.T, err error, what string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		t.Skipf("%s needs more privileges than this server's role has: %v", what, err)
	}
	require.NoError(t, err)
}

// dropRolesAfter drops db and then roles (cluster-wide, they outlive the
// database otherwise) when the test ends; a role that owns objects can
// only be dropped once its database is gone.
func dropRolesAfter(t *testing.T, db *pgtest.DB, roles ...string) {
	t.Cleanup(func() {
		ctx := context.Background()
		c, err := pgx.Connect(ctx, db.Server.AdminURL())
		if err != nil {
			return
		}
		defer c.Close(ctx)
		db.Pool.Close()
		_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db.Name}.Sanitize()+" WITH (FORCE)")
		for _, r := range roles {
			_, _ = c.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{r}.Sanitize())
		}
	})
}
