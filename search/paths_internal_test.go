package search

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
)

// TestVerbatimPathsAgree checks that the two ways a query gathers the rows
// containing its words verbatim give the same page: reading the matching
// rows through the tsvector index and testing each (a narrow query), and
// looking them up through the trigram indexes (a broad one, or one the word
// list's counts show to be broad without counting). The same queries run
// with the threshold between them raised so that every query reads its rows
// one by one, and lowered so that every query takes the trigram lookup.
func TestVerbatimPathsAgree(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t, pgtest.WithSetup("search-paths", func(ctx context.Context, pool *pgxpool.Pool) error {
		// 3,000 rows; five of each six contain a word stemmed to
		// 'connect', so that most queries below match over 2,000 rows.
		_, err := pool.Exec(ctx, `CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL);
			INSERT INTO notes SELECT i, format('note %s: %s %s', i,
				(ARRAY['connected the wires', 'connection lost at noon', 'connects two rooms',
					'connecting flights are late', 'the connections held', 'a quiet garden'])[i % 6 + 1],
				(ARRAY['red', 'green', 'blue', 'amber', 'violet'])[i % 5 + 1])
			FROM generate_series(1, 3000) AS i`)
		return err
	}))
	def, err := New(Config{Table: "notes", Key: "id", Fields: []Field{{Column: "body", Weight: A}}})
	require.NoError(t, err)
	require.NoError(t, def.Create(ctx, db.Pool))
	require.NoError(t, def.RefreshWords(ctx, db.Pool))
	oneByOne, lookedUp := *def, *def
	oneByOne.scan = 1 << 20
	lookedUp.scan = 10 // below MaxCandidates: the threshold is MaxCandidates
	for _, text := range []string{
		"connected ",         // in the word list, broad: its count says so
		"conected ",          // corrected to connected
		"conected wires ",    // two words: counted
		"connection lost ",   // two words, both known
		"conection",          // the word being typed
		"garden ",            // narrow: 500 rows
		"connects -rooms ",   // an exclusion
		"\"connected the\" ", // a phrase
	} {
		want, err := oneByOne.Search(ctx, db.Pool, Query{Text: text, Limit: 20})
		require.NoError(t, err, text)
		require.NotEmpty(t, want.Hits, text)
		for _, ix := range []*Index{def, &lookedUp} {
			got, err := ix.Search(ctx, db.Pool, Query{Text: text, Limit: 20})
			require.NoError(t, err, text)
			require.Equal(t, want.Hits, got.Hits, "%q with scan %d", text, ix.scan)
			require.Equal(t, want.Total, got.Total, "%q with scan %d", text, ix.scan)
		}
	}
}

// TestOrOnce checks the ranking query's de-duplication: a plain OR of
// operands keeps each operand once (quotes, prefix flags and weights
// respected), anything else is left as it is, and ts_rank_cd ranks the
// result as it ranks the original.
func TestOrOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	for _, tc := range []struct{ in, want string }{
		{`'a' | 'b' | 'a'`, `'a' | 'b'`},
		{`'b' | 'a' | 'b' | 'a' | 'b'`, `'a' | 'b'`},
		{`'a' | 'a':* | 'a':AB | 'a'`, `'a' | 'a':* | 'a':AB`},
		{`'it''s' | 'it''s' | 'x|y' | 'x|y'`, `'it''s' | 'x|y'`},
		{`'a'`, `'a'`},
		{`'a' & 'b' | 'a'`, `'a' & 'b' | 'a'`},
		{`'a' <-> 'b' | 'a' <-> 'b'`, `'a' <-> 'b' | 'a' <-> 'b'`},
		{`!'a' | 'b' | 'b'`, `!'a' | 'b' | 'b'`},
		{`('a' | 'b') & ('a' | 'b')`, `( 'a' | 'b' ) & ( 'a' | 'b' )`},
		{``, ``},
	} {
		var got string
		var same bool
		err := db.Pool.QueryRow(ctx, `SELECT r::text, ts_rank_cd(v, r, 32) = ts_rank_cd(v, x, 32)
			FROM (SELECT $1::tsquery AS x, to_tsvector('simple', 'a b it''s x|y b a c') AS v) s,
			LATERAL (SELECT `+orOnce("s.x")+` AS r) o`, tc.in).Scan(&got, &same)
		require.NoError(t, err, tc.in)
		require.Equal(t, tc.want, got, tc.in)
		require.True(t, same, "rank of %s", tc.in)
	}
}

// TestCreateReplacesTheWordIndex: an install made by an earlier version has
// one trigram index over the whole word list; Create replaces it by the
// per-length ones, and lookups find corrections of every length through
// them.
func TestCreateReplacesTheWordIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t, pgtest.WithSetup("search-lens", func(ctx context.Context, pool *pgxpool.Pool) error {
		_, err := pool.Exec(ctx, `CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL);
			INSERT INTO notes VALUES (1, 'cat'), (2, 'received'), (3, 'antidisestablishmentarianism'),
				(4, 'supercalifragilisticexpialidocious'), (5, 'pneumonoultramicroscopicsilicovolcanoconiosis')`)
		return err
	}))
	ix, err := New(Config{Table: "notes", Key: "id", Fields: []Field{{Column: "body", Weight: A}}})
	require.NoError(t, err)
	require.NoError(t, ix.Create(ctx, db.Pool))
	// As an earlier version left it.
	_, err = db.Pool.Exec(ctx, `CREATE INDEX notes_search_words_trgm_idx ON notes_search_words USING gin (word gin_trgm_ops)`)
	require.NoError(t, err)
	require.NoError(t, ix.Create(ctx, db.Pool))
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))
	var names []string
	rows, err := db.Pool.Query(ctx, `SELECT indexname FROM pg_indexes WHERE tablename = 'notes_search_words' AND indexdef LIKE '%gin_trgm_ops%' ORDER BY 1`)
	require.NoError(t, err)
	names, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Len(t, names, wordLenIndexes+1)
	require.NotContains(t, names, "notes_search_words_trgm_idx")
	require.Contains(t, names, "notes_search_words_trgm25")
	for typo, want := range map[string]string{
		"recieved":                          "received",                           // 8 letters
		"antidisestablishmentarianizm":      "antidisestablishmentarianism",       // 28: the index of longer words
		"supercalifragilisticexpialidocius": "supercalifragilisticexpialidocious", // 33 letters, one short
	} {
		r, err := ix.Search(ctx, db.Pool, Query{Text: typo + " "})
		require.NoError(t, err, typo)
		assert.Equal(t, []string{want}, r.Corrections[typo], typo)
	}
}

// TestDollarQuotedBodyWithHostileNames: the lookup function's body names
// the caller's schema and table, so a name holding the dollar-quote tag
// must not end the body early.
func TestDollarQuotedBodyWithHostileNames(t *testing.T) {
	t.Parallel()
	require.Equal(t, "$fn$ x $fn$", dollarQuote(" x "))
	require.Equal(t, "$fn0$ a$fn$b $fn0$", dollarQuote(" a$fn$b "))
	require.Equal(t, "$fn1$ $fn$$fn0$ $fn1$", dollarQuote(" $fn$$fn0$ "))

	ctx := context.Background()
	db := pgtest.NewDB(t, pgtest.WithSetup("search-dollar", func(ctx context.Context, pool *pgxpool.Pool) error {
		_, err := pool.Exec(ctx, `CREATE SCHEMA "s$fn$; DROP TABLE x; --";
			CREATE TABLE "s$fn$; DROP TABLE x; --"."t$fn$" (id bigint PRIMARY KEY, body text NOT NULL);
			INSERT INTO "s$fn$; DROP TABLE x; --"."t$fn$" VALUES (1, 'received the parcel')`)
		return err
	}))
	ix, err := New(Config{Schema: "s$fn$; DROP TABLE x; --", Table: "t$fn$", Key: "id", Fields: []Field{{Column: "body", Weight: A}}})
	require.NoError(t, err)
	require.NoError(t, ix.Create(ctx, db.Pool))
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))
	r, err := ix.Search(ctx, db.Pool, Query{Text: "recieved "})
	require.NoError(t, err)
	require.Equal(t, []string{"1"}, keys(r))
}

func keys(r *Result) []string {
	var k []string
	for _, h := range r.Hits {
		k = append(k, h.Key)
	}
	return k
}

// TestRefreshWordsFollowsChanges: a refresh adds new words, drops words no
// row holds any more and updates counts, and leaves the words whose count
// did not change as they were (not rewritten, so their index entries stay).
func TestRefreshWordsFollowsChanges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t, pgtest.WithSetup("search-refresh", func(ctx context.Context, pool *pgxpool.Pool) error {
		_, err := pool.Exec(ctx, `CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL);
			INSERT INTO notes VALUES (1, 'amber river'), (2, 'amber stone'), (3, 'quiet river')`)
		return err
	}))
	ix, err := New(Config{Table: "notes", Key: "id", Fields: []Field{{Column: "body", Weight: A}}})
	require.NoError(t, err)
	require.NoError(t, ix.Create(ctx, db.Pool))
	words := func() map[string]int {
		rows, err := db.Pool.Query(ctx, `SELECT word, docs FROM notes_search_words`)
		require.NoError(t, err)
		m := map[string]int{}
		for rows.Next() {
			var w string
			var n int
			require.NoError(t, rows.Scan(&w, &n))
			m[w] = n
		}
		require.NoError(t, rows.Err())
		return m
	}
	version := func(w string) (v string) {
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT xmin::text FROM notes_search_words WHERE word = $1`, w).Scan(&v))
		return v
	}
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))
	require.Equal(t, map[string]int{"amber": 2, "river": 2, "stone": 1, "quiet": 1}, words())
	amber := version("amber")

	_, err = db.Pool.Exec(ctx, `UPDATE notes SET body = 'amber meadow' WHERE id = 2; DELETE FROM notes WHERE id = 3;
		INSERT INTO notes VALUES (4, 'meadow lark')`)
	require.NoError(t, err)
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))
	require.Equal(t, map[string]int{"amber": 2, "river": 1, "meadow": 2, "lark": 1}, words())
	require.Equal(t, amber, version("amber"), "an unchanged word is not rewritten")

	// A refresh with nothing changed writes nothing.
	river := version("river")
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))
	require.Equal(t, river, version("river"))
}

// TestFoldMatchesTheWrapper checks that justpg_fold (fold, for expressions
// no index serves) gives what the IMMUTABLE wrapper gives (unaccentExpr,
// what the trigram indexes store), so the verbatim tests agree with the
// index conditions they follow, and that PostgreSQL inlines it.
func TestFoldMatchesTheWrapper(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t, pgtest.WithSetup("search-fold", func(ctx context.Context, pool *pgxpool.Pool) error {
		_, err := pool.Exec(ctx, `CREATE TABLE notes (id bigint PRIMARY KEY, body text)`)
		return err
	}))
	ix, err := New(Config{Table: "notes", Key: "id", Fields: []Field{{Column: "body", Weight: A}}})
	require.NoError(t, err)
	require.NoError(t, ix.Create(ctx, db.Pool))
	texts := []string{"Crème Brûlée", "ÆSIR Œuvre straße", "ĀĒĪŌŪ ÇÑ", "Ünïcödé — “quotes” ½", "plain ascii", "", "Ωμέγα İstanbul"}
	var same []bool
	err = db.Pool.QueryRow(ctx, fmt.Sprintf(`SELECT array_agg(%s IS NOT DISTINCT FROM %s ORDER BY o)
		FROM unnest($1::text[] || ARRAY[NULL]) WITH ORDINALITY AS x(t, o)`, ix.fold("x.t"), ix.unaccentExpr("x.t")), texts).Scan(&same)
	require.NoError(t, err)
	require.Len(t, same, len(texts)+1)
	for i, ok := range same {
		assert.True(t, ok, "text %d", i)
	}
	var folded string
	require.NoError(t, db.Pool.QueryRow(ctx, "SELECT "+ix.fold("$1::text"), "Crème Brûlée").Scan(&folded))
	assert.Equal(t, "creme brulee", folded)
	// A column's own collation does not change the lower-casing: the
	// wrapper lower-cases by the database's collation (tr-x-icu would give
	// a dotless ı, C would leave Cyrillic capitals).
	for _, c := range []struct{ text, coll string }{{"ISTANBUL", "tr-x-icu"}, {"ПРИВЕТ Москва", "C"}} {
		var f, w string
		require.NoError(t, db.Pool.QueryRow(ctx, fmt.Sprintf(`SELECT %s, %s FROM (SELECT $1::text COLLATE %q AS x) s`,
			ix.fold("s.x"), ix.unaccentExpr("s.x"), c.coll), c.text).Scan(&f, &w))
		assert.Equal(t, w, f, "%s in %s", c.text, c.coll)
	}
	// fold is only cheaper if PostgreSQL writes its body into the query.
	var plan []string
	rows, err := db.Pool.Query(ctx, "EXPLAIN (VERBOSE, COSTS OFF) SELECT "+ix.fold("body")+" FROM notes")
	require.NoError(t, err)
	plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	assert.NotContains(t, strings.Join(plan, "\n"), "justpg_fold", "inlined")
	assert.Contains(t, strings.Join(plan, "\n"), "unaccent(", "inlined")
}

// TestWordIndexesHaveNoPendingList checks that the word list's trigram
// indexes take new words directly (fastupdate off), including indexes made
// by an earlier version with fastupdate on, whose pending entries
// RefreshWords empties: a lookup reads a GIN pending list whole.
func TestWordIndexesHaveNoPendingList(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t, pgtest.WithSetup("search-pending", func(ctx context.Context, pool *pgxpool.Pool) error {
		_, err := pool.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pgstattuple;
			CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL);
			INSERT INTO notes SELECT i, format('note %s about %s', i, md5(i::text)) FROM generate_series(1, 300) AS i`)
		return err
	}))
	ix, err := New(Config{Table: "notes", Key: "id", Fields: []Field{{Column: "body", Weight: A}}})
	require.NoError(t, err)
	require.NoError(t, ix.Create(ctx, db.Pool))
	names := ix.names.wordsLenIdx
	state := func() (fastOff int, pending int64) {
		t.Helper()
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE 'fastupdate=off' = ANY (c.reloptions)),
				coalesce(sum((pgstatginindex(c.oid)).pending_tuples), 0)
			FROM pg_class c WHERE c.relname = ANY ($1)`, names).Scan(&fastOff, &pending))
		return
	}
	off, _ := state()
	assert.Equal(t, len(names), off, "every word index without fastupdate")
	// A second Create leaves indexes already without fastupdate alone
	// (ALTER INDEX would lock them out of lookups and rewrite their rows).
	xmins := func() (x []string) {
		t.Helper()
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT array_agg(xmin::text ORDER BY relname) FROM pg_class WHERE relname = ANY ($1)`, names).Scan(&x))
		return
	}
	before := xmins()
	require.NoError(t, ix.Create(ctx, db.Pool))
	assert.Equal(t, before, xmins(), "Create altered indexes already without fastupdate")
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))
	_, pending := state()
	assert.Zero(t, pending, "words went into the indexes, not a pending list")

	// An earlier version's indexes: fastupdate on, words waiting in the
	// pending lists.
	for _, n := range names {
		_, err := db.Pool.Exec(ctx, fmt.Sprintf(`ALTER INDEX %q SET (fastupdate = on)`, n))
		require.NoError(t, err)
	}
	_, err = db.Pool.Exec(ctx, `INSERT INTO notes SELECT i, format('later %s about %s', i, md5((i * 7)::text)) FROM generate_series(301, 600) AS i`)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (word, docs) SELECT 'x' || md5(i::text), 1 FROM generate_series(1, 200) AS i`, ix.words))
	require.NoError(t, err)
	off, pending = state()
	require.Zero(t, off)
	require.Positive(t, pending, "the legacy indexes hold pending entries")
	require.NoError(t, ix.Create(ctx, db.Pool))
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))
	off, pending = state()
	assert.Equal(t, len(names), off, "Create switches fastupdate off")
	assert.Zero(t, pending, "RefreshWords empties the pending lists")
	res, err := ix.Search(ctx, db.Pool, Query{Text: "laterr "})
	require.NoError(t, err)
	assert.NotEmpty(t, res.Hits, "the refreshed list corrects laterr to later")
}

// TestQueriesNeedNoUsageOnTheExtensionSchema checks that a role allowed to
// read the table and the word list, but not to use the schema holding
// pg_trgm and unaccent, can search without typo tolerance (as before
// justpg_fold) and refresh the word list.
func TestQueriesNeedNoUsageOnTheExtensionSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t, pgtest.WithSetup("search-extschema", func(ctx context.Context, pool *pgxpool.Pool) error {
		_, err := pool.Exec(ctx, `CREATE SCHEMA ext; REVOKE ALL ON SCHEMA ext FROM PUBLIC;
			ALTER EXTENSION unaccent SET SCHEMA ext; ALTER EXTENSION pg_trgm SET SCHEMA ext;
			CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL);
			INSERT INTO notes VALUES (1, 'Crème brûlée for dessert'), (2, 'a plain note')`)
		return err
	}))
	ix, err := New(Config{Table: "notes", Key: "id", ExtensionSchema: "ext", Fields: []Field{{Column: "body", Weight: A}}})
	require.NoError(t, err)
	require.NoError(t, ix.Create(ctx, db.Pool))
	role := pgx.Identifier{"reader_" + strings.ReplaceAll(db.Name, "-", "_")}.Sanitize()
	_, err = db.Pool.Exec(ctx, fmt.Sprintf(`CREATE ROLE %[1]s; GRANT SELECT ON notes TO %[1]s;
		GRANT SELECT, INSERT, UPDATE, DELETE ON %[2]s TO %[1]s`, role, ix.words))
	require.NoError(t, err)
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), db.Server.AdminURL())
		if err == nil {
			_, _ = c.Exec(context.Background(), fmt.Sprintf("DROP OWNED BY %[1]s; DROP ROLE %[1]s", role))
			_ = c.Close(context.Background())
		}
	})
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, "SET LOCAL ROLE "+role)
	require.NoError(t, err)
	var usage bool
	require.NoError(t, tx.QueryRow(ctx, `SELECT has_schema_privilege('ext', 'USAGE')`).Scan(&usage))
	require.False(t, usage)
	res, err := ix.Search(ctx, tx, Query{Text: "creme brulee ", NoTypos: true})
	require.NoError(t, err)
	require.Len(t, res.Hits, 1)
	assert.Equal(t, "1", res.Hits[0].Key)
	require.NoError(t, ix.RefreshWords(ctx, tx))
	var n int
	require.NoError(t, tx.QueryRow(ctx, "SELECT count(*) FROM "+ix.words+" WHERE word = 'creme'").Scan(&n))
	assert.Equal(t, 1, n)
}
