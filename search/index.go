package search

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/justpg/justpg/internal/ident"
	"github.com/justpg/justpg/internal/pgdb"
)

// DB runs statements: a *pgxpool.Pool, *pgxpool.Conn, *pgx.Conn or pgx.Tx.
type DB = pgdb.DB

// Weight is a full-text weight class, "A" (most important) to "D".
type Weight string

// The four weights of PostgreSQL's setweight.
const (
	A Weight = "A"
	B Weight = "B"
	C Weight = "C"
	D Weight = "D"
)

// Field is a text column that is searched, with its weight.
type Field struct {
	// Column is the name of a text (or varchar) column of the table.
	Column string
	// Weight ranks matches in this column; empty means D.
	Weight Weight
}

// Config describes a search index over one of the caller's tables.
type Config struct {
	// Schema of the table; empty means "public".
	Schema string
	// Table is the table to search. Required.
	Table string
	// Key is a unique, non-null column that identifies a row (usually the
	// primary key). Hits report it as text. Required.
	Key string
	// Fields are the searched text columns with their weights. At least one
	// is required.
	Fields []Field
	// Language is the text-search configuration; empty means "english".
	// Use "simple" for no stemming and no stop words.
	Language string
	// Filters are the columns queries may filter on (equality, range, IN).
	Filters []string
	// TenantColumn, when set, names a uuid column holding the row's tenant
	// (justpg's tenancy convention: "tenant_id", stamped from the
	// app.tenant_id setting). The index then creates SECURITY DEFINER
	// functions that look the GIN indexes up for the current tenant only, so
	// that searches still use the indexes when row-level security is on (see
	// the package documentation), and the word list is kept per tenant.
	TenantColumn string
	// Name prefixes the objects the index creates (column, indexes, word
	// table, functions); empty means the table name.
	Name string
	// VectorColumn is the generated tsvector column; empty means
	// "search_vector".
	VectorColumn string
	// ExtensionSchema is where pg_trgm and unaccent live (or are created);
	// empty means "public".
	ExtensionSchema string
	// CreateExtensions makes Create run CREATE EXTENSION IF NOT EXISTS for
	// pg_trgm and unaccent, which needs a role allowed to create them. When
	// false they must exist already.
	CreateExtensions bool
	// Ranking blends the match kinds; the zero value means DefaultRanking.
	Ranking Ranking
	// Typos sets the typo tolerance; the zero value means DefaultTypos.
	Typos Typos
	// MaxCandidates caps how many matching rows a query ranks; 0 means
	// 400. Ranking costs time per matching row (about 50 µs: the tsquery
	// tiers, ts_rank_cd and the whole-word check), so a query matching more
	// rows ranks MaxCandidates of them, gathered best tier first (see the
	// package documentation), and reports
	// Result.TotalCapped. A corrected query ranks up to nine more rows
	// per corrected word (three for each of its three likeliest
	// corrections). Raise it for better ranking of very broad
	// queries, lower it for speed. (On the 1M-row benchmark, 400 instead of
	// 1000 halved the p95 of typo queries and left recall@10 unchanged.)
	MaxCandidates int
	// Highlight sets the markers put around matched words in highlights;
	// the zero value means "<mark>" and "</mark>".
	Highlight Markers
}

// Ranking weighs the signals that order hits: each hit scores
// Exact·[matches the query exactly] + Prefix·[matches with the last word as a
// prefix] + Typo·[matches with the likeliest corrections of each word (see
// the package documentation)] + Verbatim·[contains a query word or its
// likeliest correction unstemmed, as a whole word] + Text·relevance, where
// relevance is ts_rank_cd normalised to [0, 1) and weighted by the fields'
// weights. The defaults make exact > prefix > typo matches, with verbatim
// words and then full-text relevance ordering hits within each class.
type Ranking struct {
	Exact, Prefix, Typo, Verbatim, Text float64
}

// DefaultRanking is used when Config.Ranking is zero.
var DefaultRanking = Ranking{Exact: 8, Prefix: 4, Typo: 2, Verbatim: 1, Text: 1}

// Typos sets how many typos a query word may have, by its length in
// characters, as Meilisearch does: words shorter than OneTypo must match
// exactly, words of OneTypo characters or more may have one typo, words of
// TwoTypos or more two. A typo is an insertion, deletion, substitution or
// transposition of adjacent characters.
type Typos struct {
	OneTypo, TwoTypos int
	// Disabled turns typo tolerance off.
	Disabled bool
	// Candidates is how many of the most similar words the trigram index
	// proposes per query word go through the typo distance; 0 means 40.
	Candidates int
	// Alternatives caps how many corrections are used per query word; 0
	// means 8.
	Alternatives int
	// Similarity is the pg_trgm similarity threshold for proposing
	// candidates; 0 derives it from each word's length and typo budget
	// (between 0.2 and 0.5).
	Similarity float64
}

// DefaultTypos is used when Config.Typos is zero.
var DefaultTypos = Typos{OneTypo: 5, TwoTypos: 9}

// Markers surround matched words in highlights.
type Markers struct {
	Start, Stop string
}

// Errors callers branch on with errors.Is.
var (
	// ErrConfig wraps every configuration error reported by New.
	ErrConfig = errors.New("search: invalid config")
	// ErrQuery wraps errors about a query's options (unknown filter column,
	// bad cursor, bad limit). Query text itself is never an error.
	ErrQuery = errors.New("search: invalid query")
	// ErrTooShort is returned by Substring for a pattern with fewer than
	// three characters, which no trigram index can serve.
	ErrTooShort = errors.New("search: substring too short")
)

// Index is a configured search index. It is safe for concurrent use. New
// validates the configuration; Create (or the SQL from DDL) builds the
// database objects; Search, Substring and Suggest query them.
type Index struct {
	cfg Config

	table     string // quoted schema.table
	key       string // quoted key column
	vector    string // quoted tsvector column
	lang      string // regconfig literal
	unaccent  string // quoted schema.function
	foldFn    string // quoted schema.function: the wrapper for queries
	extSchema string // quoted extension schema
	words     string // quoted schema.words table
	matchFn   string // quoted tenant-mode functions
	containFn string
	wordsFn   string
	typoFn    string // quoted schema.function
	costFn    string // quoted schema.function
	tenant    string // quoted tenant column or ""
	fields    []quotedField
	filters   map[string]string // column -> quoted
	names     objectNames
	// scan is verbatimScan; tests lower or raise it to compare the two
	// ways a query gathers its verbatim rows.
	scan int
}

type quotedField struct {
	name, col string
	weight    Weight
}

type objectNames struct {
	vectorIdx, wordsTable, wordsIdx, wordsBtree, match, contains, words string
	trgmIdx                                                             []string
	// wordsLenIdx are the word list's trigram indexes by word length
	// (1..wordLenIndexes, then longer); wordsIdx is the single index that
	// versions before them had, dropped by Create.
	wordsLenIdx []string
}

// New validates cfg and returns the index. It does not touch the database.
func New(cfg Config) (*Index, error) {
	bad := func(format string, args ...any) (*Index, error) {
		return nil, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
	}
	if cfg.Schema == "" {
		cfg.Schema = "public"
	}
	if cfg.Language == "" {
		cfg.Language = "english"
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Table
	}
	if cfg.VectorColumn == "" {
		cfg.VectorColumn = "search_vector"
	}
	if cfg.ExtensionSchema == "" {
		cfg.ExtensionSchema = "public"
	}
	if cfg.Ranking == (Ranking{}) {
		cfg.Ranking = DefaultRanking
	}
	if cfg.Typos.OneTypo == 0 && cfg.Typos.TwoTypos == 0 {
		cfg.Typos.OneTypo, cfg.Typos.TwoTypos = DefaultTypos.OneTypo, DefaultTypos.TwoTypos
	}
	if cfg.Typos.Candidates == 0 {
		cfg.Typos.Candidates = 40
	}
	if cfg.Typos.Alternatives == 0 {
		cfg.Typos.Alternatives = 8
	}
	if cfg.MaxCandidates == 0 {
		cfg.MaxCandidates = 400
	}
	if cfg.MaxCandidates < 1 {
		return bad("MaxCandidates must be positive")
	}
	if cfg.Highlight == (Markers{}) {
		cfg.Highlight = Markers{Start: "<mark>", Stop: "</mark>"}
	}
	switch {
	case cfg.Table == "":
		return bad("Table is required")
	case cfg.Key == "":
		return bad("Key is required")
	case len(cfg.Fields) == 0:
		return bad("at least one Field is required")
	case cfg.Typos.OneTypo < 1 || cfg.Typos.TwoTypos < cfg.Typos.OneTypo:
		return bad("Typos: need 1 <= OneTypo <= TwoTypos, got %d and %d", cfg.Typos.OneTypo, cfg.Typos.TwoTypos)
	case cfg.Typos.Candidates < 1 || cfg.Typos.Candidates > 1000 || cfg.Typos.Alternatives < 1 || cfg.Typos.Alternatives > 100:
		return bad("Typos: Candidates must be in 1..1000 and Alternatives in 1..100")
	case cfg.Typos.Similarity < 0 || cfg.Typos.Similarity >= 1:
		return bad("Typos.Similarity must be in [0, 1)")
	case cfg.Ranking.Exact < 0 || cfg.Ranking.Prefix < 0 || cfg.Ranking.Typo < 0 || cfg.Ranking.Verbatim < 0 || cfg.Ranking.Text < 0:
		return bad("Ranking weights must not be negative")
	}
	ix := &Index{cfg: cfg, filters: map[string]string{}, scan: verbatimScan}
	var err error
	q := func(parts ...string) string {
		if err != nil {
			return ""
		}
		var s string
		s, err = ident.Quote(parts...)
		return s
	}
	ix.table = q(cfg.Schema, cfg.Table)
	ix.key = q(cfg.Key)
	ix.vector = q(cfg.VectorColumn)
	ix.extSchema = q(cfg.ExtensionSchema)
	ix.unaccent = q(cfg.Schema, "justpg_unaccent")
	ix.foldFn = q(cfg.Schema, "justpg_fold")
	ix.typoFn = q(cfg.Schema, "justpg_typo_distance")
	ix.costFn = q(cfg.Schema, "justpg_typo_cost")
	n := &ix.names
	n.vectorIdx = cfg.Name + "_search_vector_idx"
	n.wordsTable = cfg.Name + "_search_words"
	n.wordsIdx = cfg.Name + "_search_words_trgm_idx"
	n.wordsBtree = cfg.Name + "_search_words_word_idx"
	n.match = cfg.Name + "_search_match"
	n.contains = cfg.Name + "_search_contains"
	n.words = cfg.Name + "_search_corrections"
	for l := 1; l <= wordLenIndexes+1; l++ {
		n.wordsLenIdx = append(n.wordsLenIdx, fmt.Sprintf("%s_search_words_trgm%d", cfg.Name, l))
	}
	q(n.vectorIdx)
	q(n.wordsIdx)
	q(n.wordsBtree)
	q(n.wordsLenIdx[wordLenIndexes]) // the longest of them
	ix.words = q(cfg.Schema, n.wordsTable)
	ix.matchFn = q(cfg.Schema, n.match)
	ix.containFn = q(cfg.Schema, n.contains)
	ix.wordsFn = q(cfg.Schema, n.words)
	if cfg.TenantColumn != "" {
		ix.tenant = q(cfg.TenantColumn)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w (set a shorter Name when a generated name is too long)", ErrConfig, err)
	}
	lang, lerr := ident.Literal(cfg.Language)
	if lerr != nil {
		return bad("Language: %v", lerr)
	}
	ix.lang = lang + "::regconfig"
	seen := map[string]bool{}
	for _, f := range cfg.Fields {
		w := f.Weight
		if w == "" {
			w = D
		}
		if w != A && w != B && w != C && w != D {
			return bad("field %q: weight %q is not A, B, C or D", f.Column, f.Weight)
		}
		if seen[f.Column] {
			return bad("field %q listed twice", f.Column)
		}
		seen[f.Column] = true
		col, err := ident.Quote(f.Column)
		if err != nil {
			return bad("field: %v", err)
		}
		idx := cfg.Name + "_" + f.Column + "_trgm_idx"
		if _, err := ident.Quote(idx); err != nil {
			return bad("index name for field %q: %v (set a shorter Name)", f.Column, err)
		}
		n.trgmIdx = append(n.trgmIdx, idx)
		ix.fields = append(ix.fields, quotedField{name: f.Column, col: col, weight: w})
	}
	for _, f := range cfg.Filters {
		col, err := ident.Quote(f)
		if err != nil {
			return bad("filter: %v", err)
		}
		ix.filters[f] = col
	}
	// The generated column must be a new one: ADD COLUMN IF NOT EXISTS
	// would keep an existing column of that name.
	if seen[cfg.VectorColumn] || cfg.VectorColumn == cfg.Key || (cfg.TenantColumn != "" && cfg.VectorColumn == cfg.TenantColumn) {
		return bad("VectorColumn %q is already the key, a field or the tenant column", cfg.VectorColumn)
	}
	// The tables and indexes made share one name space, and CREATE ... IF
	// NOT EXISTS would silently skip one of two objects with the same name
	// (a field named search_words would take the word list's index name).
	rels := map[string]bool{cfg.Table: true}
	for _, r := range slices.Concat([]string{n.vectorIdx, n.wordsTable, n.wordsIdx, n.wordsBtree}, n.trgmIdx, n.wordsLenIdx) {
		if rels[r] {
			return bad("two of the objects to create would be named %q (set another Name)", r)
		}
		rels[r] = true
	}
	// The index keeps its own copy of the caller's slices.
	ix.cfg.Fields = slices.Clone(cfg.Fields)
	ix.cfg.Filters = slices.Clone(cfg.Filters)
	return ix, nil
}

// Config returns the configuration with defaults filled in (a copy: changing
// it does not change the index).
func (ix *Index) Config() Config {
	c := ix.cfg
	c.Fields = slices.Clone(c.Fields)
	c.Filters = slices.Clone(c.Filters)
	return c
}

// unaccentExpr is the accent- and case-insensitive form of a column, as the
// trigram indexes store it: the predicates the indexes serve must use it.
func (ix *Index) unaccentExpr(expr string) string {
	return ix.unaccent + "(" + expr + ")"
}

// fold is the same value as unaccentExpr for the expressions no index
// serves, computed at less than half the cost per row. The wrapper has to
// be IMMUTABLE for the indexes, and PostgreSQL does not inline an IMMUTABLE
// SQL function whose body calls a STABLE one (unaccent with a dictionary),
// so each of its calls is a function call of its own. justpg_fold has the
// same body but is STABLE, so the planner writes its body into the
// statement. Both lower-case by the database's collation whatever the
// column's (its body says so; the body written out in a query would follow
// the column's and lower-case ISTANBUL to ıstanbul under tr-x-icu). Being a
// function whose body is parsed when it is created, it also needs no USAGE
// on the extension's schema from the roles that query.
func (ix *Index) fold(expr string) string {
	return ix.foldFn + "(" + expr + ")"
}

// vectorExpr is the generated column's expression.
func (ix *Index) vectorExpr() string {
	parts := make([]string, len(ix.fields))
	for i, f := range ix.fields {
		parts[i] = fmt.Sprintf("setweight(to_tsvector(%s, %s(coalesce(%s, ''))), '%s')",
			ix.lang, ix.unaccent, f.col, f.weight)
	}
	return strings.Join(parts, " || ")
}

// DDL returns the statements Create runs, in order, for callers who apply
// schema changes with their own migration tool. The statements are
// idempotent (IF NOT EXISTS / OR REPLACE). CREATE EXTENSION statements are
// included only when Config.CreateExtensions is set.
//
// Adding the generated column rewrites the table under an ACCESS EXCLUSIVE
// lock; on a large, busy table plan for it (or add the column and indexes
// with your own CONCURRENTLY steps).
func (ix *Index) DDL() []string {
	var s []string
	if ix.cfg.CreateExtensions {
		s = append(s,
			"CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA "+ix.extSchema,
			"CREATE EXTENSION IF NOT EXISTS unaccent SCHEMA "+ix.extSchema)
	}
	dict, _ := ident.Literal(ix.extSchema + ".unaccent")
	unaccented := ix.extSchema + ".unaccent(" + dict + "::regdictionary, $1)"
	// A SQL-standard function body is parsed when it is created, so it does
	// not depend on the search_path of whoever later inserts a row.
	s = append(s, fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s(text) RETURNS text
	LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
	RETURN lower(%s)`, ix.unaccent, unaccented),
		fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s(text) RETURNS text
	LANGUAGE sql STABLE STRICT PARALLEL SAFE
	RETURN lower(%s COLLATE pg_catalog."default")`, ix.foldFn, unaccented))
	s = append(s, fmt.Sprintf(`ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s tsvector
	GENERATED ALWAYS AS (%s) STORED`, ix.table, ix.vector, ix.vectorExpr()))
	s = append(s, fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s USING gin (%s)`,
		ident.MustQuote(ix.names.vectorIdx), ix.table, ix.vector))
	for i, f := range ix.fields {
		s = append(s, fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s USING gin (%s %s.gin_trgm_ops)`,
			ident.MustQuote(ix.names.trgmIdx[i]), ix.table, ix.unaccentExpr(f.col), ix.extSchema))
	}
	s = append(s, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	tenant_id uuid DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid,
	word      text    NOT NULL,
	docs      integer NOT NULL,
	UNIQUE NULLS NOT DISTINCT (tenant_id, word))`, ix.words))
	// The word list's trigram indexes, one per word length (and one for
	// the longer words): a lookup wants only the words within its typo
	// budget of the typed word's length, and a single index over all words
	// handed it every word sharing a trigram or two with the typed one
	// (for "unsed", 4,859 words ending in "sed" and the like, 67 of them
	// similar enough). Earlier versions had that single index; it goes.
	//
	// Without fastupdate: the list changes only through RefreshWords, and
	// GIN's pending list would hold the words a refresh adds (all of them
	// on the first) until the next vacuum, every lookup meanwhile reading
	// it whole (110 lookups took 4-5.5 s instead of 0.5 s). Writing them
	// into the indexes directly makes the first refresh of the bench list
	// 4 s longer. Indexes made before are switched, and only those: ALTER
	// INDEX locks the index out of every lookup until Create commits (it
	// does not empty their pending lists; RefreshWords does).
	s = append(s, fmt.Sprintf(`DROP INDEX IF EXISTS %s`, ident.MustQuote(ix.cfg.Schema, ix.names.wordsIdx)))
	for i, name := range ix.names.wordsLenIdx {
		s = append(s, fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s USING gin (word %s.gin_trgm_ops) WITH (fastupdate = off) WHERE %s`,
			ident.MustQuote(name), ix.words, ix.extSchema, wordLenPred(i, "word")))
	}
	words, _ := ident.Literal(ix.words)
	fastOff := fmt.Sprintf(`DECLARE r record;
BEGIN
	FOR r IN SELECT c.oid::regclass AS i %s
		AND NOT coalesce('fastupdate=off' = ANY (c.reloptions), false)
	LOOP
		EXECUTE pg_catalog.format('ALTER INDEX %%s SET (fastupdate = off)', r.i);
	END LOOP;
END`, ginIndexesOf(words+"::regclass"))
	s = append(s, "DO "+dollarQuote(fastOff))
	// The typo distance: optimal string alignment (insertions, deletions,
	// substitutions and adjacent transpositions count one each), computed
	// only within a band of width k around the diagonal after the common
	// prefix and suffix are dropped, and given up as k+1 as soon as it must
	// exceed k. It costs a few microseconds per word.
	s = append(s, fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s(a text, b text, k integer) RETURNS integer
	LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
	x text[]; y text[]; m int; n int; p int := 0;
	i int; j int; lo int; hi int; v int; best int;
	d2 int[]; d1 int[]; d0 int[];
BEGIN
	IF a = b THEN RETURN 0; END IF;
	m := char_length(a); n := char_length(b);
	IF k < 0 THEN RETURN 0; END IF;
	IF abs(m - n) > k THEN RETURN k + 1; END IF;
	x := string_to_array(a, NULL); y := string_to_array(b, NULL);
	WHILE p < m AND p < n AND x[p+1] = y[p+1] LOOP p := p + 1; END LOOP;
	WHILE m > p AND n > p AND x[m] = y[n] LOOP m := m - 1; n := n - 1; END LOOP;
	IF m = p OR n = p THEN RETURN least(abs(m - n), k + 1); END IF;
	x := x[p+1:m]; y := y[p+1:n]; m := m - p; n := n - p;
	d1 := array_fill(k + 1, ARRAY[n + 1], ARRAY[0]);
	d2 := d1;
	FOR j IN 0..least(n, k) LOOP d1[j] := j; END LOOP;
	FOR i IN 1..m LOOP
		lo := greatest(1, i - k); hi := least(n, i + k);
		d0 := array_fill(k + 1, ARRAY[n + 1], ARRAY[0]);
		IF i <= k THEN d0[0] := i; END IF;
		best := d0[0];
		FOR j IN lo..hi LOOP
			v := least(d1[j] + 1, d0[j-1] + 1, d1[j-1] + CASE WHEN x[i] = y[j] THEN 0 ELSE 1 END);
			IF i > 1 AND j > 1 AND x[i] = y[j-1] AND x[i-1] = y[j] THEN
				v := least(v, d2[j-2] + 1);
			END IF;
			d0[j] := v;
			best := least(best, v);
		END LOOP;
		IF best > k THEN RETURN k + 1; END IF;
		d2 := d1; d1 := d0;
	END LOOP;
	RETURN least(d1[n], k + 1);
END
$fn$`, ix.typoFn))
	// The typo cost: a weighted optimal string alignment from the typed
	// word a to the candidate b, where the slips people make most cost half
	// an edit (an adjacent transposition, a vowel for a vowel, a
	// neighbouring key on a QWERTY keyboard, a doubled letter typed once or
	// a single letter typed twice), any other edit one, and a different last
	// letter half an edit more (the ending carries the inflection: a typo
	// rarely changes it). It only ranks the few candidates already within
	// the typo budget, so it needs no band.
	s = append(s, fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s(a text, b text) RETURNS real
	LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
	x text[]; y text[]; m int; n int; i int; j int; w int; p int := 0;
	d real[]; v real; dc real;
BEGIN
	IF a = b THEN RETURN 0; END IF;
	x := string_to_array(a, NULL); y := string_to_array(b, NULL);
	m := coalesce(array_length(x, 1), 0); n := coalesce(array_length(y, 1), 0);
	IF m = 0 OR n = 0 THEN RETURN greatest(m, n); END IF;
	w := n + 1;
	d := array_fill(0::real, ARRAY[(m + 1) * w], ARRAY[0]);
	FOR i IN p + 1..m LOOP
		d[i * w + p] := d[(i - 1) * w + p] + CASE WHEN x[i] = x[i - 1] OR x[i] = x[i + 1] THEN 0.5 ELSE 1 END;
	END LOOP;
	FOR j IN p + 1..n LOOP
		d[p * w + j] := d[p * w + j - 1] + 0.5;
	END LOOP;
	FOR i IN p + 1..m LOOP
		dc := CASE WHEN x[i] = x[i - 1] OR x[i] = x[i + 1] THEN 0.5 ELSE 1 END;
		FOR j IN p + 1..n LOOP
			v := least(d[(i - 1) * w + j] + dc, d[i * w + j - 1] + 0.5,
				d[(i - 1) * w + j - 1] + CASE WHEN x[i] = y[j] THEN 0 WHEN strpos(%s, ',' || x[i] || y[j] || ',') > 0 THEN 0.5 ELSE 1 END);
			IF i > p + 1 AND j > p + 1 AND x[i] = y[j - 1] AND x[i - 1] = y[j] THEN
				v := least(v, d[(i - 2) * w + j - 2] + 0.5);
			END IF;
			d[i * w + j] := v;
		END LOOP;
	END LOOP;
	RETURN d[m * w + n] + CASE WHEN x[m] = y[n] THEN 0 ELSE 0.5 END;
END
$fn$`, ix.costFn, "'"+cheapPairs()+"'"))
	// The candidate corrections of one word: the word list's trigram
	// indexes propose the words at least threshold similar (the % operator,
	// with the threshold set for this call only: the SET clause restores it
	// on exit), the most similar candidates of them (ties by word, so that
	// the choice does not depend on the plan) go through the typo
	// distance, which keeps those within k typos. The word itself comes
	// first when it is in the list; the others come likeliest first: by
	// typo cost minus frequencyWeight times the log of the number of rows
	// they occur in (a noisy-channel estimate, see frequencyWeight). The word's adjacent transpositions, which share
	// too few trigrams with it, are looked up by exact match (btree). The planner underestimates what
	// evaluating % row by row costs and would scan a mid-sized word list
	// sequentially; the function turns sequential scans off for itself.
	security, pred := "SECURITY INVOKER", "true"
	if ix.tenant != "" {
		security, pred = "SECURITY DEFINER", "v.tenant_id IS NOT DISTINCT FROM "+tenantSetting
	}
	s = append(s, fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s ON %s (word)`, ident.MustQuote(ix.names.wordsBtree), ix.words))
	// The similar words are looked up in the indexes of the lengths within
	// k of the word's, one branch per length; a branch whose length is out
	// of reach is skipped at run time. The function is PL/pgSQL so that
	// its statement is planned once per session (a SQL function's would be
	// planned for every query that calls it, ~3 ms for all the branches),
	// with a generic plan (the branches' index conditions hold for every
	// call) and without parallel workers (their start costs more than the
	// lookup).
	var lens []string
	for i := range ix.names.wordsLenIdx {
		reach := fmt.Sprintf("abs(%d - char_length(w)) <= k", i+1)
		if i == wordLenIndexes {
			reach = fmt.Sprintf("char_length(w) + k > %d AND abs(char_length(v.word) - char_length(w)) <= k", wordLenIndexes)
		}
		lens = append(lens, fmt.Sprintf(`SELECT v.word, v.docs FROM %s v WHERE %s AND %s AND v.word OPERATOR(%s.%%) w AND %s`,
			ix.words, wordLenPred(i, "v.word"), reach, ix.extSchema, pred))
	}
	body := fmt.Sprintf(`
BEGIN
	PERFORM set_config('pg_trgm.similarity_threshold', threshold::text, true);
	RETURN QUERY SELECT c.word, min(c.docs), min(c.typos),
		(CASE WHEN min(c.typos) = 0 THEN 0 ELSE %[5]s(w, c.word) END - %[6]g * ln(1 + min(c.docs)))::real FROM (
		(SELECT v.word, v.docs, %[1]s(w, v.word, k) AS typos FROM (
		%[7]s) v
		ORDER BY v.word OPERATOR(%[3]s.<->) w, v.word LIMIT candidates)
		UNION ALL
		SELECT v.word, v.docs, least(k, 1) FROM %[2]s v
		WHERE k > 0 AND %[4]s AND v.word = ANY (ARRAY(
			SELECT left(w, i - 1) || substr(w, i + 1, 1) || substr(w, i, 1) || substr(w, i + 2)
			FROM generate_series(1, char_length(w) - 1) AS i
			WHERE substr(w, i, 1) <> substr(w, i + 1, 1)))) c
	WHERE c.typos <= k GROUP BY c.word
	ORDER BY min(c.typos) > 0, 4, c.word LIMIT n;
END
`, ix.typoFn, ix.words, ix.extSchema, pred, ix.costFn, frequencyWeight,
		strings.Join(lens, "\n\t\tUNION ALL "))
	s = append(s, fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s(w text, threshold real, k integer, candidates integer, n integer)
	RETURNS TABLE (word text, docs integer, typos integer, score real)
	LANGUAGE plpgsql STABLE %s PARALLEL SAFE ROWS 10
	SET search_path = pg_catalog, pg_temp SET enable_seqscan = off SET pg_trgm.similarity_threshold = 0.3
	SET plan_cache_mode = force_generic_plan SET max_parallel_workers_per_gather = 0
AS %s`, ix.wordsFn, security, dollarQuote(body)))
	if ix.tenant != "" {
		s = append(s, ix.tenantFunctions()...)
	}
	return s
}

// ginIndexesOf is the FROM and WHERE clauses that list the GIN indexes
// (pg_class rows c) of the table named by the regclass expression table.
func ginIndexesOf(table string) string {
	return `FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class c ON c.oid = x.indexrelid JOIN pg_catalog.pg_am a ON a.oid = c.relam
		WHERE x.indrelid = ` + table + ` AND a.amname = 'gin'`
}

// dollarQuote quotes a function body with a dollar-quote tag that does not
// occur in it (the body names the caller's schema and tables, whose quoted
// names may hold any character).
func dollarQuote(body string) string {
	tag := "$fn$"
	for i := 0; strings.Contains(body, tag); i++ {
		tag = fmt.Sprintf("$fn%d$", i)
	}
	return tag + body + tag
}

// wordLenIndexes is how many word lengths have a trigram index of their
// own in the word list; longer words share one.
const wordLenIndexes = 24

// wordLenPred is the predicate of the word list's i-th length index over
// the column col; the lookup repeats it so that the planner matches each
// branch to its partial index.
func wordLenPred(i int, col string) string {
	if i == wordLenIndexes {
		return fmt.Sprintf("char_length(%s) > %d", col, wordLenIndexes)
	}
	return fmt.Sprintf("char_length(%s) = %d", col, i+1)
}

// tenantSetting is the current tenant as the tenancy convention sets it.
const tenantSetting = `NULLIF(current_setting('app.tenant_id', true), '')::uuid`

// tenantFunctions are SECURITY DEFINER lookups: they run as the table's
// owner, so row-level security does not stop the GIN indexes from serving
// the non-leakproof @@, ILIKE and % operators, and they restrict the result
// to the current tenant themselves. They return keys only; the caller's
// query joins back to the table, where its own policies apply again.
func (ix *Index) tenantFunctions() []string {
	tenantPred := func(col string) string {
		return col + " IS NOT DISTINCT FROM " + tenantSetting
	}
	var likes []string
	for _, f := range ix.fields {
		likes = append(likes, ix.unaccentExpr("t."+f.col)+" ILIKE p")
	}
	common := "LANGUAGE sql STABLE SECURITY DEFINER PARALLEL SAFE ROWS 50 SET search_path = pg_catalog, pg_temp"
	var s []string
	keyType := ix.table + "." + ix.key + "%TYPE"
	s = append(s, fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s(q tsquery) RETURNS SETOF %s %s
BEGIN ATOMIC
	SELECT t.%s FROM %s t WHERE t.%s @@ q AND %s;
END`,
		ix.matchFn, keyType, common, ix.key, ix.table, ix.vector, tenantPred("t."+ix.tenant)))
	s = append(s, fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s(p text) RETURNS SETOF %s %s
BEGIN ATOMIC
	SELECT t.%s FROM %s t WHERE (%s) AND %s;
END`,
		ix.containFn, keyType, common, ix.key, ix.table, strings.Join(likes, " OR "), tenantPred("t."+ix.tenant)))
	return s
}

// SQL returns DDL joined into one script.
func (ix *Index) SQL() string {
	return strings.Join(ix.DDL(), ";\n\n") + ";\n"
}

// Create applies DDL in one transaction (a savepoint when db is a
// transaction). It is idempotent. Run it again (or apply DDL again) after
// upgrading this package: queries use the functions it makes, and a newer
// version may make new ones.
func (ix *Index) Create(ctx context.Context, db DB) error {
	return pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		for _, stmt := range ix.DDL() {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("search: creating index %s: %w", ix.cfg.Name, err)
			}
		}
		return nil
	})
}
