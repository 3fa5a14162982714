package search_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/search"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const productsTable = `CREATE TABLE products (
	id         bigint PRIMARY KEY,
	tenant_id  uuid DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
	title      text NOT NULL,
	body       text,
	category   text NOT NULL DEFAULT 'misc',
	price      numeric NOT NULL DEFAULT 0
)`

func productsConfig() search.Config {
	return search.Config{
		Table:   "products",
		Key:     "id",
		Fields:  []search.Field{{Column: "title", Weight: search.A}, {Column: "body", Weight: search.C}},
		Filters: []string{"category", "price"},
	}
}

func tenantConfig() search.Config {
	c := productsConfig()
	c.TenantColumn = "tenant_id"
	return c
}

type product struct {
	id          int64
	title, body string
	category    string
	price       float64
}

var fixtures = []product{
	{1, "PostgreSQL in Action", "A practical guide to the PostgreSQL database.", "books", 39},
	{2, "Postgres Pocket Reference", "Quick reference for postgres users.", "books", 15},
	{3, "Received Wisdom", "Essays on what we received from our elders.", "books", 22},
	{4, "Café Racer Jacket", "Leather jacket for motorbike riders.", "clothing", 199},
	{5, "Cafe au lait mug", "A big mug for coffee with milk.", "kitchen", 12},
	{6, "Database Internals", "How storage engines and distributed databases work.", "books", 45},
	{7, "Espresso Machine", "Makes espresso and cappuccino at home; not a database.", "kitchen", 349},
	{8, "Data Science from Scratch", "First principles with Python. <script>alert(1)</script> databases", "books", 33},
	{9, "Gardening Gloves", "Protect your hands; 100% cotton, size_M.", "garden", 9},
	{10, "Pocket Knife", "Stainless steel pocket knife with 5 tools.", "outdoor", 25},
	{11, "Thermos Flask", "Keeps coffee hot for 12 hours. C:\\path\\to 50% off", "kitchen", 19},
	{12, "Received Pronunciation", "A guide to the accent.", "books", 18},
}

func seed(t testing.TB, db *pgtest.DB, rows []product) {
	t.Helper()
	ctx := context.Background()
	for _, p := range rows {
		_, err := db.Pool.Exec(ctx, `INSERT INTO products (id, title, body, category, price) VALUES ($1, $2, $3, $4, $5)`,
			p.id, p.title, p.body, p.category, p.price)
		require.NoError(t, err)
	}
}

// newProducts gives a test a database with the products table indexed by
// cfg and the fixtures loaded, and the word list refreshed.
func newProducts(t testing.TB, cfg search.Config) (*pgtest.DB, *search.Index) {
	t.Helper()
	ix, err := search.New(cfg)
	require.NoError(t, err)
	db := pgtest.NewDB(t, pgtest.WithSetup("search-products", func(ctx context.Context, pool *pgxpool.Pool) error {
		_, err := pool.Exec(ctx, productsTable)
		return err
	}))
	ctx := context.Background()
	require.NoError(t, ix.Create(ctx, db.Pool))
	seed(t, db, fixtures)
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))
	return db, ix
}

func keys(r *search.Result) []string {
	out := []string{}
	for _, h := range r.Hits {
		out = append(out, h.Key)
	}
	return out
}
