package search_test

// Black-box review of package search: only the exported API (and the
// pgtest harness) is used. Every test is named TestBlackBox...

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"html"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/search"
)

const bbItemsTable = `CREATE TABLE items (
	id        bigint PRIMARY KEY,
	tenant_id uuid DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
	title     text NOT NULL,
	body      text,
	category  text NOT NULL DEFAULT 'misc',
	price     numeric NOT NULL DEFAULT 0,
	qty       int NOT NULL DEFAULT 0,
	created   timestamptz NOT NULL DEFAULT '2024-01-01T00:00:00Z',
	active    bool NOT NULL DEFAULT true
)`

type bbItem struct {
	id          int64
	title, body string
	category    string
	price       float64
}

func bbConfig() search.Config {
	return search.Config{
		Table:   "items",
		Key:     "id",
		Fields:  []search.Field{{Column: "title", Weight: search.A}, {Column: "body", Weight: search.C}},
		Filters: []string{"category", "price", "qty", "created", "active"},
	}
}

func bbSeed(t testing.TB, db search.DB, rows ...bbItem) {
	t.Helper()
	for _, r := range rows {
		cat := r.category
		if cat == "" {
			cat = "misc"
		}
		_, err := db.Exec(context.Background(), `INSERT INTO items (id, title, body, category, price, qty) VALUES ($1, $2, $3, $4, $5, $6)`,
			r.id, r.title, r.body, cat, r.price, int32(r.id))
		require.NoError(t, err)
	}
}

func bbNewDB(t testing.TB) *pgtest.DB {
	t.Helper()
	return pgtest.NewDB(t, pgtest.WithSetup("bb-items", func(ctx context.Context, pool *pgxpool.Pool) error {
		_, err := pool.Exec(ctx, bbItemsTable)
		return err
	}))
}

func bbSetup(t testing.TB, cfg search.Config, rows ...bbItem) (*pgtest.DB, *search.Index) {
	t.Helper()
	ix, err := search.New(cfg)
	require.NoError(t, err)
	db := bbNewDB(t)
	ctx := context.Background()
	require.NoError(t, ix.Create(ctx, db.Pool))
	bbSeed(t, db.Pool, rows...)
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))
	return db, ix
}

func bbKeys(r *search.Result) []string {
	out := []string{}
	for _, h := range r.Hits {
		out = append(out, h.Key)
	}
	return out
}

// bbNotDBError fails when err is a raw database error (or anything other
// than nil or one of the allowed sentinel errors).
func bbAllowed(t *testing.T, err error, allowed []error, format string, args ...any) {
	t.Helper()
	if err == nil {
		return
	}
	for _, a := range allowed {
		if errors.Is(err, a) {
			return
		}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		t.Errorf("raw database error %s (%s) for "+format, append([]any{pgErr.Code, err}, args...)...)
		return
	}
	t.Errorf("unexpected error %v for "+format, append([]any{err}, args...)...)
}

// bbFixtures is a catalogue with several scripts, accents, numbers,
// hyphenated words, stop words and long words.
var bbFixtures = []bbItem{
	{1, "PostgreSQL in Action", "A practical guide to the PostgreSQL database.", "books", 39},
	{2, "Postgres Pocket Reference", "Quick reference for postgres users.", "books", 15},
	{3, "Received Wisdom", "Essays on what we received from our elders.", "books", 22},
	{4, "Café Racer Jacket", "Leather jacket for motorbike riders.", "clothing", 199},
	{5, "Cafe au lait mug", "A big mug for coffee with milk.", "kitchen", 12},
	{6, "Espresso Machine", "Makes espresso and cappuccino at home.", "kitchen", 349},
	{7, "Wi-Fi Router", "Dual band e-mail ready, 5 antennas, 2400 MHz", "tech", 80},
	{8, "Кофемашина Эспрессо", "Итальянский кофе", "kitchen", 500},
	{9, "咖啡 机器", "中文 描述", "kitchen", 600},
	{10, "قهوة عربية", "فنجان", "kitchen", 700},
	{11, "Naïve Straße", "Ångström units", "misc", 1},
	{12, "Which one", "The of and to", "misc", 2},
	{13, "Pocket Knife", "Stainless steel pocket knife with 12 tools", "outdoor", 25},
	{14, "Gardening Gloves", `100% cotton, size_M, C:\path`, "garden", 9},
	{15, "Supercalifragilisticexpialidocious", strings.Repeat("ab", 32) + " c" + strings.Repeat("ab", 32), "misc", 3},
	{16, "Emoji 😀 party", "fun 🔥 times", "misc", 3},
	{17, "Many words", bbManyWords(32), "misc", 3},
}

func bbManyWords(n int) string {
	w := make([]string, n)
	for i := range w {
		w[i] = fmt.Sprintf("w%02d", i+1) // short: no typo tolerance
	}
	return strings.Join(w, " ")
}

// TestBlackBoxQueryTextNeverErrors: hostile query text never yields an
// error from Search, and gives the documented hits.
func TestBlackBoxQueryTextNeverErrors(t *testing.T) {
	t.Parallel()
	db, ix := bbSetup(t, bbConfig(), bbFixtures...)
	ctx := context.Background()
	cases := []struct {
		text string
		want []string // nil: only "no error" is checked
	}{
		{"", []string{}},
		{" \t\n\r ", []string{}},
		{"!!!...,,,;;;", []string{}},
		{"the of and", []string{}},
		{"to ", []string{}},
		{"to", nil}, // a prefix: matches "tools"
		{"😀🔥", []string{}},
		{"-espresso", []string{}},
		{"-espresso machine", []string{}},
		{"espresso -machine", []string{}},
		{"espresso:*", []string{"6"}},
		{"espresso:A", []string{"6"}},
		{"espresso:*B", nil}, // b is a prefix
		{"!espresso", []string{"6"}},
		{"!!espresso", []string{"6"}},
		{"espresso|machine", []string{"6"}},
		{"espresso&machine", []string{"6"}},
		{"espresso & !machine", nil},
		{"espresso <-> machine", []string{"6"}},
		{"espresso <2> machine", nil}, // 2 is a word
		{"(espresso)", []string{"6"}},
		{"((espresso", []string{"6"}},
		{"'espresso'", []string{"6"}},
		{`\espresso\`, []string{"6"}},
		{"espresso'; DROP TABLE items; --", []string{}},
		{"'; DROP TABLE items; --", []string{}},
		{"$1 $2 espresso", []string{}}, // 1 and 2 are words
		{"\x00espresso", []string{"6"}},
		{"espre\x00sso", nil},
		{"\xffespresso\xfe", []string{"6"}},
		{"espresso\xc3", []string{"6"}},
		{"espresso " + strings.Repeat("!", 10_000), []string{"6"}},
		{strings.Repeat("espresso ", 1200), []string{"6"}},
		{strings.Repeat("z", 10_000), []string{}},
		{strings.Repeat("é", 5_000), []string{}},
		{"espresso 😀", []string{"6"}},
		{"party 😀", []string{"16"}},
		{"кофемашина", []string{"8"}},
		{"КОФЕМАШИНА", []string{"8"}},
		{"кофемаш", []string{"8"}},
		{"咖啡", []string{"9"}},
		{"قهوة", []string{"10"}},
		{"naive", []string{"11"}},
		{"naïve", []string{"11"}},
		{"NAÏVE", []string{"11"}},
		{"strasse", []string{"11"}},
		{"straße", []string{"11"}},
		{"angstrom", []string{"11"}},
		{"which", []string{"12"}},
		{"12", []string{"13"}},
		{"2400", []string{"7"}},
		{"100", []string{"14"}},
		{"wi-fi", []string{"7"}},
		{"Wi-Fi router", []string{"7"}},
		{"e-mail", []string{"7"}},
		{strings.Repeat("ab", 32), []string{"15"}}, // 64 bytes: used
		{"supercalifragilisticexpialidocious c" + strings.Repeat("ab", 32), []string{"15"}}, // 65 bytes: dropped
		{bbManyWords(32) + " zzq", []string{"17"}},                                          // 33rd word ignored
		{"zzq " + bbManyWords(32), []string{}},                                              // first word kept
		{"espresso OR knife", []string{"6", "13"}},
		{"espresso or knife", []string{"6", "13"}},
		{"or or espresso", nil},
		{"espresso or", nil},
		{`"pocket reference"`, []string{"2"}},
		{`"reference pocket"`, []string{}},
		{`"pocket, reference"`, []string{"2"}},
		{`"pocket reference`, []string{"2"}},
		{`pocket -knife`, []string{"2"}},
		{`pocket -"pocket knife"`, []string{"2"}},
		{`""""`, []string{}},
		{"e\u0301spresso", nil},
		{"\u200bespresso\u200b", []string{"6"}},
		{"\ufeffespresso", []string{"6"}},
	}
	for _, c := range cases {
		for _, q := range []search.Query{
			{Text: c.text, Highlight: true},
			{Text: c.text, NoPrefix: true, NoTypos: true},
			{Text: c.text, Filters: []search.Filter{search.Ge("price", 0)}, Limit: 1000},
		} {
			r, err := ix.Search(ctx, db.Pool, q)
			bbAllowed(t, err, nil, "Search %.60q", c.text)
			if err != nil {
				continue
			}
			require.NotNil(t, r)
			if c.want != nil && !q.NoPrefix {
				assert.ElementsMatch(t, c.want, bbKeys(r), "Search %.60q", c.text)
				assert.EqualValues(t, len(c.want), r.Total, "Total for %.60q", c.text)
			}
		}
	}
	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM items`).Scan(&n))
	assert.Equal(t, len(bbFixtures), n)
}

// TestBlackBoxSubstringInput: %, _ and \ are literal, accents and case are
// ignored, short input is ErrTooShort, and no input gives a database error.
func TestBlackBoxSubstringInput(t *testing.T) {
	t.Parallel()
	db, ix := bbSetup(t, bbConfig(), bbFixtures...)
	ctx := context.Background()
	sub := func(text string) []string {
		t.Helper()
		r, err := ix.Substring(ctx, db.Pool, search.Query{Text: text, Limit: 1000})
		require.NoError(t, err, "%q", text)
		return bbKeys(r)
	}
	assert.Equal(t, []string{"14"}, sub("100% cotton"))
	assert.Empty(t, sub("100%cotton"), "%% literal")
	assert.Equal(t, []string{"14"}, sub("size_M"))
	assert.Empty(t, sub("sizeXM"), "_ literal")
	assert.Equal(t, []string{"14"}, sub(`C:\path`))
	assert.Empty(t, sub(`C:path`), `\ literal`)
	assert.Empty(t, sub(`%%%cot`), "leading %% literal")
	assert.Empty(t, sub(`___ton`), "leading _ literal")
	assert.Equal(t, []string{"1", "2"}, sub("OSTGRE"))
	assert.Equal(t, []string{"4", "5"}, sub("café"))
	assert.Equal(t, []string{"4", "5"}, sub("CAFE"))
	assert.Equal(t, []string{"11"}, sub("straße"))
	assert.Equal(t, []string{"11"}, sub("NAIVE"))
	assert.Equal(t, []string{"8"}, sub("КОФЕМАШ"))
	assert.Equal(t, []string{"7"}, sub("wi-fi router"))
	for _, short := range []string{"", " ", "ab", "a-b-c", "wi-fi ro", "%%%", "___", `\\\`, "😀😀😀", "  ab  ", "a\x00b", "咖啡"} {
		_, err := ix.Substring(ctx, db.Pool, search.Query{Text: short})
		assert.ErrorIs(t, err, search.ErrTooShort, "%q", short)
	}
	for _, text := range []string{"espresso" + strings.Repeat("x", 10_000), strings.Repeat("%_\\", 3000) + "abc",
		"'; DROP TABLE items; --", "espresso ' OR 1=1 --"} {
		r, err := ix.Substring(ctx, db.Pool, search.Query{Text: text})
		bbAllowed(t, err, nil, "Substring %.40q", text)
		if err == nil {
			assert.Empty(t, r.Hits, "%.40q", text)
		}
	}
	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM items`).Scan(&n))
	assert.Equal(t, len(bbFixtures), n)
}

// TestBlackBoxSubstringNulAndInvalidUTF8: Substring text with a NUL byte or
// invalid UTF-8 must not reach the database as a raw error (query text is
// never an error).
func TestBlackBoxSubstringNulAndInvalidUTF8(t *testing.T) {
	t.Parallel()
	db, ix := bbSetup(t, bbConfig(), bbFixtures...)
	ctx := context.Background()
	for _, text := range []string{"espre\x00sso", "\x00espresso", "espresso\xff", "\xc3espresso", "coffee\xed\xa0\x80"} {
		r, err := ix.Substring(ctx, db.Pool, search.Query{Text: text})
		bbAllowed(t, err, []error{search.ErrTooShort}, "Substring %q", text)
		_ = r
	}
}

// TestBlackBoxSuggestInput: Suggest's bounds and odd input.
func TestBlackBoxSuggestInput(t *testing.T) {
	t.Parallel()
	db, ix := bbSetup(t, bbConfig(), bbFixtures...)
	ctx := context.Background()
	s, err := ix.Suggest(ctx, db.Pool, "recieved", 3)
	require.NoError(t, err)
	require.NotEmpty(t, s)
	assert.Equal(t, "received", s[0].Word)
	assert.Equal(t, 1, s[0].Typos)
	assert.Equal(t, 1, s[0].Docs)

	s, err = ix.Suggest(ctx, db.Pool, "RECEIVED", 3)
	require.NoError(t, err)
	require.NotEmpty(t, s)
	assert.Equal(t, search.Suggestion{Word: "received", Docs: 1, Typos: 0}, s[0], "the word itself first")

	s, err = ix.Suggest(ctx, db.Pool, "кофемашына", 3)
	require.NoError(t, err)
	require.NotEmpty(t, s)
	assert.Equal(t, "кофемашина", s[0].Word)

	s, err = ix.Suggest(ctx, db.Pool, "espreso", 1)
	require.NoError(t, err)
	assert.Len(t, s, 1)
	assert.Equal(t, "espresso", s[0].Word)

	for _, n := range []int{0, -1, -1000} {
		_, err = ix.Suggest(ctx, db.Pool, "espresso", n)
		assert.ErrorIs(t, err, search.ErrQuery, "n=%d", n)
	}
	s, err = ix.Suggest(ctx, db.Pool, "espresso", 1_000_000)
	bbAllowed(t, err, []error{search.ErrQuery}, "n=1e6")
	if err == nil {
		assert.NotEmpty(t, s)
	}
	for _, w := range []string{"", "   ", "ab", "\x00", "espre\x00sso", "\xff\xfe", "espresso\xff", strings.Repeat("x", 10_000),
		"😀😀😀", "recieved wisdom", "'; DROP TABLE items; --", "%%%", "esp%", "_spresso", `\\\\\`} {
		s, err := ix.Suggest(ctx, db.Pool, w, 5)
		bbAllowed(t, err, nil, "Suggest %.40q", w)
		assert.LessOrEqual(t, len(s), 5)
		seen := map[string]bool{}
		for _, sg := range s {
			assert.False(t, seen[sg.Word], "duplicate suggestion %q for %q", sg.Word, w)
			seen[sg.Word] = true
		}
	}
	// % and _ are not patterns: "esp%" is not a prefix query.
	s, err = ix.Suggest(ctx, db.Pool, "esp%", 5)
	require.NoError(t, err)
	assert.Empty(t, s)
}

// TestBlackBoxConfigValidation: New rejects invalid configurations with
// ErrConfig and fills in the documented defaults.
func TestBlackBoxConfigValidation(t *testing.T) {
	t.Parallel()
	bad := map[string]func(*search.Config){
		"nul table":            func(c *search.Config) { c.Table = "it\x00ems" },
		"nul schema":           func(c *search.Config) { c.Schema = "pub\x00lic" },
		"nul key":              func(c *search.Config) { c.Key = "i\x00d" },
		"nul filter":           func(c *search.Config) { c.Filters = []string{"cat\x00egory"} },
		"nul tenant":           func(c *search.Config) { c.TenantColumn = "ten\x00ant" },
		"nul name":             func(c *search.Config) { c.Name = "n\x00" },
		"nul vector":           func(c *search.Config) { c.VectorColumn = "v\x00" },
		"nul ext schema":       func(c *search.Config) { c.ExtensionSchema = "p\x00" },
		"empty field":          func(c *search.Config) { c.Fields = []search.Field{{Column: ""}} },
		"weight lower":         func(c *search.Config) { c.Fields = []search.Field{{Column: "title", Weight: "a"}} },
		"weight AB":            func(c *search.Config) { c.Fields = []search.Field{{Column: "title", Weight: "AB"}} },
		"weight injection":     func(c *search.Config) { c.Fields = []search.Field{{Column: "title", Weight: "A'); --"}} },
		"dup field":            func(c *search.Config) { c.Fields = append(c.Fields, search.Field{Column: "body", Weight: search.B}) },
		"negative candidates":  func(c *search.Config) { c.MaxCandidates = -1 },
		"negative ranking":     func(c *search.Config) { c.Ranking = search.Ranking{Exact: 8, Prefix: -4} },
		"typos reversed":       func(c *search.Config) { c.Typos = search.Typos{OneTypo: 9, TwoTypos: 5} },
		"typos negative":       func(c *search.Config) { c.Typos = search.Typos{OneTypo: -1, TwoTypos: 5} },
		"similarity > 1":       func(c *search.Config) { c.Typos = search.Typos{OneTypo: 5, TwoTypos: 9, Similarity: 1.5} },
		"similarity < 0":       func(c *search.Config) { c.Typos = search.Typos{OneTypo: 5, TwoTypos: 9, Similarity: -0.1} },
		"candidates negative":  func(c *search.Config) { c.Typos = search.Typos{OneTypo: 5, TwoTypos: 9, Candidates: -1} },
		"alternatives neg":     func(c *search.Config) { c.Typos = search.Typos{OneTypo: 5, TwoTypos: 9, Alternatives: -1} },
		"long table":           func(c *search.Config) { c.Table = strings.Repeat("t", 64) },
		"long key":             func(c *search.Config) { c.Key = strings.Repeat("k", 64) },
		"long filter":          func(c *search.Config) { c.Filters = []string{strings.Repeat("f", 64)} },
		"long tenant":          func(c *search.Config) { c.TenantColumn = strings.Repeat("f", 64) },
		"long schema":          func(c *search.Config) { c.Schema = strings.Repeat("s", 64) },
		"multibyte long table": func(c *search.Config) { c.Table = strings.Repeat("é", 32) },
	}
	for name, mut := range bad {
		c := bbConfig()
		mut(&c)
		_, err := search.New(c)
		assert.ErrorIs(t, err, search.ErrConfig, name)
	}

	ix, err := search.New(bbConfig())
	require.NoError(t, err)
	got := ix.Config()
	assert.Equal(t, "english", got.Language)
	assert.Equal(t, "search_vector", got.VectorColumn)
	assert.Equal(t, "items", got.Name)
	assert.Equal(t, search.DefaultRanking, got.Ranking)
	assert.Equal(t, search.DefaultTypos.OneTypo, got.Typos.OneTypo)
	assert.Equal(t, search.DefaultTypos.TwoTypos, got.Typos.TwoTypos)
	assert.Equal(t, 400, got.MaxCandidates)
	assert.Equal(t, search.Markers{Start: "<mark>", Stop: "</mark>"}, got.Highlight)
}

// TestBlackBoxGeneratedNamesDistinct: a field named search_words gets its
// trigram index named <name>_search_words_trgm_idx, the name of the word
// list's trigram index in earlier versions (which Create drops); CREATE
// INDEX IF NOT EXISTS would also silently skip one of two objects of one
// name. Either New rejects the config or every documented index exists.
func TestBlackBoxGeneratedNamesDistinct(t *testing.T) {
	t.Parallel()
	c := bbConfig()
	c.Fields = []search.Field{{Column: "title", Weight: search.A}, {Column: "search_words", Weight: search.B}}
	ix, err := search.New(c)
	if err != nil {
		assert.ErrorIs(t, err, search.ErrConfig)
		return
	}
	db := bbNewDB(t)
	ctx := context.Background()
	_, err = db.Pool.Exec(ctx, `ALTER TABLE items ADD COLUMN search_words text`)
	require.NoError(t, err)
	require.NoError(t, ix.Create(ctx, db.Pool))
	var fieldIdx, wordIdx int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_indexes WHERE tablename = 'items' AND indexdef LIKE '%gin_trgm_ops%'`).Scan(&fieldIdx))
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_indexes WHERE tablename = 'items_search_words' AND indexdef LIKE '%gin_trgm_ops%'`).Scan(&wordIdx))
	assert.Equal(t, 2, fieldIdx, "a trigram index per field")
	assert.Equal(t, 25, wordIdx, "the word list has its trigram indexes, one per length up to 24 and one for longer words")
}

// TestBlackBoxInjectionThroughNames: hostile schema, table, key, field,
// filter, vector column and name work end to end and drop nothing.
func TestBlackBoxInjectionThroughNames(t *testing.T) {
	t.Parallel()
	db := bbNewDB(t)
	ctx := context.Background()
	schema := `s"; DROP TABLE canary; --`
	table := `t'; DROP TABLE canary; --`
	key := `k"ey'`
	field := `ti"tle); DROP TABLE canary; --`
	filter := `ca't"`
	id := func(s ...string) string { return pgx.Identifier(s).Sanitize() }
	_, err := db.Pool.Exec(ctx, `CREATE TABLE canary (x int); INSERT INTO canary VALUES (1);
		CREATE SCHEMA `+id(schema)+`;
		CREATE TABLE `+id(schema, table)+` (`+id(key)+` text PRIMARY KEY, `+id(field)+` text, `+id(filter)+` text)`)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `INSERT INTO `+id(schema, table)+` VALUES ('k1', 'Strawberry jam', 'red'), ('k''2', 'Raspberry jam', 'pink'), ('k3"', 'Blueberry pie', 'blue')`)
	require.NoError(t, err)
	ix, err := search.New(search.Config{Schema: schema, Table: table, Key: key, Name: `n"x'`, VectorColumn: `v"ec`,
		Fields: []search.Field{{Column: field, Weight: search.A}}, Filters: []string{filter}, Language: "simple"})
	require.NoError(t, err)
	require.NoError(t, ix.Create(ctx, db.Pool))
	require.NoError(t, ix.Create(ctx, db.Pool))
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))
	r, err := ix.Search(ctx, db.Pool, search.Query{Text: "strawbery", Highlight: true})
	require.NoError(t, err)
	assert.Equal(t, []string{"k1"}, bbKeys(r))
	if len(r.Hits) == 1 {
		assert.Contains(t, r.Hits[0].Highlights[field], "<mark>")
	}
	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "jam", Filters: []search.Filter{search.Eq(filter, "pink")}})
	require.NoError(t, err)
	assert.Equal(t, []string{"k'2"}, bbKeys(r))
	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "jam", Filters: []search.Filter{search.In(filter, "red", "x'); DROP TABLE canary; --")}})
	require.NoError(t, err)
	assert.Equal(t, []string{"k1"}, bbKeys(r))
	r, err = ix.Substring(ctx, db.Pool, search.Query{Text: "berry"})
	require.NoError(t, err)
	assert.Equal(t, []string{"k'2", "k1", "k3\""}, bbKeys(r), "ordered by key")
	s, err := ix.Suggest(ctx, db.Pool, "blubbery", 3)
	require.NoError(t, err)
	require.NotEmpty(t, s)
	assert.Equal(t, "blueberry", s[0].Word)
	// Pages over text keys with quotes.
	var walked []string
	after := ""
	for i := 0; i < 5; i++ {
		r, err := ix.Search(ctx, db.Pool, search.Query{Text: "jam or pie", Limit: 1, After: after})
		require.NoError(t, err)
		walked = append(walked, bbKeys(r)...)
		if r.Next == "" {
			break
		}
		after = r.Next
	}
	assert.ElementsMatch(t, []string{"k1", "k'2", "k3\""}, walked)

	// An injected language is a bind-safe literal: Create fails cleanly.
	bad, err := search.New(search.Config{Table: "items", Key: "id", Fields: []search.Field{{Column: "title"}}, Name: "bad",
		Language: "english'::regconfig); DROP TABLE canary; --"})
	require.NoError(t, err)
	assert.Error(t, bad.Create(ctx, db.Pool))
	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM canary`).Scan(&n))
	assert.Equal(t, 1, n)
}

// TestBlackBoxMatchingAndOrdering: typos, prefixes, exact > prefix > typo.
func TestBlackBoxMatchingAndOrdering(t *testing.T) {
	t.Parallel()
	db, ix := bbSetup(t, bbConfig(), append(bbFixtures,
		bbItem{101, "Spring", "", "s", 1},
		bbItem{102, "Springboard", "", "s", 1},
		bbItem{103, "Sprint", "", "s", 1},
	)...)
	ctx := context.Background()
	q := func(text string) *search.Result {
		t.Helper()
		r, err := ix.Search(ctx, db.Pool, search.Query{Text: text})
		require.NoError(t, err, text)
		return r
	}
	r := q("recieved")
	assert.Equal(t, []string{"3"}, bbKeys(r))
	assert.Contains(t, r.Corrections["recieved"], "received")
	assert.ElementsMatch(t, []string{"1", "2"}, bbKeys(q("postgre")))
	assert.ElementsMatch(t, []string{"1", "2"}, bbKeys(q("postgr")))
	r = q("postgresql")
	require.NotEmpty(t, r.Hits)
	assert.Equal(t, "1", r.Hits[0].Key)
	assert.Equal(t, search.MatchExact, r.Hits[0].Match)
	assert.Equal(t, []string{"6"}, bbKeys(q("expresso")))
	assert.Equal(t, []string{"6"}, bbKeys(q("espresso machnie")))
	assert.Equal(t, []string{"8"}, bbKeys(q("кофемашына ")), "a typo in Cyrillic")
	assert.Equal(t, []string{"15"}, bbKeys(q("supercalifragilisticexpialidocous")))

	r = q("spring")
	require.Equal(t, []string{"101", "102", "103"}, bbKeys(r))
	assert.Equal(t, search.MatchExact, r.Hits[0].Match)
	assert.Equal(t, search.MatchPrefix, r.Hits[1].Match)
	assert.Equal(t, search.MatchTypo, r.Hits[2].Match)
	for i := 1; i < len(r.Hits); i++ {
		assert.Greater(t, r.Hits[i-1].Score, r.Hits[i].Score)
	}
	r, err := ix.Search(ctx, db.Pool, search.Query{Text: "spring", NoPrefix: true})
	require.NoError(t, err)
	assert.Equal(t, []string{"101", "103"}, bbKeys(r))
	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "spring", NoTypos: true})
	require.NoError(t, err)
	assert.Equal(t, []string{"101", "102"}, bbKeys(r))
	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "spring", NoTypos: true, NoPrefix: true})
	require.NoError(t, err)
	assert.Equal(t, []string{"101"}, bbKeys(r))
	assert.Empty(t, r.Corrections["spring"])
}

// TestBlackBoxFilters: every operator, types, In edge cases, and errors.
func TestBlackBoxFilters(t *testing.T) {
	t.Parallel()
	var rows []bbItem
	for i := 1; i <= 10; i++ {
		rows = append(rows, bbItem{int64(i), "Lantern", "", []string{"a", "b"}[i%2], float64(i) * 1.5})
	}
	db, ix := bbSetup(t, bbConfig(), rows...)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `UPDATE items SET active = (id % 3 <> 0), created = '2024-01-01 00:00:00+00'::timestamptz + id * interval '1 day'`)
	require.NoError(t, err)
	run := func(fs ...search.Filter) []string {
		t.Helper()
		r, err := ix.Search(ctx, db.Pool, search.Query{Text: "lantern", Filters: fs, Limit: 100})
		require.NoError(t, err, "%+v", fs)
		assert.EqualValues(t, len(r.Hits), r.Total, "%+v", fs)
		return sortedKeys(bbKeys(r))
	}
	assert.Equal(t, []string{"2", "4", "6", "8", "10"}, run(search.Eq("category", "a")))
	assert.Equal(t, []string{"1", "3", "5", "7", "9"}, run(search.Ne("category", "a")))
	assert.Equal(t, []string{"1", "2"}, run(search.Lt("price", 4.5)))
	assert.Equal(t, []string{"1", "2", "3"}, run(search.Le("price", 4.5)))
	assert.Equal(t, []string{"9", "10"}, run(search.Gt("price", 12)))
	assert.Equal(t, []string{"8", "9", "10"}, run(search.Ge("price", 12)))
	assert.Equal(t, []string{"3"}, run(search.Eq("qty", 3)))
	assert.Equal(t, []string{"3"}, run(search.Eq("qty", int64(3))))
	assert.Equal(t, []string{"2", "3"}, run(search.In("qty", 2, 3, 99)))
	assert.Equal(t, []string{"3", "6", "9"}, run(search.Eq("active", false)))
	assert.Equal(t, []string{"1", "2"}, run(search.Lt("created", time.Date(2024, 1, 3, 12, 0, 0, 0, time.UTC))))
	assert.Equal(t, []string{"4"}, run(search.Gt("price", 4.5), search.Lt("price", 7.5)))
	assert.Equal(t, []string{"2", "4"}, run(search.In("price", 3, 6)))
	assert.Equal(t, []string{"2", "4"}, run(search.In("price", 3.0, 6.0)))
	assert.Equal(t, []string{"1", "2"}, run(search.In("category", "a", "b"), search.Le("qty", 2)))
	assert.Empty(t, run(search.In[string]("category")))
	assert.Empty(t, run(search.In("category", []string{}...)))
	assert.Empty(t, run(search.In[string]("category", nil...)))
	assert.Empty(t, run(search.Eq("category", "a'; DROP TABLE items; --")))
	assert.Empty(t, run(search.In("category", "a' OR '1'='1")))

	for name, fs := range map[string][]search.Filter{
		"unknown column":   {search.Eq("title", "x")},
		"key column":       {search.Eq("id", 1)},
		"case differs":     {search.Eq("Category", "a")},
		"empty column":     {search.Eq("", "a")},
		"bad op":           {{Column: "price", Op: "LIKE", Value: "%"}},
		"injected op":      {{Column: "price", Op: "= 1 OR 1=1 --", Value: 1}},
		"empty op":         {{Column: "price", Value: 1}},
		"nil value":        {search.Eq("price", nil)},
		"nil Lt":           {search.Lt("price", nil)},
		"In nil value":     {{Column: "price", Op: search.OpIn, Value: nil}},
		"injected column":  {search.Eq(`category" OR true --`, "a")},
		"good then bad op": {search.Eq("category", "a"), {Column: "price", Op: "~", Value: 1}},
	} {
		r, err := ix.Search(ctx, db.Pool, search.Query{Text: "lantern", Filters: fs})
		assert.ErrorIs(t, err, search.ErrQuery, name)
		assert.Nil(t, r, name)
		_, err = ix.Substring(ctx, db.Pool, search.Query{Text: "lantern", Filters: fs})
		assert.ErrorIs(t, err, search.ErrQuery, "Substring "+name)
	}
	// Even a query with no searchable word rejects a bad filter.
	_, err = ix.Search(ctx, db.Pool, search.Query{Text: "", Filters: []search.Filter{search.Eq("title", "x")}})
	assert.ErrorIs(t, err, search.ErrQuery, "bad filter on an empty query")
}

// bbWalk collects every page of q, failing on errors, on a page larger
// than the limit and on a Total that changes between pages.
func bbWalk(t *testing.T, ix *search.Index, db search.DB, q search.Query, substring bool) (keys []string, total int64) {
	t.Helper()
	keys = []string{}
	ctx := context.Background()
	total = -1
	for pages := 0; ; pages++ {
		require.Less(t, pages, 500, "pagination does not end")
		var r *search.Result
		var err error
		if substring {
			r, err = ix.Substring(ctx, db, q)
		} else {
			r, err = ix.Search(ctx, db, q)
		}
		require.NoError(t, err)
		limit := q.Limit
		if limit == 0 {
			limit = 20
		}
		assert.LessOrEqual(t, len(r.Hits), limit)
		if total >= 0 {
			assert.Equal(t, total, r.Total, "Total changes between pages (page %d)", pages)
		}
		total = r.Total
		keys = append(keys, bbKeys(r)...)
		if r.Next == "" {
			return keys, total
		}
		assert.NotEmpty(t, r.Hits, "a Next cursor after an empty page")
		q.After = r.Next
	}
}

func bbDups(keys []string) []string {
	seen := map[string]int{}
	var d []string
	for _, k := range keys {
		seen[k]++
		if seen[k] == 2 {
			d = append(d, k)
		}
	}
	return d
}

// TestBlackBoxPagination: walking pages gives every hit exactly once, in
// the single-page order, for ties, mixed tiers, filters and corrected
// (interleaved) queries.
func TestBlackBoxPagination(t *testing.T) {
	t.Parallel()
	var rows []bbItem
	id := int64(1)
	add := func(n int, title, body, cat string) {
		for i := 0; i < n; i++ {
			rows = append(rows, bbItem{id, title, body, cat, float64(id % 7)})
			id++
		}
	}
	add(25, "Widget", "", "a")                       // identical scores: ties
	add(10, "Widget widget deluxe", "a widget", "b") // other tiers
	add(6, "Widgetry", "", "a")                      // prefix only
	add(12, "House for sale", "", "a")
	add(9, "Horse for sale", "", "b")
	add(7, "Hose for sale", "", "a")
	add(5, "Hoist for sale", "", "b")
	db, ix := bbSetup(t, bbConfig(), rows...)
	ctx := context.Background()
	for _, q := range []search.Query{
		{Text: "widget", Limit: 7},
		{Text: "widget", Limit: 1},
		{Text: "widget", Limit: 7, Filters: []search.Filter{search.Eq("category", "a")}},
		{Text: "widget ", Limit: 4},
		{Text: "hoese", Limit: 3},
		{Text: "hoese", Limit: 5, NoPrefix: true},
		{Text: "hoese sale", Limit: 4},
		{Text: "hoese or widgt", Limit: 6},
		{Text: "for", Limit: 9},
		{Text: "sale", Limit: 10, Highlight: true},
	} {
		full := q
		full.Limit = 1000
		all, err := ix.Search(ctx, db.Pool, full)
		require.NoError(t, err)
		assert.Empty(t, all.Next)
		assert.EqualValues(t, len(all.Hits), all.Total, "%+v", q)
		walked, total := bbWalk(t, ix, db.Pool, q, false)
		assert.Empty(t, bbDups(walked), "duplicates walking %+v", q)
		assert.Equal(t, bbKeys(all), walked, "pages concatenate to the one-page order for %+v", q)
		assert.Equal(t, all.Total, total)
		again, _ := bbWalk(t, ix, db.Pool, q, false)
		assert.Equal(t, walked, again, "stable for %+v", q)
	}
	// Substring pages by key.
	all, err := ix.Substring(ctx, db.Pool, search.Query{Text: "sale", Limit: 1000})
	require.NoError(t, err)
	assert.Len(t, all.Hits, 33)
	walked, total := bbWalk(t, ix, db.Pool, search.Query{Text: "sale", Limit: 4}, true)
	assert.Equal(t, bbKeys(all), walked)
	assert.EqualValues(t, 33, total)

	// Limits.
	r, err := ix.Search(ctx, db.Pool, search.Query{Text: "widget"})
	require.NoError(t, err)
	assert.Len(t, r.Hits, 20, "Limit 0 means 20")
	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "widget", Limit: 1000})
	require.NoError(t, err)
	assert.Len(t, r.Hits, 41)
	for _, l := range []int{-1, 1001, 1 << 40} {
		_, err = ix.Search(ctx, db.Pool, search.Query{Text: "widget", Limit: l})
		assert.ErrorIs(t, err, search.ErrQuery, "Limit %d", l)
		_, err = ix.Substring(ctx, db.Pool, search.Query{Text: "widget", Limit: l})
		assert.ErrorIs(t, err, search.ErrQuery, "Substring Limit %d", l)
	}
}

// TestBlackBoxCapped: with MaxCandidates, TotalCapped is reported, Total is
// a lower bound, and the pages still hold every ranked row once.
func TestBlackBoxCapped(t *testing.T) {
	t.Parallel()
	c := bbConfig()
	c.MaxCandidates = 10
	var rows []bbItem
	for i := 1; i <= 30; i++ {
		rows = append(rows, bbItem{int64(i), "Gizmo", "", "a", 1})
	}
	db, ix := bbSetup(t, c, rows...)
	r, err := ix.Search(context.Background(), db.Pool, search.Query{Text: "gizmo", Limit: 1000})
	require.NoError(t, err)
	assert.True(t, r.TotalCapped)
	assert.GreaterOrEqual(t, r.Total, int64(10))
	assert.LessOrEqual(t, r.Total, int64(30))
	walked, _ := bbWalk(t, ix, db.Pool, search.Query{Text: "gizmo", Limit: 3}, false)
	assert.Empty(t, bbDups(walked))
	assert.Equal(t, bbKeys(r), walked)
	r, err = ix.Search(context.Background(), db.Pool, search.Query{Text: "gizmo", Filters: []search.Filter{search.Le("qty", 5)}})
	require.NoError(t, err)
	assert.False(t, r.TotalCapped, "a filter narrows below the cap")
	assert.EqualValues(t, 5, r.Total)
}

// TestBlackBoxBadCursor: malformed or tampered cursors give ErrQuery (or,
// when they are well-formed, a result), never a raw database error.
func TestBlackBoxBadCursor(t *testing.T) {
	t.Parallel()
	var rows []bbItem
	for i := 1; i <= 8; i++ {
		rows = append(rows, bbItem{int64(i), "Marble", "", "a", 1})
	}
	db, ix := bbSetup(t, bbConfig(), rows...)
	ctx := context.Background()
	r, err := ix.Search(ctx, db.Pool, search.Query{Text: "marble", Limit: 2})
	require.NoError(t, err)
	require.NotEmpty(t, r.Next)
	good := r.Next
	sr, err := ix.Substring(ctx, db.Pool, search.Query{Text: "marble", Limit: 2})
	require.NoError(t, err)
	require.NotEmpty(t, sr.Next)
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	encStd := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	flip := []byte(good)
	flip[len(flip)/2] ^= 0x01
	cursors := []string{
		"not a cursor!", "=", "%%%", "\x00", "\xff\xfe", strings.Repeat("A", 100_000),
		good[:len(good)/2], good + "x", good + "==", string(flip), sr.Next,
		enc(""), enc("{}"), enc("null"), enc("[]"), enc(`"x"`), enc("{"),
		enc(`{"s":1}`), enc(`{"k":"1"}`), enc(`{"s":"x","k":"1"}`), enc(`{"s":null,"k":"1"}`),
		enc(`{"s":1,"k":1}`), enc(`{"s":1,"k":null}`), enc(`{"s":1e999,"k":"1"}`), enc(`{"s":-1e308,"k":"1"}`),
		enc(`{"s":1,"k":"abc"}`), enc(`{"s":1,"k":"1.5"}`), enc(`{"s":1,"k":"99999999999999999999999"}`),
		enc(`{"s":1,"k":""}`), enc(`{"s":1,"k":"1' OR '1'='1"}`),
		enc(`{"s":1,"k":"1","x":[1,2,3]}`), encStd(`{"s":1,"k":"1"}`), enc(`{"k":"abc"}`),
	}
	for _, cur := range cursors {
		_, err := ix.Search(ctx, db.Pool, search.Query{Text: "marble", After: cur})
		bbAllowed(t, err, []error{search.ErrQuery}, "Search After %.60q", cur)
		_, err = ix.Substring(ctx, db.Pool, search.Query{Text: "marble", After: cur})
		bbAllowed(t, err, []error{search.ErrQuery}, "Substring After %.60q", cur)
	}
	_, err = ix.Search(ctx, db.Pool, search.Query{Text: "marble", After: "garbage!!"})
	assert.ErrorIs(t, err, search.ErrQuery)
	_, err = ix.Substring(ctx, db.Pool, search.Query{Text: "marble", After: "garbage!!"})
	assert.ErrorIs(t, err, search.ErrQuery)
	// A tampered cursor on a query with no searchable word is still checked
	// or ignored, not an error from the database.
	_, err = ix.Search(ctx, db.Pool, search.Query{Text: "the", After: enc(`{"s":1,"k":"abc"}`)})
	bbAllowed(t, err, []error{search.ErrQuery}, "stop-word query with bad cursor")
}

// TestBlackBoxHighlight: HTML in rows is escaped, markers are applied to
// exact, prefix and typo matches, and row text cannot fake a marker.
func TestBlackBoxHighlight(t *testing.T) {
	t.Parallel()
	c := bbConfig()
	c.Highlight = search.Markers{Start: `<em class="hit">`, Stop: "</em>"}
	var ctl strings.Builder
	for r := rune(1); r < 0x20; r++ {
		if r != '\t' && r != '\n' && r != '\r' {
			ctl.WriteRune(r)
		}
	}
	for r := rune(0xE000); r < 0xE010; r++ {
		ctl.WriteRune(r)
	}
	ctl.WriteString("\u0091\u0092\ufffc\ufffd\u2028\u2029")
	db, ix := bbSetup(t, c,
		bbItem{1, `Tom & Jerry <mark>fake</mark> "zebra" it's <em class="hit">x</em>`, `5 < 6 &amp; 7 > 3 zebra <script>alert('x')</script>`, "a", 1},
		bbItem{2, "Received Wisdom", "PostgreSQL manual", "a", 1},
		bbItem{3, "Giraffe " + ctl.String() + " zebra " + ctl.String() + " okapi", "", "a", 1},
	)
	ctx := context.Background()
	r, err := ix.Search(ctx, db.Pool, search.Query{Text: "zebra", Highlight: true, NoPrefix: true})
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"1", "3"}, bbKeys(r))
	for _, h := range r.Hits {
		title, body := h.Highlights["title"], h.Highlights["body"]
		if h.Key == "1" {
			assert.Equal(t, 1, strings.Count(title, c.Highlight.Start), "one real marker in %q", title)
			assert.Equal(t, 1, strings.Count(title, c.Highlight.Stop), "one real stop marker in %q", title)
			assert.Equal(t, 1, strings.Count(body, c.Highlight.Start), "%q", body)
			assert.NotContains(t, strings.ReplaceAll(strings.ReplaceAll(title+body, c.Highlight.Start, ""), c.Highlight.Stop, ""), "<")
			assert.Contains(t, body, "&amp;amp;", "existing entities are escaped once more, not decoded")
		}
		if h.Key == "3" {
			assert.Equal(t, 1, strings.Count(title, c.Highlight.Start), "no marker from control characters: %q", title)
			assert.Equal(t, 1, strings.Count(title, c.Highlight.Stop), "%q", title)
			assert.Contains(t, title, c.Highlight.Start+"zebra"+c.Highlight.Stop)
		}
	}
	for text, want := range map[string]string{
		"recieved ":  "Received",   // typo
		"wisdon ":    "Wisdom",     // typo
		"postgr":     "PostgreSQL", // prefix
		"received":   "Received",   // exact
		"wisdom rec": "Received",   // prefix, second word
	} {
		r, err := ix.Search(ctx, db.Pool, search.Query{Text: text, Highlight: true})
		require.NoError(t, err, text)
		require.Equal(t, []string{"2"}, bbKeys(r), text)
		all := r.Hits[0].Highlights["title"] + " " + r.Hits[0].Highlights["body"]
		assert.Contains(t, all, c.Highlight.Start+want+c.Highlight.Stop, "%q highlights %q in %q", text, want, all)
	}
}

// TestBlackBoxRefreshConcurrent: concurrent refreshes all succeed, the word
// list is right afterwards, and newer rows match exactly and by prefix.
func TestBlackBoxRefreshConcurrent(t *testing.T) {
	t.Parallel()
	db, ix := bbSetup(t, bbConfig(), bbFixtures...)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if i%2 == 0 {
				errs[i] = ix.RefreshWords(ctx, db.Pool)
			} else {
				_, errs[i] = ix.Search(ctx, db.Pool, search.Query{Text: "recieved"})
			}
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		assert.NoError(t, err, "call %d", i)
	}
	s, err := ix.Suggest(ctx, db.Pool, "espresso", 1)
	require.NoError(t, err)
	require.Len(t, s, 1)
	assert.Equal(t, search.Suggestion{Word: "espresso", Docs: 1, Typos: 0}, s[0], "not counted twice")

	// A refresh held open in a transaction makes a second one wait, and a
	// waiting refresh honours its context's deadline.
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	require.NoError(t, ix.RefreshWords(ctx, tx))
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	start := time.Now()
	err = ix.RefreshWords(short, db.Pool)
	cancel()
	if err != nil {
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	}
	assert.Less(t, time.Since(start), 3*time.Second, "a blocked refresh returns at its deadline")
	done := make(chan error, 1)
	go func() { done <- ix.RefreshWords(ctx, db.Pool) }()
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, tx.Commit(ctx))
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("the second refresh did not finish after the first committed")
	}

	// Rows after the refresh: exact and prefix now, typos after a refresh.
	bbSeed(t, db.Pool, bbItem{901, "Harmonium", "bellows", "m", 1})
	for _, text := range []string{"harmonium", "harmon", "HARMONIUM "} {
		r, err := ix.Search(ctx, db.Pool, search.Query{Text: text})
		require.NoError(t, err)
		assert.Equal(t, []string{"901"}, bbKeys(r), text)
	}
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))
	r, err := ix.Search(ctx, db.Pool, search.Query{Text: "harmonuim "})
	require.NoError(t, err)
	assert.Equal(t, []string{"901"}, bbKeys(r))
	// Deleted rows' words leave the list at the next refresh.
	_, err = db.Pool.Exec(ctx, `DELETE FROM items WHERE id = 901`)
	require.NoError(t, err)
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))
	s, err = ix.Suggest(ctx, db.Pool, "harmonium", 3)
	require.NoError(t, err)
	for _, sg := range s {
		assert.NotEqual(t, "harmonium", sg.Word)
	}
}

// TestBlackBoxTxAndCancel: the caller's transaction and context.
func TestBlackBoxTxAndCancel(t *testing.T) {
	t.Parallel()
	db, ix := bbSetup(t, bbConfig(), bbFixtures...)
	ctx := context.Background()

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err := ix.Search(cancelled, db.Pool, search.Query{Text: "recieved"})
	assert.ErrorIs(t, err, context.Canceled, "Search")
	_, err = ix.Search(cancelled, db.Pool, search.Query{Text: "which"})
	assert.ErrorIs(t, err, context.Canceled, "Search stop word")
	_, err = ix.Substring(cancelled, db.Pool, search.Query{Text: "espresso"})
	assert.ErrorIs(t, err, context.Canceled, "Substring")
	_, err = ix.Suggest(cancelled, db.Pool, "espreso", 3)
	assert.ErrorIs(t, err, context.Canceled, "Suggest")
	assert.ErrorIs(t, ix.RefreshWords(cancelled, db.Pool), context.Canceled, "RefreshWords")
	assert.ErrorIs(t, ix.Create(cancelled, db.Pool), context.Canceled, "Create")
	expired, cancel2 := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel2()
	_, err = ix.Search(expired, db.Pool, search.Query{Text: "espresso"})
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	// The pool still works.
	r, err := ix.Search(ctx, db.Pool, search.Query{Text: "espresso"})
	require.NoError(t, err)
	assert.Equal(t, []string{"6"}, bbKeys(r))

	// In a transaction: own writes, and query errors before the database
	// leave the transaction usable.
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	bbSeed(t, tx, bbItem{950, "Ocarina", "clay flute", "m", 1})
	_, err = ix.Search(ctx, tx, search.Query{Text: "ocarina", Filters: []search.Filter{search.Eq("title", "x")}})
	require.ErrorIs(t, err, search.ErrQuery)
	_, err = ix.Search(ctx, tx, search.Query{Text: "ocarina", After: "garbage!!"})
	require.ErrorIs(t, err, search.ErrQuery)
	_, err = ix.Substring(ctx, tx, search.Query{Text: "oc"})
	require.ErrorIs(t, err, search.ErrTooShort)
	_, err = ix.Suggest(ctx, tx, "ocarina", 0)
	require.ErrorIs(t, err, search.ErrQuery)
	r, err = ix.Search(ctx, tx, search.Query{Text: "ocarina"})
	require.NoError(t, err, "the transaction is still usable")
	assert.Equal(t, []string{"950"}, bbKeys(r))
	r, err = ix.Substring(ctx, tx, search.Query{Text: "carin"})
	require.NoError(t, err)
	assert.Equal(t, []string{"950"}, bbKeys(r))
	// Create in a transaction is a savepoint: a failing Create does not
	// abort the caller's transaction.
	bad, err := search.New(search.Config{Table: "no_such_table", Key: "id", Fields: []search.Field{{Column: "title"}}})
	require.NoError(t, err)
	assert.Error(t, bad.Create(ctx, tx))
	var n int
	require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM items WHERE id = 950`).Scan(&n), "transaction usable after a failed Create")
	assert.Equal(t, 1, n)
	require.NoError(t, tx.Rollback(ctx))
	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "ocarina"})
	require.NoError(t, err)
	assert.Empty(t, r.Hits)

	// A plain *pgx.Conn is a DB too, and a cancelled search leaves it usable.
	connCfg, err := pgx.ParseConfig(db.URL)
	require.NoError(t, err)
	pgtest.ApplyExecMode(t, connCfg)
	pgtest.ApplySession(t, connCfg)
	conn, err := pgx.ConnectConfig(ctx, connCfg)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = ix.Search(cancelled, conn, search.Query{Text: "espresso"})
	assert.ErrorIs(t, err, context.Canceled)
	if !conn.IsClosed() {
		r, err = ix.Search(ctx, conn, search.Query{Text: "espresso"})
		require.NoError(t, err)
		assert.Equal(t, []string{"6"}, bbKeys(r))
	}
}

const (
	bbTenantA = "aaaaaaaa-1111-1111-1111-000000000001"
	bbTenantB = "bbbbbbbb-2222-2222-2222-000000000002"
)

func bbInTenant(t *testing.T, pool *pgxpool.Pool, tenant string, fn func(tx pgx.Tx)) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true)`, tenant)
		require.NoError(t, err)
		fn(tx)
		return nil
	}))
}

// bbTenantDB sets up the items table owned by an owner role (which runs
// Create), with the tenancy policy on items and on the word list, and a pool
// connected as an app role subject to the policies.
func bbTenantDB(t *testing.T) (*pgtest.DB, *search.Index, *pgxpool.Pool) {
	t.Helper()
	db := bbNewDB(t)
	ctx := context.Background()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	sfx := hex.EncodeToString(b)
	owner, app := pgx.Identifier{"bb_owner_" + sfx}.Sanitize(), pgx.Identifier{"bb_app_" + sfx}.Sanitize()
	_, err := db.Pool.Exec(ctx, fmt.Sprintf(`CREATE ROLE %[1]s; CREATE ROLE %[2]s;
		GRANT USAGE, CREATE ON SCHEMA public TO %[1]s; GRANT USAGE ON SCHEMA public TO %[2]s;
		ALTER TABLE items OWNER TO %[1]s`, owner, app))
	require.NoError(t, err)
	dropRolesAfter(t, db, "bb_owner_"+sfx, "bb_app_"+sfx)
	c := bbConfig()
	c.TenantColumn = "tenant_id"
	ix, err := search.New(c)
	require.NoError(t, err)
	conn, err := db.Pool.Acquire(ctx)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "SET ROLE "+owner)
	require.NoError(t, err)
	require.NoError(t, ix.Create(ctx, conn))
	pol := `USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid))`
	_, err = conn.Exec(ctx, fmt.Sprintf(`ALTER TABLE items ENABLE ROW LEVEL SECURITY;
		ALTER TABLE items_search_words ENABLE ROW LEVEL SECURITY;
		CREATE POLICY tenant ON items %[2]s; CREATE POLICY tenant ON items_search_words %[2]s;
		GRANT SELECT, INSERT, UPDATE, DELETE ON items, items_search_words TO %[1]s; RESET ROLE`, app, pol))
	require.NoError(t, err)
	conn.Release()
	cfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	pgtest.ApplyExecMode(t, cfg.ConnConfig)
	pgtest.ApplySession(t, cfg.ConnConfig)
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, "SET ROLE "+app)
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return db, ix, pool
}

// TestBlackBoxTenantIsolation: under row-level security one tenant never
// sees another's rows, keys, totals, corrections or suggestions, whatever
// kind of query it runs.
func TestBlackBoxTenantIsolation(t *testing.T) {
	t.Parallel()
	_, ix, pool := bbTenantDB(t)
	ctx := context.Background()
	bbInTenant(t, pool, bbTenantA, func(tx pgx.Tx) {
		bbSeed(t, tx,
			bbItem{501, "Accordion", "secret alpha plans", "x", 1},
			bbItem{502, "Accordion stand", "which one", "x", 2},
			bbItem{503, "Bandoneon", "accordion family", "y", 3})
		require.NoError(t, ix.RefreshWords(ctx, tx))
	})
	bbInTenant(t, pool, bbTenantB, func(tx pgx.Tx) {
		bbSeed(t, tx,
			bbItem{601, "Accordion case", "bravo confidential roadmap", "x", 1},
			bbItem{602, "Harpsichord", "which harpsichord", "x", 2},
			bbItem{603, "Confidential memo", "quarterly numbers", "y", 3})
		require.NoError(t, ix.RefreshWords(ctx, tx))
	})
	type side struct {
		tenant             string
		accordion          []string
		foreign            []string // words only the other tenant has
		ownDocsAccordion   int
		which              []string
		foreignTypos       []string // typos of the other tenant's words
		foreignCorrections []string
	}
	sides := []side{
		{bbTenantA, []string{"501", "502", "503"}, []string{"confidential", "harpsichord", "memo", "roadmap", "bravo", "case", "quarterly"}, 3, []string{"502"},
			[]string{"confidentail", "harpsicord", "quartrely", "roadmpa"}, []string{"confidential", "harpsichord", "quarterly", "roadmap"}},
		{bbTenantB, []string{"601"}, []string{"secret", "alpha", "plans", "bandoneon", "family", "stand"}, 1, []string{"602"},
			[]string{"bandonoen", "secrte", "familly"}, []string{"bandoneon", "secret", "family"}},
	}
	for _, s := range sides {
		bbInTenant(t, pool, s.tenant, func(tx pgx.Tx) {
			for _, text := range []string{"accordion", "acordion", "accord", "ACCORDION "} {
				r, err := ix.Search(ctx, tx, search.Query{Text: text, Limit: 1000})
				require.NoError(t, err)
				assert.ElementsMatch(t, s.accordion, bbKeys(r), "%s %s", s.tenant, text)
				assert.EqualValues(t, len(s.accordion), r.Total, "%s %s total", s.tenant, text)
			}
			r, err := ix.Search(ctx, tx, search.Query{Text: "which"})
			require.NoError(t, err)
			assert.ElementsMatch(t, s.which, bbKeys(r), "stop-word query %s", s.tenant)
			for _, w := range s.foreign {
				for _, q := range []search.Query{{Text: w}, {Text: w[:4]}, {Text: w + " or accordion", Limit: 1000}} {
					r, err := ix.Search(ctx, tx, q)
					require.NoError(t, err)
					for _, k := range bbKeys(r) {
						assert.Contains(t, s.accordion, k, "%s: %q found another tenant's row", s.tenant, q.Text)
					}
				}
				r, err := ix.Substring(ctx, tx, search.Query{Text: w})
				require.NoError(t, err)
				assert.Empty(t, r.Hits, "%s substring %s", s.tenant, w)
				assert.Zero(t, r.Total)
			}
			for i, typo := range s.foreignTypos {
				r, err := ix.Search(ctx, tx, search.Query{Text: typo + " "})
				require.NoError(t, err)
				assert.Empty(t, r.Hits, "%s %s", s.tenant, typo)
				for _, cs := range r.Corrections {
					assert.NotContains(t, cs, s.foreignCorrections[i], "%s: correction leaked for %s", s.tenant, typo)
				}
				sg, err := ix.Suggest(ctx, tx, typo, 10)
				require.NoError(t, err)
				for _, x := range sg {
					assert.NotEqual(t, s.foreignCorrections[i], x.Word, "%s: suggestion leaked for %s", s.tenant, typo)
				}
			}
			sg, err := ix.Suggest(ctx, tx, "accordion", 1)
			require.NoError(t, err)
			require.Len(t, sg, 1)
			assert.Equal(t, search.Suggestion{Word: "accordion", Docs: s.ownDocsAccordion}, sg[0], "%s: per-tenant counts", s.tenant)
			r, err = ix.Search(ctx, tx, search.Query{Text: "accordion", Filters: []search.Filter{search.Eq("category", "x")}, Limit: 1})
			require.NoError(t, err)
			walked := bbKeys(r)
			for r.Next != "" {
				r, err = ix.Search(ctx, tx, search.Query{Text: "accordion", Filters: []search.Filter{search.Eq("category", "x")}, Limit: 1, After: r.Next})
				require.NoError(t, err)
				walked = append(walked, bbKeys(r)...)
			}
			for _, k := range walked {
				assert.Contains(t, s.accordion, k)
			}
		})
	}
	// A refresh by one tenant leaves the other's word list alone.
	bbInTenant(t, pool, bbTenantA, func(tx pgx.Tx) { require.NoError(t, ix.RefreshWords(ctx, tx)) })
	bbInTenant(t, pool, bbTenantB, func(tx pgx.Tx) {
		sg, err := ix.Suggest(ctx, tx, "harpsicord", 1)
		require.NoError(t, err)
		require.Len(t, sg, 1)
		assert.Equal(t, "harpsichord", sg[0].Word)
	})
	// With no tenant set, nothing is visible.
	bbInTenant(t, pool, "", func(tx pgx.Tx) {
		r, err := ix.Search(ctx, tx, search.Query{Text: "accordion"})
		require.NoError(t, err)
		assert.Empty(t, r.Hits)
		assert.Zero(t, r.Total)
	})
}

// TestBlackBoxTenantWithoutPolicy: in tenant mode the lookup functions
// restrict matches to the current tenant themselves; as the table owner
// (not subject to a policy) every kind of query should still return only
// the current tenant's rows, consistently.
func TestBlackBoxTenantWithoutPolicy(t *testing.T) {
	t.Parallel()
	c := bbConfig()
	c.TenantColumn = "tenant_id"
	db, ix := bbSetup(t, c)
	ctx := context.Background()
	bbInTenant(t, db.Pool, bbTenantA, func(tx pgx.Tx) {
		bbSeed(t, tx, bbItem{1, "Accordion which", "alpha", "x", 1})
		require.NoError(t, ix.RefreshWords(ctx, tx))
	})
	bbInTenant(t, db.Pool, bbTenantB, func(tx pgx.Tx) {
		bbSeed(t, tx, bbItem{2, "Accordion which", "alpha", "x", 1})
		require.NoError(t, ix.RefreshWords(ctx, tx))
	})
	bbInTenant(t, db.Pool, bbTenantA, func(tx pgx.Tx) {
		for _, text := range []string{"accordion", "acordion", "accord", "which", "alpha", "accordion which"} {
			r, err := ix.Search(ctx, tx, search.Query{Text: text})
			require.NoError(t, err)
			assert.Equal(t, []string{"1"}, bbKeys(r), "%q", text)
		}
		r, err := ix.Substring(ctx, tx, search.Query{Text: "ccordi"})
		require.NoError(t, err)
		assert.Equal(t, []string{"1"}, bbKeys(r))
		s, err := ix.Suggest(ctx, tx, "accordion", 1)
		require.NoError(t, err)
		require.Len(t, s, 1)
		assert.Equal(t, 1, s[0].Docs)
	})
}

// TestBlackBoxConfigCopied: New and Config should not share the caller's
// slices: a caller reusing its Config (or the one Config returns) changes
// what ix.Config reports.
func TestBlackBoxConfigCopied(t *testing.T) {
	t.Parallel()
	// The index keeps its own copy of the configuration's slices.
	c := bbConfig()
	ix, err := search.New(c)
	require.NoError(t, err)
	c.Fields[0].Column = "body; DROP TABLE items"
	c.Filters[0] = "title"
	assert.Equal(t, "title", ix.Config().Fields[0].Column)
	assert.Equal(t, "category", ix.Config().Filters[0])
	assert.NotContains(t, ix.SQL(), "DROP TABLE")
	// And Config() returns a copy too.
	ix.Config().Fields[0].Column = "mutated"
	ix.Config().Filters[0] = "mutated"
	assert.Equal(t, "title", ix.Config().Fields[0].Column)
	assert.Equal(t, "category", ix.Config().Filters[0])
}

// TestBlackBoxConfigVectorColumnClash: a VectorColumn naming an existing
// field or the key passes New (which "validates cfg") and only fails in
// Create with a raw database error.
func TestBlackBoxConfigVectorColumnClash(t *testing.T) {
	t.Parallel()
	for _, vc := range []string{"title", "body", "id"} {
		c := bbConfig()
		c.VectorColumn = vc
		_, err := search.New(c)
		assert.ErrorIs(t, err, search.ErrConfig, vc)
	}
}

// TestBlackBoxFilterInNotSlice: a Filter with OpIn and a non-slice value is
// a query-option error (ErrQuery), not a driver encode error.
func TestBlackBoxFilterInNotSlice(t *testing.T) {
	t.Parallel()
	db, ix := bbSetup(t, bbConfig(), bbItem{1, "Lantern", "", "a", 3})
	f := []search.Filter{{Column: "price", Op: search.OpIn, Value: 3}}
	_, err := ix.Search(context.Background(), db.Pool, search.Query{Text: "lantern", Filters: f})
	assert.ErrorIs(t, err, search.ErrQuery)
	_, err = ix.Substring(context.Background(), db.Pool, search.Query{Text: "lantern", Filters: f})
	assert.ErrorIs(t, err, search.ErrQuery)
}

// TestBlackBoxCursorWithNul: a tampered cursor whose key holds a NUL
// reaches the database.
func TestBlackBoxCursorWithNul(t *testing.T) {
	t.Parallel()
	db, ix := bbSetup(t, bbConfig(), bbItem{1, "Marble", "", "a", 1}, bbItem{2, "Marble", "", "a", 1})
	cur := base64.RawURLEncoding.EncodeToString([]byte(`{"s":1,"k":"\u0000"}`))
	_, err := ix.Search(context.Background(), db.Pool, search.Query{Text: "marble", After: cur})
	bbAllowed(t, err, []error{search.ErrQuery}, "Search After %q", cur)
	_, err = ix.Substring(context.Background(), db.Pool, search.Query{Text: "marble", After: cur})
	bbAllowed(t, err, []error{search.ErrQuery}, "Substring After %q", cur)
}

// TestBlackBoxHighlightKeepsTagLikeText: highlights are "HTML-escaped"
// text; text that looks like an HTML tag is dropped instead of escaped.
func TestBlackBoxHighlightKeepsTagLikeText(t *testing.T) {
	t.Parallel()
	titles := map[string]string{
		"1": "Use the <table> element",
		"2": "Tom & Jerry <mark>fake</mark> element",
		"3": "if a<b and c>d then element",
	}
	var rows []bbItem
	for k, v := range titles {
		var id int64
		fmt.Sscan(k, &id)
		rows = append(rows, bbItem{id, v, "", "a", 1})
	}
	db, ix := bbSetup(t, bbConfig(), rows...)
	r, err := ix.Search(context.Background(), db.Pool, search.Query{Text: "element", Highlight: true})
	require.NoError(t, err)
	require.Len(t, r.Hits, 3)
	for _, h := range r.Hits {
		got := h.Highlights["title"]
		plain := html.UnescapeString(strings.NewReplacer("<mark>", "", "</mark>", "").Replace(got))
		assert.Equal(t, titles[h.Key], plain, "highlight %q lost text", got)
	}
}

// TestBlackBoxManyWords: each typo word's rewrite of the query wraps the
// previous one; flattened by the planner, the tree doubled with every word
// (9 words took seconds, 32 exhausted the server's memory). The deadline
// only keeps a regression from hanging the run.
func TestBlackBoxManyWords(t *testing.T) {
	t.Parallel()
	db, ix := bbSetup(t, bbConfig(), bbItem{1, "red wooden garden chair with cushion", "sturdy outdoor furniture for patio and terrace", "a", 1})
	var many []string
	for i := range search.MaxTerms {
		many = append(many, fmt.Sprintf("alpha%c%c", 'a'+i%26, 'a'+i/26))
	}
	for _, tc := range []struct {
		text string
		keys []string
	}{
		{"wooden garden chair cushion sturdy outdoor furniture patio terrace", []string{"1"}},
		{"woden gardn chiar cushon sturdy outdor furnitre patio terace", []string{"1"}},
		{strings.Join(many, " "), []string{}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		r, err := ix.Search(ctx, db.Pool, search.Query{Text: tc.text})
		cancel()
		require.NoError(t, err, tc.text)
		assert.Equal(t, tc.keys, bbKeys(r), tc.text)
	}
}
