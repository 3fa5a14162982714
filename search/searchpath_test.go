package search_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/search"
)

// appProducts creates the test's table in the application's schema, app.
const appProducts = `CREATE TABLE app.products (
	id bigint PRIMARY KEY,
	tenant_id uuid DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
	title text NOT NULL, body text, category text NOT NULL DEFAULT 'misc',
	price numeric NOT NULL DEFAULT 0)`

// searchPathIndex indexes app.products on db and loads the fixtures through
// db.Pool, whose sessions have an unusual search_path.
func searchPathIndex(t *testing.T, db *pgtest.DB, cfg search.Config) *search.Index {
	t.Helper()
	ctx := context.Background()
	ix, err := search.New(cfg)
	require.NoError(t, err)
	require.NoError(t, ix.Create(ctx, db.Pool))
	for _, p := range fixtures {
		_, err := db.Pool.Exec(ctx, `INSERT INTO app.products (id, title, body, category, price) VALUES ($1, $2, $3, $4, $5)`,
			p.id, p.title, p.body, p.category, p.price)
		require.NoError(t, err)
	}
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))
	return ix
}

// checkSearches runs the kinds of query an application makes: exact, prefix,
// typo, substring and suggestions.
func checkSearches(t *testing.T, pool DBer, ix *search.Index) {
	t.Helper()
	ctx := context.Background()
	res, err := ix.Search(ctx, pool, search.Query{Text: "database internals", Highlight: true})
	require.NoError(t, err)
	require.NotEmpty(t, res.Hits)
	assert.Equal(t, "6", res.Hits[0].Key)
	res, err = ix.Search(ctx, pool, search.Query{Text: "postgr"})
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"1", "2"}, keys(res))
	res, err = ix.Search(ctx, pool, search.Query{Text: "recieved wisdom"})
	require.NoError(t, err)
	assert.Contains(t, keys(res), "3", "typo tolerance")
	res, err = ix.Search(ctx, pool, search.Query{Text: "cafe"})
	require.NoError(t, err)
	assert.Contains(t, keys(res), "4", "accents")
	res, err = ix.Substring(ctx, pool, search.Query{Text: "spress"})
	require.NoError(t, err)
	assert.Equal(t, []string{"7"}, keys(res))
	s, err := ix.Suggest(ctx, pool, "wisdon", 1)
	require.NoError(t, err)
	require.Len(t, s, 1)
	assert.Equal(t, "wisdom", s[0].Word)
}

// DBer is what the checks need of a pool or a transaction.
type DBer = search.DB

// Sessions whose search_path holds only the application's own schema (no
// public, where the extensions are not either) create, fill and query an
// index; the extensions live in a schema of their own.
func TestSearchWithAppOnlySearchPath(t *testing.T) {
	t.Parallel()
	for _, tenant := range []bool{false, true} {
		name := "plain"
		if tenant {
			name = "tenant"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := pgtest.NewDB(t, pgtest.WithSearchPath("app"))
			db.AdminExec(t, `CREATE SCHEMA app; CREATE SCHEMA ext;
				ALTER EXTENSION pg_trgm SET SCHEMA ext; ALTER EXTENSION unaccent SET SCHEMA ext;
				`+appProducts)
			cfg := productsConfig()
			cfg.Schema, cfg.ExtensionSchema = "app", "ext"
			if tenant {
				cfg.TenantColumn = "tenant_id"
			}
			ix := searchPathIndex(t, db, cfg)
			checkSearches(t, db.Pool, ix)
		})
	}
}

// With search_path empty (pg_catalog only) every name the package uses
// must be qualified.
func TestSearchWithEmptySearchPath(t *testing.T) {
	t.Parallel()
	for _, sp := range []string{"''", "pg_catalog"} {
		t.Run(sp, func(t *testing.T) {
			t.Parallel()
			db := pgtest.NewDB(t, pgtest.WithSearchPath(sp))
			db.AdminExec(t, `CREATE SCHEMA app;
				`+appProducts)
			cfg := tenantConfig()
			cfg.Schema = "app"
			ix := searchPathIndex(t, db, cfg)
			checkSearches(t, db.Pool, ix)
		})
	}
}

// trojans are functions an unprivileged role plants in a schema of its own
// that comes before pg_catalog on its search_path, shadowing built-ins the
// index's functions call. Each passes through to the built-in when it runs
// as the role itself, and fails loudly when it runs as anyone else: a
// SECURITY DEFINER function that resolved it would run the role's code with
// the definer's privileges.
func trojans(schema, role string) string {
	var b strings.Builder
	for _, f := range []struct{ sig, ret, call string }{
		{"set_config(text, text, boolean)", "text", "pg_catalog.set_config($1, $2, $3)"},
		{"current_setting(text, boolean)", "text", "pg_catalog.current_setting($1, $2)"},
		{"char_length(text)", "integer", "pg_catalog.char_length($1)"},
		{"abs(integer)", "integer", "pg_catalog.abs($1)"},
		{"ln(integer)", "double precision", "pg_catalog.ln($1::double precision)"},
		{"left(text, integer)", "text", "pg_catalog.left($1, $2)"},
		{"substr(text, integer, integer)", "text", "pg_catalog.substr($1, $2, $3)"},
		{"string_to_array(text, text)", "text[]", "pg_catalog.string_to_array($1, $2)"},
		{"lower(text)", "text", "pg_catalog.lower($1)"},
	} {
		name, _, _ := strings.Cut(f.sig, "(")
		fmt.Fprintf(&b, `CREATE FUNCTION %[1]s.%[2]s RETURNS %[3]s LANGUAGE plpgsql AS $t$
BEGIN
	IF current_user <> %[4]s THEN
		RAISE EXCEPTION 'trojan %[5]s ran as %%', current_user;
	END IF;
	RETURN %[6]s;
END $t$;
`, schema, f.sig, f.ret, "'"+role+"'", name, f.call)
	}
	return b.String()
}

// The tenant variant's SECURITY DEFINER lookups run as the table's owner.
// An application role that may create objects only in its own schema, put
// first on its search_path (before pg_catalog), shadows the built-ins their
// bodies call and the word table's name; searching, suggesting and
// substring matching as that role must never run its functions as the
// owner.
func TestSearchDefinerFunctionsIgnoreCallerObjects(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	sfx := hex.EncodeToString(b)
	owner, app := "sp_owner_"+sfx, "sp_app_"+sfx
	dropRolesAfter(t, db, owner, app)
	db.AdminExec(t, fmt.Sprintf(`CREATE ROLE %[1]s; CREATE ROLE %[2]s LOGIN PASSWORD 'pw';
		CREATE SCHEMA app AUTHORIZATION %[1]s; CREATE SCHEMA evil AUTHORIZATION %[2]s;
		GRANT USAGE ON SCHEMA app, public TO %[2]s;
		SET ROLE %[1]s;
		`+appProducts+`;
		RESET ROLE`, owner, app))
	cfg := tenantConfig()
	cfg.Schema = "app"
	ix, err := search.New(cfg)
	require.NoError(t, err)
	conn, err := db.Pool.Acquire(ctx)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "SET ROLE "+owner)
	require.NoError(t, err)
	require.NoError(t, ix.Create(ctx, conn))
	_, err = conn.Exec(ctx, fmt.Sprintf(`GRANT SELECT, INSERT, UPDATE, DELETE ON app.products, app.products_search_words TO %[1]s;
		ALTER TABLE app.products ENABLE ROW LEVEL SECURITY;
		ALTER TABLE app.products_search_words ENABLE ROW LEVEL SECURITY;
		CREATE POLICY tenant ON app.products USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid));
		CREATE POLICY tenant ON app.products_search_words USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid));
		RESET ROLE`, app))
	require.NoError(t, err)
	conn.Release()
	// The role lets everyone use its schema: the definer's name lookups
	// would skip a schema it may not use.
	db.AdminExec(t, "SET ROLE "+app+";\nGRANT USAGE ON SCHEMA evil TO PUBLIC;\n"+trojans("evil", app)+
		// A word table of its own, where the lookups would find its words.
		`CREATE TABLE evil.products_search_words (tenant_id uuid, word text, docs integer);
		INSERT INTO evil.products_search_words VALUES (NULL, 'trojan', 1000);
		RESET ROLE`)

	pcfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	pgtest.ApplyExecMode(t, pcfg.ConnConfig)
	pcfg.ConnConfig.User, pcfg.ConnConfig.Password = app, "pw"
	pcfg.ConnConfig.RuntimeParams["search_path"] = "evil, pg_catalog"
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)

	tenant := "7e0b7a52-6a3c-4f7e-9d41-5a4f3c2b1a00"
	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_catalog.set_config('app.tenant_id', $1, true)`, tenant); err != nil {
			return err
		}
		for _, p := range fixtures {
			if _, err := tx.Exec(ctx, `INSERT INTO app.products (id, title, body, category, price) VALUES ($1, $2, $3, $4, $5)`,
				p.id, p.title, p.body, p.category, p.price); err != nil {
				return err
			}
		}
		if err := ix.RefreshWords(ctx, tx); err != nil {
			return err
		}
		checkSearches(t, tx, ix)
		s, err := ix.Suggest(ctx, tx, "trojan", 3)
		require.NoError(t, err)
		assert.Empty(t, s, "the lookups read the caller's word table")
		return nil
	}))
}

// Sessions with the default search_path ("$user", public), where public
// holds the extensions and also objects shadowing built-ins
// (pgtest.ShadowingSQL), as a role allowed to create there could plant
// them: creating an index (over a word list whose trigram index an earlier
// version made with fastupdate on), refreshing its words and every kind of
// query call only the built-ins.
func TestSearchWithShadowedPublic(t *testing.T) {
	t.Parallel()
	for _, tenant := range []bool{false, true} {
		name := "plain"
		if tenant {
			name = "tenant"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			db := pgtest.NewDB(t)
			db.AdminExec(t, `CREATE SCHEMA app;
				`+appProducts+`;
				CREATE TABLE app.products_search_words (
					tenant_id uuid DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
					word text NOT NULL, docs integer NOT NULL,
					UNIQUE NULLS NOT DISTINCT (tenant_id, word));
				CREATE INDEX products_search_words_old_trgm ON app.products_search_words USING gin (word public.gin_trgm_ops);
				`+pgtest.ShadowingSQL("public"))
			cfg := productsConfig()
			cfg.Schema = "app"
			if tenant {
				cfg.TenantColumn = "tenant_id"
			}
			ix := searchPathIndex(t, db, cfg)
			checkSearches(t, db.Pool, ix)
			var fastOff bool
			require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT 'fastupdate=off' = ANY (reloptions)
				FROM pg_class WHERE oid = 'app.products_search_words_old_trgm'::regclass`).Scan(&fastOff))
			assert.True(t, fastOff)
		})
	}
}
