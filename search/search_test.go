package search_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/search"
)

func TestNewValidates(t *testing.T) {
	t.Parallel()
	good := productsConfig()
	_, err := search.New(good)
	require.NoError(t, err)
	for name, mut := range map[string]func(*search.Config){
		"no table":      func(c *search.Config) { c.Table = "" },
		"no key":        func(c *search.Config) { c.Key = "" },
		"no fields":     func(c *search.Config) { c.Fields = nil },
		"bad weight":    func(c *search.Config) { c.Fields = []search.Field{{Column: "title", Weight: "E"}} },
		"dup field":     func(c *search.Config) { c.Fields = append(c.Fields, search.Field{Column: "title"}) },
		"nul in column": func(c *search.Config) { c.Fields = []search.Field{{Column: "ti\x00tle"}} },
		"long name":     func(c *search.Config) { c.Name = strings.Repeat("n", 60) },
		"bad typos":     func(c *search.Config) { c.Typos = search.Typos{OneTypo: 6, TwoTypos: 3} },
		"bad ranking":   func(c *search.Config) { c.Ranking = search.Ranking{Exact: -1} },
		"bad filter":    func(c *search.Config) { c.Filters = []string{""} },
	} {
		c := productsConfig()
		mut(&c)
		_, err := search.New(c)
		assert.ErrorIs(t, err, search.ErrConfig, name)
	}
}

func TestDDLQuotesIdentifiers(t *testing.T) {
	t.Parallel()
	c := productsConfig()
	c.Schema = `my"schema`
	c.Table = `prod; DROP TABLE x; --`
	c.Name = "p"
	c.Language = "english'); DROP TABLE y; --"
	ix, err := search.New(c)
	require.NoError(t, err)
	sql := ix.SQL()
	assert.Contains(t, sql, `"my""schema"."prod; DROP TABLE x; --"`)
	assert.Contains(t, sql, `'english''); DROP TABLE y; --'::regconfig`)
	assert.NotContains(t, sql, "CREATE EXTENSION", "extensions only when asked")
	c.CreateExtensions = true
	ix, err = search.New(c)
	require.NoError(t, err)
	assert.Contains(t, ix.SQL(), "CREATE EXTENSION IF NOT EXISTS pg_trgm")
}

// TestCreateWithOddNames builds an index over a table whose names need
// quoting, twice (idempotent), and searches it.
func TestCreateWithOddNames(t *testing.T) {
	t.Parallel()
	db, _ := newProducts(t, productsConfig())
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `CREATE SCHEMA "Odd Schema"; CREATE TABLE "Odd Schema"."Items; --" ("Key" text PRIMARY KEY, "Title ""x""" text)`)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `INSERT INTO "Odd Schema"."Items; --" VALUES ('k1', 'Strawberry jam'), ('k2', 'Raspberry jam')`)
	require.NoError(t, err)
	ix, err := search.New(search.Config{Schema: "Odd Schema", Table: "Items; --", Name: "items", Key: "Key",
		Fields: []search.Field{{Column: `Title "x"`, Weight: search.A}}, Language: "simple"})
	require.NoError(t, err)
	require.NoError(t, ix.Create(ctx, db.Pool))
	require.NoError(t, ix.Create(ctx, db.Pool), "Create is idempotent")
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))
	r, err := ix.Search(ctx, db.Pool, search.Query{Text: "strawbery"})
	require.NoError(t, err)
	assert.Equal(t, []string{"k1"}, keys(r))
	r, err = ix.Substring(ctx, db.Pool, search.Query{Text: "berry"})
	require.NoError(t, err)
	assert.Equal(t, []string{"k1", "k2"}, keys(r))
}

func TestSearchMatching(t *testing.T) {
	t.Parallel()
	db, ix := newProducts(t, productsConfig())
	ctx := context.Background()
	cases := []struct {
		name, text string
		want       []string // exact set, in order when ordered is set
		ordered    bool
	}{
		{"exact word", "espresso", []string{"7"}, true},
		{"prefix while typing", "postgr", []string{"1", "2"}, false},
		{"prefix while typing, a correction within reach", "postgre", []string{"1", "2"}, false},
		{"prefix ranks before a correction", "postgresq", []string{"1", "2"}, true},
		{"prefix of unstemmed word", "gard", []string{"9"}, true},
		{"no prefix after space", "gard ", nil, false},
		{"typo one", "recieved", []string{"3", "12"}, false},
		{"typo transposition", "espersso", []string{"7"}, true},
		{"typo two in long word", "distribtued", []string{"6"}, true},
		{"short word no typo", "mugg", nil, false},
		{"phrase", `"pocket reference"`, []string{"2"}, true},
		{"phrase order matters", `"reference pocket"`, nil, false},
		{"exclusion", "pocket -knife", []string{"2"}, true},
		{"exclusion phrase", `pocket -"steel pocket"`, []string{"2"}, true},
		{"or", "espresso or gloves", []string{"7", "9"}, false},
		{"accent-insensitive query", "café", []string{"4", "5"}, false},
		{"accent-insensitive data", "cafe", []string{"4", "5"}, false},
		{"all words required", "pocket coffee", nil, false},
		{"case-insensitive", "THERMOS", []string{"11"}, true},
	}
	for _, c := range cases {
		r, err := ix.Search(ctx, db.Pool, search.Query{Text: c.text})
		require.NoError(t, err, c.name)
		if c.ordered || len(c.want) == 0 {
			assert.Equal(t, append([]string{}, c.want...), keys(r), c.name)
		} else {
			assert.ElementsMatch(t, c.want, keys(r), c.name)
		}
		assert.EqualValues(t, len(c.want), r.Total, c.name)
	}
}

func TestRankingOrder(t *testing.T) {
	t.Parallel()
	db, ix := newProducts(t, productsConfig())
	ctx := context.Background()
	seed(t, db, []product{
		{101, "Lamp", "A desk lamp", "home", 10},
		{102, "Lampshade", "A shade for a lamp base", "home", 10},
		{103, "Lampshades deluxe", "Fabric shades", "home", 10},
		{104, "Clamp", "A woodworking clamp", "tools", 10},
		{105, "Stamp collection", "Old stamps", "hobby", 10},
	})
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))

	// "lampshade": exact (102) > prefix (103: lampshades is a prefix match
	// and a stemmed exact one: both rank over typo-only matches).
	r, err := ix.Search(ctx, db.Pool, search.Query{Text: "lampshade", NoPrefix: true})
	require.NoError(t, err)
	require.NotEmpty(t, r.Hits)
	assert.Equal(t, "102", r.Hits[0].Key)
	assert.Equal(t, search.MatchExact, r.Hits[0].Match)

	// "lamp" as typed: exact matches first, then prefix-only matches.
	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "lamp"})
	require.NoError(t, err)
	got := keys(r)
	require.Len(t, got, 3)
	assert.ElementsMatch(t, []string{"101", "102"}, got[:2], "exact matches of lamp come first")
	assert.Equal(t, "103", got[2], "prefix-only match next")
	assert.Equal(t, search.MatchPrefix, r.Hits[2].Match)
	for i := 1; i < len(r.Hits); i++ {
		assert.GreaterOrEqual(t, r.Hits[i-1].Score, r.Hits[i].Score)
	}

	// Exact beats typo: "stamps" matches 105 exactly, "clamps"... no; use a
	// word with both an exact and a typo neighbour.
	seed(t, db, []product{{106, "Trains and trams", "", "toys", 5}, {107, "Traing wheels", "", "toys", 5}})
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))
	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "trains", NoPrefix: true})
	require.NoError(t, err)
	require.Equal(t, []string{"106", "107"}, keys(r))
	assert.Equal(t, search.MatchExact, r.Hits[0].Match)
	assert.Equal(t, search.MatchTypo, r.Hits[1].Match)
	assert.Equal(t, []string{"traing"}, r.Corrections["trains"])

	// Field weights: a title match outranks a body match.
	seed(t, db, []product{{108, "Walnut board", "", "home", 5}, {109, "Cutting board", "made of walnut wood", "home", 5}})
	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "walnut", NoPrefix: true, NoTypos: true})
	require.NoError(t, err)
	assert.Equal(t, []string{"108", "109"}, keys(r))
}

func TestRankingBlendConfigurable(t *testing.T) {
	t.Parallel()
	c := productsConfig()
	// Only relevance counts: the typo-only title match can beat an exact
	// body match.
	c.Ranking = search.Ranking{Text: 1}
	db, ix := newProducts(t, c)
	ctx := context.Background()
	seed(t, db, []product{
		{201, "Notebook", "paper", "office", 1},
		{202, "Pen", "writes in a notebok or a notebook", "office", 1},
		{203, "Notebok notebok notebok", "", "office", 1},
	})
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))
	r, err := ix.Search(ctx, db.Pool, search.Query{Text: "notebook", NoPrefix: true})
	require.NoError(t, err)
	require.Len(t, r.Hits, 3)
	assert.Equal(t, "203", r.Hits[0].Key, "relevance-only blend favours the dense typo match")
}

func TestFilters(t *testing.T) {
	t.Parallel()
	db, ix := newProducts(t, productsConfig())
	ctx := context.Background()
	run := func(text string, fs ...search.Filter) []string {
		r, err := ix.Search(ctx, db.Pool, search.Query{Text: text, Filters: fs})
		require.NoError(t, err)
		return keys(r)
	}
	assert.ElementsMatch(t, []string{"1", "2", "3", "6", "8", "12"}, run("a or guide or database or received or pocket or science", search.Eq("category", "books")))
	assert.Equal(t, []string{"5", "11"}, sortedKeys(run("coffee", search.Eq("category", "kitchen"))))
	assert.Empty(t, run("coffee", search.Eq("category", "books")))
	assert.Equal(t, []string{"11"}, run("coffee", search.Ge("price", 15)))
	assert.Equal(t, []string{"5"}, run("coffee", search.Lt("price", 15)))
	assert.Equal(t, []string{"5"}, run("coffee", search.Ne("price", 19)))
	assert.Equal(t, []string{"5"}, run("coffee", search.Gt("price", 1), search.Le("price", 12)))
	assert.ElementsMatch(t, []string{"7", "9"}, run("espresso or gloves", search.In("category", "kitchen", "garden")))
	assert.Empty(t, run("espresso", search.In[string]("category")))

	_, err := ix.Search(ctx, db.Pool, search.Query{Text: "x", Filters: []search.Filter{search.Eq("title", "x")}})
	assert.ErrorIs(t, err, search.ErrQuery, "title is not a filter column")
	_, err = ix.Search(ctx, db.Pool, search.Query{Text: "x", Filters: []search.Filter{{Column: "price", Op: "; DROP", Value: 1}}})
	assert.ErrorIs(t, err, search.ErrQuery)
	_, err = ix.Search(ctx, db.Pool, search.Query{Text: "x", Filters: []search.Filter{search.Eq("price", nil)}})
	assert.ErrorIs(t, err, search.ErrQuery)
	// A value of the wrong type is a database error, not an injection.
	_, err = ix.Search(ctx, db.Pool, search.Query{Text: "coffee", Filters: []search.Filter{search.Eq("price", "1; DROP TABLE products")}})
	require.Error(t, err)
	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, "SELECT count(*) FROM products").Scan(&n))
	assert.Equal(t, len(fixtures), n)
}

func sortedKeys(ks []string) []string {
	out := append([]string{}, ks...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if len(out[j]) < len(out[i]) || (len(out[j]) == len(out[i]) && out[j] < out[i]) {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestPaginationStable(t *testing.T) {
	t.Parallel()
	db, ix := newProducts(t, productsConfig())
	ctx := context.Background()
	var rows []product
	for i := 0; i < 57; i++ {
		title := "Widget"
		if i%3 == 0 {
			title = "Widget widget deluxe"
		}
		rows = append(rows, product{int64(1000 + i), title, "a widgetized thing", "w", float64(i)})
	}
	seed(t, db, rows)
	all, err := ix.Search(ctx, db.Pool, search.Query{Text: "widget", Limit: 100})
	require.NoError(t, err)
	require.Len(t, all.Hits, 57)
	assert.Empty(t, all.Next)

	var paged []string
	after := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 20)
		r, err := ix.Search(ctx, db.Pool, search.Query{Text: "widget", Limit: 10, After: after})
		require.NoError(t, err)
		assert.EqualValues(t, 57+min(pages/2, 1), r.Total)
		paged = append(paged, keys(r)...)
		if r.Next == "" {
			break
		}
		after = r.Next
		if pages == 1 {
			// Rows added meanwhile do not shift later pages' order of
			// existing rows.
			seed(t, db, []product{{5000, "Widget widget widget widget", "", "w", 1}})
		}
	}
	assert.Equal(t, keys(all), paged, "pages concatenate to the single-page order, no duplicates or gaps")

	_, err = ix.Search(ctx, db.Pool, search.Query{Text: "widget", After: "not a cursor!"})
	assert.ErrorIs(t, err, search.ErrQuery)
	_, err = ix.Search(ctx, db.Pool, search.Query{Text: "widget", Limit: 1001})
	assert.ErrorIs(t, err, search.ErrQuery)
}

func TestHighlightEscapesHTML(t *testing.T) {
	t.Parallel()
	c := productsConfig()
	c.Highlight = search.Markers{Start: "[[", Stop: "]]"}
	db, ix := newProducts(t, c)
	ctx := context.Background()
	seed(t, db, []product{{301, `Tom & Jerry "deluxe" mug`, `5 < 6 > 4 & the mug's handle is <b>strong</b>`, "kitchen", 3}})
	r, err := ix.Search(ctx, db.Pool, search.Query{Text: "mug deluxe", Highlight: true})
	require.NoError(t, err)
	require.Equal(t, []string{"301"}, keys(r))
	title := r.Hits[0].Highlights["title"]
	body := r.Hits[0].Highlights["body"]
	assert.Equal(t, "Tom &amp; Jerry &#34;[[deluxe]]&#34; [[mug]]", title)
	assert.Contains(t, body, "5 &lt; 6 &gt; 4 &amp;")
	assert.Contains(t, body, "[[mug]]")
	assert.NotContains(t, body+title, "<")

	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "mug deluxe"})
	require.NoError(t, err)
	assert.Nil(t, r.Hits[0].Highlights, "no highlights unless asked")
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	db, ix := newProducts(t, productsConfig())
	ctx := context.Background()
	for _, text := range []string{
		"", "   \t\n", "!!!...,,,", "the of and", "a", "-", "-espresso", "- -", `"`, `""`, `"espresso`,
		"& | ! :* ' \\", "espresso:*", "espresso & !espresso", "'; DROP TABLE products; --",
		"(espresso", "espresso)", "<->", "<2>", "espresso <-> machine", "\x00espresso", "\xff\xfe",
		"😀🔥", "кофе", "咖啡", "قهوة", "espresso 😀", strings.Repeat("espresso ", 1300),
		strings.Repeat("x", 10_000), strings.Repeat("a", 3000) + " espresso", "or", "espresso or", "or espresso",
		`\\'\\'`, "$1", "%_%", "espresso -", "e\u0301spresso",
	} {
		r, err := ix.Search(ctx, db.Pool, search.Query{Text: text, Highlight: true})
		require.NoError(t, err, "%q", text)
		require.NotNil(t, r)
		for _, h := range r.Hits {
			assert.NotEmpty(t, h.Key)
		}
	}
	// Meaningful hits survive the noise.
	for _, text := range []string{"espresso 😀", "espresso)", "(espresso", "espresso:*", "'espresso'", strings.Repeat("a", 3000) + " espresso"} {
		r, err := ix.Search(ctx, db.Pool, search.Query{Text: text})
		require.NoError(t, err)
		assert.Equal(t, []string{"7"}, keys(r), "%.40q", text)
	}
	// Nothing searchable: no hits.
	for _, text := range []string{"", "  ", "!!!", "the of and ", "-espresso", "😀"} {
		r, err := ix.Search(ctx, db.Pool, search.Query{Text: text})
		require.NoError(t, err)
		assert.Empty(t, r.Hits, "%q", text)
		assert.Zero(t, r.Total)
	}
}

func TestSubstring(t *testing.T) {
	t.Parallel()
	db, ix := newProducts(t, productsConfig())
	ctx := context.Background()
	sub := func(text string) []string {
		r, err := ix.Substring(ctx, db.Pool, search.Query{Text: text})
		require.NoError(t, err, text)
		return keys(r)
	}
	assert.Equal(t, []string{"1", "2"}, sortedKeys(sub("ostgre")))
	assert.Equal(t, []string{"9"}, sub("100% cotton"))
	assert.Empty(t, sub("100%cotton"), "% is literal")
	assert.Equal(t, []string{"9"}, sub("size_M"))
	assert.Empty(t, sub("sizeXM"), "_ is literal")
	assert.Equal(t, []string{"11"}, sub(`C:\path`))
	assert.Empty(t, sub(`C:path`), `\ is literal`)
	assert.Equal(t, []string{"4", "5"}, sortedKeys(sub("CAFE")), "case and accents ignored")
	assert.Equal(t, []string{"11"}, sub("50% off"))

	for _, short := range []string{"", "ab", "%%%", "a_b", "  ab  ", "😀😀😀"} {
		_, err := ix.Substring(ctx, db.Pool, search.Query{Text: short})
		assert.ErrorIs(t, err, search.ErrTooShort, "%q", short)
	}
	// Pagination by key.
	r, err := ix.Substring(ctx, db.Pool, search.Query{Text: "the", Limit: 2})
	require.NoError(t, err)
	require.NotEmpty(t, r.Next)
	r2, err := ix.Substring(ctx, db.Pool, search.Query{Text: "the", Limit: 100, After: r.Next})
	require.NoError(t, err)
	assert.EqualValues(t, r.Total, int64(len(r.Hits)+len(r2.Hits)))
	r, err = ix.Substring(ctx, db.Pool, search.Query{Text: "coffee", Filters: []search.Filter{search.Lt("price", 15)}})
	require.NoError(t, err)
	assert.Equal(t, []string{"5"}, keys(r))
}

func TestSuggest(t *testing.T) {
	t.Parallel()
	db, ix := newProducts(t, productsConfig())
	ctx := context.Background()
	s, err := ix.Suggest(ctx, db.Pool, "recieved", 3)
	require.NoError(t, err)
	require.NotEmpty(t, s)
	assert.Equal(t, "received", s[0].Word)
	assert.Equal(t, 1, s[0].Typos)
	assert.Equal(t, 2, s[0].Docs)

	s, err = ix.Suggest(ctx, db.Pool, "Cafè", 3)
	require.NoError(t, err)
	require.NotEmpty(t, s)
	assert.Equal(t, "cafe", s[0].Word, "words are stored unaccented")
	assert.Equal(t, 0, s[0].Typos)

	s, err = ix.Suggest(ctx, db.Pool, "zzzzqqq", 3)
	require.NoError(t, err)
	assert.Empty(t, s)
	s, err = ix.Suggest(ctx, db.Pool, "ab", 3)
	require.NoError(t, err)
	assert.Empty(t, s)
	_, err = ix.Suggest(ctx, db.Pool, "espresso", 0)
	assert.ErrorIs(t, err, search.ErrQuery)

	// New words appear after a refresh.
	seed(t, db, []product{{401, "Kaleidoscope", "", "toys", 4}})
	s, err = ix.Suggest(ctx, db.Pool, "kaleidoscpoe", 1)
	require.NoError(t, err)
	assert.Empty(t, s)
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))
	s, err = ix.Suggest(ctx, db.Pool, "kaleidoscpoe", 1)
	require.NoError(t, err)
	require.Len(t, s, 1)
	assert.Equal(t, "kaleidoscope", s[0].Word)
}

func TestCancelledAndKilled(t *testing.T) {
	t.Parallel()
	db, ix := newProducts(t, productsConfig())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := ix.Search(ctx, db.Pool, search.Query{Text: "espresso"})
	assert.ErrorIs(t, err, context.Canceled)

	// A connection killed in the middle of a transaction: the error
	// surfaces, and the pool recovers afterwards.
	bg := context.Background()
	tx, err := db.Pool.Begin(bg)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(bg) }()
	_, err = ix.Search(bg, tx, search.Query{Text: "espresso"})
	require.NoError(t, err)
	require.Positive(t, db.TerminateBackends(t))
	_, err = ix.Search(bg, tx, search.Query{Text: "espresso"})
	require.Error(t, err)
	assert.False(t, errors.Is(err, search.ErrQuery))
	r, err := ix.Search(bg, db.Pool, search.Query{Text: "espresso"})
	require.NoError(t, err)
	assert.Equal(t, []string{"7"}, keys(r))
}

// TestInCallerTransaction: rows written and words refreshed in the caller's
// transaction are searchable in it, and gone after a rollback.
func TestInCallerTransaction(t *testing.T) {
	t.Parallel()
	db, ix := newProducts(t, productsConfig())
	ctx := context.Background()
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO products (id, title) VALUES (900, 'Harmonica')`)
	require.NoError(t, err)
	require.NoError(t, ix.RefreshWords(ctx, tx))
	r, err := ix.Search(ctx, tx, search.Query{Text: "harmonca"})
	require.NoError(t, err)
	assert.Equal(t, []string{"900"}, keys(r))
	require.NoError(t, tx.Rollback(ctx))
	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "harmonica"})
	require.NoError(t, err)
	assert.Empty(t, r.Hits)
}

// TestPrefixIsLiteral: the word being typed is a prefix of what was typed,
// not of its stem, so a complete misspelled word finds its correction first.
func TestPrefixIsLiteral(t *testing.T) {
	t.Parallel()
	db, ix := newProducts(t, productsConfig())
	ctx := context.Background()
	seed(t, db, []product{{701, "Explanation guide", "", "books", 1}, {702, "Explaining physics", "", "books", 1}})
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))
	r, err := ix.Search(ctx, db.Pool, search.Query{Text: "explaning"})
	require.NoError(t, err)
	require.NotEmpty(t, r.Hits)
	assert.Equal(t, "702", r.Hits[0].Key, "the typo correction, not the stem's prefix")
	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "explan"})
	require.NoError(t, err)
	assert.Equal(t, []string{"701"}, keys(r))
	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "guide explai"})
	require.NoError(t, err)
	assert.Empty(t, keys(r), "all words are required")
	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "physics explai"})
	require.NoError(t, err)
	assert.Equal(t, []string{"702"}, keys(r))
	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "physics or explan"})
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"701", "702"}, keys(r), "a prefix inside an or-group")
}

// TestTypoSearchKeepsCallerSettings: the typo lookup sets the trigram
// threshold for its own call only, not for the rest of the caller's
// transaction.
func TestTypoSearchKeepsCallerSettings(t *testing.T) {
	t.Parallel()
	db, ix := newProducts(t, productsConfig())
	ctx := context.Background()
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, `SELECT set_config('pg_trgm.similarity_threshold', '0.7', true)`)
	require.NoError(t, err)
	r, err := ix.Search(ctx, tx, search.Query{Text: "recieved "})
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"3", "12"}, keys(r), "a 0.7 threshold would have lost the correction")
	var th string
	require.NoError(t, tx.QueryRow(ctx, `SELECT current_setting('pg_trgm.similarity_threshold')`).Scan(&th))
	assert.Equal(t, "0.7", th)
}

// TestCorrectionsWithoutHits: the corrections are reported even when the
// query has no hits.
func TestCorrectionsWithoutHits(t *testing.T) {
	t.Parallel()
	db, ix := newProducts(t, productsConfig())
	ctx := context.Background()
	r, err := ix.Search(ctx, db.Pool, search.Query{Text: "espersso thermos "})
	require.NoError(t, err)
	assert.Empty(t, r.Hits)
	assert.Equal(t, []string{"espresso"}, r.Corrections["espersso"])
}

// TestStandardConformingStringsOff runs the same queries in a session with
// standard_conforming_strings off (a backslash in a plain literal is then
// an escape): every result must equal the default session's.
func TestStandardConformingStringsOff(t *testing.T) {
	t.Parallel()
	db, ix := newProducts(t, productsConfig())
	ctx := context.Background()
	off := connectWithSCSOff(t, db.URL)
	for _, q := range []search.Query{
		{Text: "postgres"},
		{Text: "postgress "},                // a typo: corrections and their regexes
		{Text: "recieved wisdm "},           // two typos
		{Text: "pock"},                      // the word being typed
		{Text: `"pocket knife" `},           // a phrase
		{Text: `C:\path\to `},               // backslashes in the query text
		{Text: `\ \\ '\' `},                 // nothing but quoting trouble
		{Text: "databse -espresso "},        // a typo and an exclusion
		{Text: "cafe", Highlight: true},     // accents folded
		{Text: "50% off", NoTypos: true},    // no corrections
		{Text: "gardning glovs ", Limit: 1}, // a loose fallback candidate
	} {
		want, err := ix.Search(ctx, db.Pool, q)
		require.NoError(t, err, q.Text)
		got, err := ix.Search(ctx, off, q)
		require.NoError(t, err, "%q with standard_conforming_strings off", q.Text)
		require.Equal(t, want, got, q.Text)
	}
	for _, s := range []string{`path\to`, `50% off`, "ocket"} {
		want, err := ix.Substring(ctx, db.Pool, search.Query{Text: s})
		require.NoError(t, err, s)
		got, err := ix.Substring(ctx, off, search.Query{Text: s})
		require.NoError(t, err, s)
		require.Equal(t, want, got, s)
	}
	want, err := ix.Suggest(ctx, db.Pool, "postg", 5)
	require.NoError(t, err)
	got, err := ix.Suggest(ctx, off, "postg", 5)
	require.NoError(t, err)
	require.Equal(t, want, got)
}

// TestStandardConformingStringsOffCorrections covers the correction paths
// (alternatives per correction, regexes of the grouped corrections) with
// the scenarios of TestCorrectionInterleaving and TestStopWordCorrection.
func TestStandardConformingStringsOffCorrections(t *testing.T) {
	t.Parallel()
	cfg := productsConfig()
	cfg.MaxCandidates = 10
	db, ix := newProducts(t, cfg)
	ctx := context.Background()
	rows := append(collectionRows(),
		product{601, "Which grinder", "Pick the grinder for your beans.", "kitchen", 50},
		product{602, "Sandwich maker", "Toasts bread.", "kitchen", 30})
	seed(t, db, rows)
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))
	off := connectWithSCSOff(t, db.URL)
	for _, q := range []search.Query{{Text: "collectoin ", Limit: 10}, {Text: "whihc "}, {Text: "whihc espresso "}} {
		want, err := ix.Search(ctx, db.Pool, q)
		require.NoError(t, err)
		require.NotEmpty(t, want.Hits, q.Text)
		got, err := ix.Search(ctx, off, q)
		require.NoError(t, err, q.Text)
		require.Equal(t, want, got, q.Text)
	}
}

// connectWithSCSOff opens a session of its own with
// standard_conforming_strings off from the start: pgx prepares statements
// once per connection, so a pool's connection would reuse what it parsed
// with the setting on.
func connectWithSCSOff(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	pgtest.ApplyExecMode(t, cfg)
	pgtest.ApplySession(t, cfg)
	// pgx refuses the simple protocol on a session with
	// standard_conforming_strings off: under JUSTPG_TEST_EXEC_MODE=simple
	// this session sends its statements in exec mode instead.
	if cfg.DefaultQueryExecMode == pgx.QueryExecModeSimpleProtocol {
		cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	}
	cfg.RuntimeParams["standard_conforming_strings"] = "off"
	c, err := pgx.ConnectConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}
