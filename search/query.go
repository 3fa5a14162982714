package search

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"reflect"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/justpg/justpg/internal/pgdb"
	"github.com/justpg/justpg/internal/pgtext"
)

// Query is one search.
type Query struct {
	// Text is what the user typed, in websearch syntax: words are all
	// required, "quoted words" must appear together, a or b matches either,
	// -word excludes. Punctuation, operators of other syntaxes, emoji and
	// the like are ignored; only the first MaxTerms words are used.
	Text string
	// Filters restrict hits; their columns must be in Config.Filters.
	Filters []Filter
	// Limit is the page size; 0 means 20. At most 1000.
	Limit int
	// After is the Next cursor of the previous page ("" for the first).
	After string
	// Highlight asks for highlighted snippets of the fields.
	Highlight bool
	// NoPrefix matches the last word exactly even when the text does not
	// end with a space (by default it is taken as a word being typed and
	// matches as a prefix).
	NoPrefix bool
	// NoTypos disables typo tolerance for this query.
	NoTypos bool
}

// Op is a filter comparison.
type Op string

// The filter comparisons.
const (
	OpEq Op = "="
	OpNe Op = "<>"
	OpLt Op = "<"
	OpLe Op = "<="
	OpGt Op = ">"
	OpGe Op = ">="
	OpIn Op = "IN"
)

// Filter compares a filter column with a value, always bound as a
// parameter. Build one with Eq, Ne, Lt, Le, Gt, Ge or In.
type Filter struct {
	Column string
	Op     Op
	// Value is the operand; for OpIn a slice (see In).
	Value any
}

// Eq keeps rows whose column equals v.
func Eq(column string, v any) Filter { return Filter{column, OpEq, v} }

// Ne keeps rows whose column differs from v (NULLs excluded).
func Ne(column string, v any) Filter { return Filter{column, OpNe, v} }

// Lt keeps rows whose column is less than v.
func Lt(column string, v any) Filter { return Filter{column, OpLt, v} }

// Le keeps rows whose column is at most v.
func Le(column string, v any) Filter { return Filter{column, OpLe, v} }

// Gt keeps rows whose column is greater than v.
func Gt(column string, v any) Filter { return Filter{column, OpGt, v} }

// Ge keeps rows whose column is at least v.
func Ge(column string, v any) Filter { return Filter{column, OpGe, v} }

// In keeps rows whose column is one of vs.
func In[T any](column string, vs ...T) Filter {
	if vs == nil {
		vs = []T{}
	}
	return Filter{column, OpIn, vs}
}

// Match says how a hit matched the query.
type Match string

// The match kinds, best first.
const (
	MatchExact  Match = "exact"  // every word as typed (after stemming)
	MatchPrefix Match = "prefix" // the last word as a prefix
	MatchTypo   Match = "typo"   // with typo corrections
)

// Hit is one matching row.
type Hit struct {
	// Key is the row's key column, as text.
	Key string
	// Score is the hit's relevance (higher is better); see Ranking. It
	// orders the hits, except that the hits of a corrected query are
	// interleaved by correction (see the package documentation).
	Score float64
	// Match is the best way the row matched.
	Match Match
	// Highlights maps each field's column to a snippet with the matched
	// words between the configured markers. The text is HTML-escaped; the
	// markers are not. Set only when Query.Highlight is.
	Highlights map[string]string
}

// Result is one page of hits.
type Result struct {
	Hits []Hit
	// Total is the number of rows matching the query and filters; when
	// TotalCapped is set, more than Total rows match (see
	// Config.MaxCandidates) and Total is a lower bound.
	Total int64
	// TotalCapped reports that the match count reached
	// Config.MaxCandidates: only that many matches were ranked.
	TotalCapped bool
	// Next is the cursor for the following page, "" on the last page.
	Next string
	// Corrections lists, for each query word that may have a typo, the
	// indexed words used in its place.
	Corrections map[string][]string
}

type cursor struct {
	D float64 `json:"d,omitempty"`
	S float64 `json:"s"`
	K string  `json:"k"`
}

func encodeCursor(c cursor) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (cursor, error) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(b, &c) != nil || pgtext.Check(c.K) != nil {
		return c, fmt.Errorf("%w: malformed cursor", ErrQuery)
	}
	return c, nil
}

// args collects bind parameters.
type args []any

func (a *args) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

func (ix *Index) limit(n int) (int, error) {
	switch {
	case n == 0:
		return 20, nil
	case n < 0 || n > 1000:
		return 0, fmt.Errorf("%w: limit %d is not in 1..1000", ErrQuery, n)
	}
	return n, nil
}

// filterSQL renders the filters against alias t.
func (ix *Index) filterSQL(fs []Filter, a *args) (string, error) {
	var b strings.Builder
	for _, f := range fs {
		col, ok := ix.filters[f.Column]
		if !ok {
			return "", fmt.Errorf("%w: %q is not a filter column", ErrQuery, f.Column)
		}
		if f.Value == nil {
			return "", fmt.Errorf("%w: filter on %q has a nil value", ErrQuery, f.Column)
		}
		if err := checkFilterText(f.Value); err != nil {
			return "", fmt.Errorf("%w: filter on %q: %w", ErrQuery, f.Column, err)
		}
		switch f.Op {
		case OpEq, OpNe, OpLt, OpLe, OpGt, OpGe:
			fmt.Fprintf(&b, " AND t.%s %s %s", col, f.Op, a.add(f.Value))
		case OpIn:
			if k := reflect.TypeOf(f.Value).Kind(); k != reflect.Slice && k != reflect.Array {
				return "", fmt.Errorf("%w: IN filter on %q needs a slice of values, got %T", ErrQuery, f.Column, f.Value)
			}
			fmt.Fprintf(&b, " AND t.%s = ANY(%s)", col, a.add(f.Value))
		default:
			return "", fmt.Errorf("%w: unknown filter operator %q", ErrQuery, f.Op)
		}
	}
	return b.String(), nil
}

// checkFilterText refuses a text value (or text in a slice of them) that
// PostgreSQL cannot store, so it never matches: a NUL or invalid UTF-8.
func checkFilterText(v any) error {
	switch v := v.(type) {
	case string:
		return pgtext.Check(v)
	case []string:
		for _, s := range v {
			if err := pgtext.Check(s); err != nil {
				return err
			}
		}
	}
	return nil
}

// Search runs q. A query with no word that can be searched for (empty, only
// punctuation, only excluded words) returns an empty result without
// touching the database; one whose words are all stop words returns an
// empty result from a plan that does not scan the table.
//
// A query is one statement: it looks the typo corrections up in the word
// list (through its trigram index, with the threshold set for that lookup
// only), builds the query variants from them and ranks the matching rows.
func (ix *Index) Search(ctx context.Context, db DB, q Query) (*Result, error) {
	limit, err := ix.limit(q.Limit)
	if err != nil {
		return nil, err
	}
	var after *cursor
	if q.After != "" {
		c, err := decodeCursor(q.After)
		if err != nil {
			return nil, err
		}
		after = &c
	}
	p := parseQuery(q.Text)
	res := &Result{}
	var a args
	filters, err := ix.filterSQL(q.Filters, &a)
	if err != nil {
		return nil, err
	}
	if !p.positive() {
		return res, nil
	}
	prefix := !q.NoPrefix
	r := ix.cfg.Ranking
	// The words that may have typos, with their typo budgets and trigram
	// thresholds: the statement looks their corrections up itself.
	var typoWords []string
	var budgets []int32
	var thresholds []float32
	// A word that is not in the word list and has no correction within its
	// budget gets the corrections one typo beyond it (as Suggest does):
	// read strictly, it would match nothing at all. Not the word being
	// typed (the last one, without a trailing space): it is a prefix, not a
	// misspelt word (budget 0: no fallback).
	var looseBudgets []int32
	var looseThresholds []float32
	if !q.NoTypos && !ix.cfg.Typos.Disabled {
		typoWords = p.typoWords(ix.cfg.Typos.OneTypo)
		for _, w := range typoWords {
			n := utf8.RuneCountInString(w)
			budgets = append(budgets, int32(ix.cfg.Typos.budget(n)))
			thresholds = append(thresholds, float32(ix.cfg.Typos.threshold(n)))
			lb := int32(ix.cfg.Typos.budget(n) + 1)
			if _, _, typed, split := p.splitLast(!q.NoPrefix); split && typed == w {
				lb = 0
			}
			looseBudgets = append(looseBudgets, lb)
			looseThresholds = append(looseThresholds, float32(ix.cfg.Typos.looseThreshold(n)))
		}
	}
	// c holds, for each typo word i, its corrections (alts, likeliest
	// first: see frequencyWeight), its likeliest one when the word is not in
	// the word list (best), and both as tsqueries, with the word's own
	// tsquery node (target) that they replace or join. A correction that
	// is a stop word has an empty tsquery.
	// cw1 holds each typo word's candidates within its budget, cw2 those
	// one typo beyond it of the words that have none in cw1 (neither
	// themselves nor a correction).
	// The LIMITs on the unnested parameter arrays tell the planner how many
	// rows they hold: with the default estimate (10) the plan for unknown
	// parameters looks dearer than the plans for the actual ones, and the
	// prepared statement would be planned again on every call (~2 ms).
	lookup := func(words, budgets, thresholds string) string {
		return fmt.Sprintf(`SELECT u.i, f.word, f.docs, f.typos, f.score, f.o
	FROM (SELECT * FROM unnest(%[1]s::text[], %[2]s::int[], %[3]s::real[]) WITH ORDINALITY LIMIT %[8]d) AS u(w, k, th, i),
	LATERAL %[4]s(%[5]s(u.w), u.th, u.k, %[6]d, %[7]d) WITH ORDINALITY AS f(word, docs, typos, score, o)`,
			words, budgets, thresholds, ix.wordsFn, ix.unaccent, ix.cfg.Typos.Candidates, ix.cfg.Typos.Alternatives+1, len(typoWords))
	}
	wordsArg := a.add(typoWords)
	cte := "cw1 AS MATERIALIZED (\n\t" + lookup(wordsArg, a.add(budgets), a.add(thresholds)) +
		"\n), cw2 AS MATERIALIZED (\n\t" + lookup(wordsArg, a.add(looseBudgets), a.add(looseThresholds)) +
		"\n\tWHERE u.k > 0 AND NOT EXISTS (SELECT FROM cw1 WHERE cw1.i = u.i)\n), " +
		fmt.Sprintf(`c AS MATERIALIZED (
	SELECT u.i, u.w, x.alts[1:%[5]d] AS alts, x.best, x.target,
		to_tsquery(%[1]s, (SELECT string_agg(%[6]s, ' | ') FROM pg_catalog.unnest(x.alts[1:%[5]d]) AS a)) AS altq,
		to_tsquery(%[1]s, (SELECT string_agg(%[6]s, ' | ') FROM pg_catalog.unnest(x.best) AS a)) AS bestq
	FROM (SELECT * FROM pg_catalog.unnest(%[2]s::text[]) WITH ORDINALITY LIMIT %[8]d) AS u(w, i),
	LATERAL (SELECT y.alts, CASE WHEN y.known THEN '{}'::text[] ELSE y.best END AS best,
		to_tsquery(%[1]s, %[3]s(%[4]s)) AS target
		FROM (SELECT coalesce(pg_catalog.array_agg(s.word ORDER BY s.o) FILTER (WHERE s.typos > 0), '{}') AS alts,
				coalesce(pg_catalog.array_agg(s.word ORDER BY s.o) FILTER (WHERE s.typos > 0 AND s.score <= s.top + %[7]g), '{}') AS best,
				coalesce(bool_or(s.typos = 0), false) AS known
			FROM (SELECT f.*, min(f.score) FILTER (WHERE f.typos > 0) OVER () AS top
				FROM (SELECT * FROM cw1 WHERE cw1.i = u.i UNION ALL SELECT * FROM cw2 WHERE cw2.i = u.i) f) s) y) x
)`, ix.lang, wordsArg, ix.unaccent, quoteLexemeSQL("u.w"), ix.cfg.Typos.Alternatives,
			quoteLexemeSQL("a"), bestMargin, len(typoWords))
	// rewrite replaces each typo word's node in the tsquery expr by sub, an
	// expression over c, when the word has a node and need (a condition
	// over c) holds. An empty sub (a stop word) removes the node, as
	// websearch_to_tsquery drops a stop word typed correctly. Each level
	// reads the one below it twice; OFFSET 0 keeps the planner from
	// pulling the level up into its parent, which would copy the
	// expression into both places and double the tree with every word.
	rewrite := func(expr, need, sub string) string {
		for i := range typoWords {
			expr = fmt.Sprintf(`(SELECT CASE WHEN coalesce(numnode(c.target), 0) = 0 OR NOT coalesce(%[2]s, false) THEN x.q ELSE ts_rewrite(x.q, c.target, %[3]s) END
			FROM (SELECT %[1]s AS q OFFSET 0) x LEFT JOIN c ON c.i = %[4]d)`, expr, need, sub, i+1)
		}
		return expr
	}
	var texts []string
	for _, f := range ix.fields {
		texts = append(texts, "coalesce(t."+f.col+", '')")
	}
	doc := ix.fold(strings.Join(texts, " || ' ' || "))
	verbatim := "false"
	if r.Verbatim > 0 {
		verbatim = verbatimTest(doc)
	}
	vw := p.verbatimWords(nil)
	vwords := a.add(vw)
	// A word missing from the word list that has a likeliest correction is
	// read as that correction for the exact and prefix tiers: its own stem
	// may coincide with another word's ("explaning" and "explanation" both
	// stem to explan), which must not outrank the correction.
	hasBest := "pg_catalog.cardinality(c.best) > 0"
	qe := rewrite(fmt.Sprintf("websearch_to_tsquery(%s, %s(%s))", ix.lang, ix.unaccent, a.add(p.websearch())), hasBest, "c.bestq")
	// The word being typed matches as a literal prefix of the indexed
	// lexemes (unstemmed: "explaning" must not become the prefix 'explan'
	// of "explanation"), besides matching as a whole word. The other words
	// are stemmed as usual.
	rest, last, typed, split := p.splitLast(prefix)
	pl := "''::tsquery"
	// q0 is the query with the word being typed as a prefix; each
	// variant rewrites its words with their corrections (rw). The
	// prefix node stays out of the rewrite: ts_rewrite would replace it
	// too when it equals the word's stem, dropping its prefix flag, and
	// the rows matching only the typed prefix would be lost.
	var q0 func(rw func(string) string) string
	if !split {
		e := fmt.Sprintf("to_tsquery(%s, %s(%s))", ix.lang, ix.unaccent, a.add(p.tsquery(prefix, nil)))
		q0 = func(rw func(string) string) string { return rw(e) }
	} else {
		pl = fmt.Sprintf(`(SELECT CASE WHEN numnode(x) = 0 OR char_length(%[1]s) < 2 THEN x ELSE (x::text || ':*')::tsquery END
			FROM (SELECT pg_catalog.plainto_tsquery('simple', %[2]s(%[1]s)) AS x) y)`, a.add(typed), ix.unaccent)
		r := fmt.Sprintf("to_tsquery(%s, %s(%s))", ix.lang, ix.unaccent, a.add(rest.tsquery(false, nil)))
		l := fmt.Sprintf("to_tsquery(%s, %s(%s))", ix.lang, ix.unaccent, a.add(last.tsquery(false, nil)))
		q0 = func(rw func(string) string) string {
			return fmt.Sprintf(`(SELECT CASE WHEN numnode(r) = 0 THEN l WHEN numnode(l) = 0 THEN r ELSE r && l END
			FROM (SELECT %[1]s AS r, %[2]s || pp.pl AS l OFFSET 0) v)`, rw(r), rw(l))
		}
	}
	variant := func(need, sub string) string {
		return q0(func(e string) string { return rewrite(e, need, sub) })
	}
	qp := variant(hasBest, "c.bestq")
	qt := variant("pg_catalog.cardinality(c.alts) > 0", "c.target || c.altq")
	qt1 := variant(hasBest, "c.target || c.bestq")
	// The candidate rows, best tiers first, at most MaxCandidates of them:
	// the stop-word fallback (fb), then the rows matching the query as
	// typed, by prefix or with the likeliest corrections (qhi) that contain
	// a query word or likeliest correction verbatim (found through the
	// trigram indexes, so that a broad stem such as 'set' for "settings"
	// still ranks the rows with the word itself), then the other rows
	// matching qhi, then those matching only other corrections (qa). UNION ALL under a LIMIT runs a
	// branch only while the earlier ones have not filled it, so a broad
	// query ranks its likeliest matches rather than whichever the index
	// yields first. Each branch is gated on q alone (a one-time test).
	var fbFrom, fbWhere string
	if ix.tenant != "" {
		fbFrom = fmt.Sprintf("q, %s('%%' || q.fword || '%%') AS f(k) JOIN %s t ON t.%s = f.k", ix.containFn, ix.table, ix.key)
		fbWhere = "true"
	} else {
		fbFrom = fmt.Sprintf("q, %s t", ix.table)
		var likes []string
		for _, f := range ix.fields {
			likes = append(likes, fmt.Sprintf("%s ~ q.fre", ix.unaccentExpr("t."+f.col)))
		}
		fbWhere = "(" + strings.Join(likes, " OR ") + ")"
	}
	fbMatch := doc + " ~ ALL (q.fall)"
	tsFrom := func(query string) string {
		if ix.tenant != "" {
			return fmt.Sprintf("q, %s(q.%s) AS f(k) JOIN %s t ON t.%s = f.k", ix.matchFn, query, ix.table, ix.key)
		}
		return fmt.Sprintf("q, %s t", ix.table)
	}
	scoreOf := func(verbatim string) string {
		return fmt.Sprintf(`(CASE WHEN t.%[1]s @@ q.qe THEN %[2]g ELSE 0 END
		 + CASE WHEN t.%[1]s @@ q.qp THEN %[3]g ELSE 0 END
		 + CASE WHEN t.%[1]s @@ q.qt1 THEN %[4]g ELSE 0 END
		 + CASE WHEN %[5]s THEN %[6]g ELSE 0 END
		 + %[7]g * ts_rank_cd(t.%[1]s, q.qr, 32))`, ix.vector, r.Exact, r.Prefix, r.Typo, verbatim, r.Verbatim, r.Text)
	}
	score := scoreOf(verbatim)
	// g is the correction a row of a corrected query contains verbatim
	// (the leftmost one in its text), which groups the rows for the
	// interleaving below.
	colsOf := func(doc string) string {
		return fmt.Sprintf("t.%[1]s AS key, t.%[1]s::text AS k, CASE WHEN q.corrected THEN substring(%[2]s FROM q.gre) END AS g", ix.key, doc)
	}
	cols := colsOf(doc)
	var vfields []string
	for _, f := range ix.fields {
		vfields = append(vfields, fmt.Sprintf("%s ~ q.vre", ix.unaccentExpr("t."+f.col)))
	}
	vmatch := "(" + strings.Join(vfields, " OR ") + ")"
	// While the last word is being typed it is not a whole word yet, so
	// the verbatim branch would only cost a trigram lookup.
	//
	// Otherwise the rows matching qhi with a query word verbatim come
	// first. When qhi matches at most hScan rows (h, read once through the
	// tsvector index, with the verbatim test per row), they are taken from
	// h, verbatim ones first: cheaper than a trigram lookup of the words,
	// whose common trigrams have long posting lists. Only a broader qhi
	// (big) looks the verbatim rows up through the trigram indexes. Both
	// ways give the same rows.
	vbranch, qhiBranch, hCTE := "", "", ""
	qhiWhere := fmt.Sprintf("querytree(q.qhi) <> 'T' AND t.%[1]s @@ q.qhi AND NOT (q.fb AND %[2]s)%[3]s", ix.vector, fbMatch, filters)
	if split {
		qhiBranch = fmt.Sprintf(`	UNION ALL
	(SELECT %[1]s, %[2]s::float8, t.%[3]s @@ q.qe, t.%[3]s @@ q.qp
		FROM %[4]s
		WHERE %[5]s)`, cols, score, ix.vector, tsFrom("qhi"), qhiWhere)
	} else {
		hScan := max(ix.scan, ix.cfg.MaxCandidates)
		colsH := colsOf("t.justpg_doc")
		hcols := []string{"t." + ix.key, "t." + ix.vector}
		seen := map[string]bool{ix.key: true, ix.vector: true}
		for _, f := range ix.fields {
			if !seen[f.col] {
				seen[f.col] = true
				hcols = append(hcols, "t."+f.col)
			}
		}
		// hv, the verbatim test of h's rows, is only computed when a
		// branch reads it: when h is not big. It keeps each row's
		// unaccented text (justpg_doc), which the ranking reads again.
		// The test on the fields joined by spaces is the same as on each
		// field: the words of vre are letters and digits only.
		hCTE = fmt.Sprintf(`, h AS MATERIALIZED (
	SELECT %[1]s
	FROM %[3]s
	WHERE %[4]s
	LIMIT %[5]d
), hb AS MATERIALIZED (
	SELECT CASE WHEN %[7]s THEN true ELSE (SELECT count(*) > %[6]d FROM h) END AS big
), hv AS MATERIALIZED (
	SELECT t.*, d.justpg_doc, coalesce(%[8]s, false) AS justpg_verbatim
	FROM q, h t, LATERAL (SELECT %[2]s AS justpg_doc OFFSET 0) d
)`, strings.Join(hcols, ", "), doc, tsFrom("qhi"), qhiWhere, hScan+1, hScan, ix.knownBroad(p, typoWords, filters, hScan), verbatimTest("d.justpg_doc"))
		// In these four branches whether a row holds a word verbatim is
		// known from their conditions (vmatch on the fields is the same test
		// as vre on their text joined), so the score does not test it again.
		vbranch = fmt.Sprintf(`	UNION ALL
	(SELECT %[1]s, %[2]s::float8, t.%[3]s @@ q.qe, t.%[3]s @@ q.qp
		FROM %[4]s
		WHERE (SELECT big FROM hb) AND q.vre IS NOT NULL AND %[5]s AND %[6]s)
	UNION ALL
	(SELECT %[7]s, %[2]s::float8, t.%[3]s @@ q.qe, t.%[3]s @@ q.qp
		FROM q, hv t
		WHERE NOT (SELECT big FROM hb) AND t.justpg_verbatim)`,
			cols, scoreOf("true"), ix.vector, tsFrom("qhi"), qhiWhere, vmatch, colsH)
		qhiBranch = fmt.Sprintf(`	UNION ALL
	(SELECT %[1]s, %[2]s::float8, t.%[3]s @@ q.qe, t.%[3]s @@ q.qp
		FROM %[4]s
		WHERE (SELECT big FROM hb) AND %[5]s AND NOT coalesce(%[6]s, false))
	UNION ALL
	(SELECT %[7]s, %[2]s::float8, t.%[3]s @@ q.qe, t.%[3]s @@ q.qp
		FROM q, hv t
		WHERE NOT (SELECT big FROM hb) AND NOT t.justpg_verbatim)`,
			cols, scoreOf("false"), ix.vector, tsFrom("qhi"), qhiWhere, vmatch, colsH)
	}
	// Each of the altCorrections likeliest corrections of a corrected
	// query's words also contributes a few rows
	// containing it verbatim (altPerCorrection of the first altScan rows
	// matching it and the query), so that a likely but less common
	// correction, or another inflection of the likeliest one, is among
	// the ranked rows even when the likeliest correction's rows would fill
	// MaxCandidates.
	// Not for the word being typed: its prefix matches already bring its
	// other forms.
	notTyped := ""
	if split {
		notTyped = " AND c.w <> " + a.add(typed)
	}
	altFrom := fmt.Sprintf("%s t WHERE t.%s @@ q.qa AND t.%s @@ to_tsquery(%s, %s)%s", ix.table, ix.vector, ix.vector, ix.lang, quoteLexemeSQL("a.w"), filters)
	if oneWord(p, typoWords) {
		// A query of one word matches every row containing one of its
		// corrections, so only the correction's entry of the tsvector index
		// is read: the index condition of the query itself (all the
		// corrections) would be read again for each correction, for
		// nothing. The fence keeps the query a filter on the rows.
		altFrom = fmt.Sprintf("(SELECT * FROM %s t WHERE t.%s @@ to_tsquery(%s, %s) OFFSET 0) t WHERE t.%s @@ q.qa%s", ix.table, ix.vector, ix.lang, quoteLexemeSQL("a.w"), ix.vector, filters)
	}
	if ix.tenant != "" {
		altFrom = fmt.Sprintf("%s(q.qa && to_tsquery(%s, %s)) AS f(k) JOIN %s t ON t.%s = f.k WHERE true%s", ix.matchFn, ix.lang, quoteLexemeSQL("a.w"), ix.table, ix.key, filters)
	}
	abranch := fmt.Sprintf(`	UNION ALL
	(SELECT %[1]s, %[2]s::float8, t.%[3]s @@ q.qe, t.%[3]s @@ q.qp
		FROM q, c, pg_catalog.unnest(c.alts[1:%[8]d]) AS a(w),
		LATERAL (SELECT t.* FROM (SELECT t.* FROM %[4]s LIMIT %[7]d) t
			WHERE %[5]s ~ (E'\\m' || regexp_replace(a.w, '[^[:alnum:]]+', '', 'g') || E'\\M') LIMIT %[6]d) t
		WHERE q.corrected AND NOT q.fb AND querytree(q.qa) <> 'T'%[9]s)`,
		cols, score, ix.vector, altFrom, doc, altPerCorrection, altScan, altCorrections, notTyped)
	// The rows of the correction branch may come again from the others,
	// so the LIMIT leaves room for them.
	maxRows := ix.cfg.MaxCandidates + len(typoWords)*min(ix.cfg.Typos.Alternatives, altCorrections)*altPerCorrection
	mSQL := fmt.Sprintf(`(SELECT %[1]s, (%[2]s + CASE WHEN q.corrected THEN %[3]g ELSE %[4]g END)::float8 AS score, NOT q.corrected AS exact, false AS prefix
		FROM %[5]s
		WHERE q.fb AND %[6]s AND %[7]s%[8]s)
%[15]s
%[13]s
%[14]s
	UNION ALL
	(SELECT %[1]s, %[2]s::float8, t.%[9]s @@ q.qe, t.%[9]s @@ q.qp
		FROM %[11]s
		WHERE querytree(q.qa) <> 'T' AND t.%[9]s @@ q.qa AND NOT coalesce(t.%[9]s @@ q.qhi, false) AND NOT (q.fb AND %[7]s)%[8]s)
	LIMIT %[12]d`,
		cols, score, r.Typo, r.Exact, fbFrom, fbWhere, fbMatch, filters,
		ix.vector, tsFrom("qhi"), tsFrom("qa"), maxRows, vbranch, qhiBranch, abranch)
	keyset := ""
	if after != nil {
		s, k := a.add(after.S), a.add(after.K)
		d := a.add(after.D)
		keyset = fmt.Sprintf("WHERE (m.dk > %[1]s OR (m.dk = %[1]s AND (m.score < %[2]s OR (m.score = %[2]s AND m.k > %[3]s))))", d, s, k)
	}
	hl, hlCols := "p", ""
	if q.Highlight {
		opts := a.add("StartSel=\x01, StopSel=\x02, MaxWords=30, MinWords=12, HighlightAll=false")
		var cols []string
		for _, f := range ix.fields {
			cols = append(cols, fmt.Sprintf("ts_headline(%s, translate(coalesce(t.%s, ''), E'<\\x01\\x02\\x03', E'\\x03'), q.qa, %s)", ix.lang, f.col, opts))
		}
		hlCols = ", " + strings.Join(cols, ", ")
		hl = fmt.Sprintf("(p JOIN %s t ON t.%s = p.key)", ix.table, ix.key)
	}
	// One statement: the corrections (c), the query variants (q), the
	// matching rows (m, through the GIN indexes), the page (p). The final
	// LEFT JOIN returns a row even when nothing matches, to carry the
	// corrections. The words of the query (or their likeliest corrections)
	// give the verbatim pattern (vre); when no word of the query is left
	// for full-text search, all of them stop words, the words of four
	// letters or more are matched verbatim instead (fall, longest first;
	// fre, the longest, is what the trigram indexes look up).
	sql := fmt.Sprintf(`WITH %[1]s, v AS MATERIALIZED (
	SELECT regexp_replace(%[2]s(z), '[^[:alnum:]]+', '', 'g') AS y
	FROM (SELECT * FROM pg_catalog.unnest(%[3]s::text[]) LIMIT %[17]d) AS v(x) LEFT JOIN c ON c.w = v.x,
		LATERAL pg_catalog.unnest(CASE WHEN pg_catalog.cardinality(c.best) > 0 THEN c.best ELSE ARRAY[v.x] END) AS z
), q AS MATERIALIZED (
	SELECT qe, qp, qt, qt1, qe || qp || qt1 AS qhi, qe || qp || qt AS qa, %[18]s AS qr,
		(SELECT E'\\m(' || string_agg(y, '|') || E')\\M' FROM v WHERE y <> '') AS vre,
		(SELECT pg_catalog.array_agg('%%' || y || '%%') FROM v WHERE y <> '') AS vlike,
		fw.fall, fw.fall[1] AS fre, fw.fword,
		numnode(qe) = 0 AND coalesce(pg_catalog.cardinality(fw.fall), 0) > 0 AS fb,
		EXISTS (SELECT FROM c WHERE pg_catalog.cardinality(c.best) > 0) AS corrected,
		(SELECT pg_catalog.jsonb_object_agg(c.w, c.alts) FROM c WHERE pg_catalog.cardinality(c.alts) > 0) AS corrections,
		g.gre, g.galt, g.gj
	FROM (SELECT
		%[4]s AS qe,
		%[5]s AS qp,
		%[6]s AS qt,
		%[7]s AS qt1
		FROM (SELECT %[8]s AS pl) pp) x,
	LATERAL (SELECT pg_catalog.array_agg(E'\\m' || y || E'\\M' ORDER BY char_length(y) DESC, y) AS fall,
			(pg_catalog.array_agg(y ORDER BY char_length(y) DESC, y))[1] AS fword
		FROM (SELECT DISTINCT y FROM v WHERE char_length(y) >= 4) vv) fw,
	LATERAL (SELECT E'\\m(' || string_agg(regexp_replace(a.w, '[^[:alnum:]]+', '', 'g'), '|' ORDER BY c.i, a.o) || E')\\M' AS gre,
			pg_catalog.array_agg(a.w ORDER BY c.i, a.o) AS galt, pg_catalog.array_agg(a.o - 1 ORDER BY c.i, a.o) AS gj
		FROM c, pg_catalog.unnest(c.alts) WITH ORDINALITY AS a(w, o)) g
)%[16]s, u AS MATERIALIZED (
	%[9]s
), m AS MATERIALIZED (
	SELECT d.key, d.k, d.score, d.exact, d.prefix,
		CASE WHEN q.corrected THEN (row_number() OVER (PARTITION BY d.g ORDER BY d.score DESC, d.k))
			* (1 + coalesce(q.gj[pg_catalog.array_position(q.galt, d.g)], %[14]d)) ELSE 0 END::float8 AS dk
	FROM (SELECT DISTINCT ON (u.k) u.* FROM u ORDER BY u.k, u.score DESC) d, q
), p AS (
	SELECT * FROM m %[10]s ORDER BY m.dk, m.score DESC, m.k LIMIT %[11]d
)
SELECT p.k, p.score, p.dk, p.exact, p.prefix, (SELECT count(*) FROM m), (SELECT count(*) FROM u) >= %[15]d, q.corrected, q.corrections%[12]s
FROM q LEFT JOIN %[13]s ON true
ORDER BY p.dk, p.score DESC, p.k`,
		cte, ix.unaccent, vwords, qe, qp, qt, qt1, pl, mSQL, keyset, limit+1, hlCols, hl, ix.cfg.Typos.Alternatives, maxRows, hCTE, len(vw), orOnce("qe || qp || qt"))
	rows, err := db.Query(ctx, sql, a...)
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	defer rows.Close()
	var dks []float64
	for rows.Next() {
		var (
			h             Hit
			key           *string
			score, dk     *float64
			exact, prefix *bool
			corrected     bool
			corrections   map[string][]string
			hls           = make([]*string, len(ix.fields))
		)
		dest := []any{&key, &score, &dk, &exact, &prefix, &res.Total, &res.TotalCapped, &corrected, &corrections}
		if q.Highlight {
			for i := range hls {
				dest = append(dest, &hls[i])
			}
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("search: %w", err)
		}
		if len(corrections) > 0 {
			res.Corrections = corrections
		}
		if key == nil {
			continue // no hits: the row only carries the corrections
		}
		h.Key, h.Score = *key, *score
		dks = append(dks, *dk)
		switch {
		case corrected:
			h.Match = MatchTypo
		case *exact:
			h.Match = MatchExact
		case *prefix:
			h.Match = MatchPrefix
		default:
			h.Match = MatchTypo
		}
		if q.Highlight {
			h.Highlights = make(map[string]string, len(ix.fields))
			for i, f := range ix.fields {
				if hls[i] != nil {
					h.Highlights[f.name] = ix.markup(*hls[i])
				}
			}
		}
		res.Hits = append(res.Hits, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	if len(res.Hits) > limit {
		res.Hits = res.Hits[:limit]
		last := res.Hits[limit-1]
		res.Next = encodeCursor(cursor{D: dks[limit-1], S: last.Score, K: last.Key})
	}
	return res, nil
}

// verbatimTest is the condition that the text x (unaccented) holds one of
// the query's words verbatim (q.vre). The words are letters and digits, so
// a row matching the regex contains one as a substring: the LIKE test, a
// fraction of the regex's cost per row, rules out most rows first.
func verbatimTest(x string) string {
	return "(" + x + " LIKE ANY (q.vlike) AND " + x + " ~ q.vre)"
}

// knownBroad is a condition, over the corrections, that holds when the
// query is known to match more than n rows without counting them. A query
// of one plain word and no filters stands for the stem of the word itself,
// when it is in the word list, or of its likeliest corrections; it matches
// every row containing a word with one of those stems, so at least as many
// rows as the word list counts (docs) for any such word among the
// candidates looked up (a stop word stands for nothing and is left out).
// The count may be stale until the next RefreshWords; it only chooses
// between two ways of gathering the same rows, so a stale count costs time,
// never results.
func (ix *Index) knownBroad(p parsed, typoWords []string, filters string, n int) string {
	if filters != "" || !oneWord(p, typoWords) {
		return "false"
	}
	words := fmt.Sprintf(`(SELECT f.*, to_tsquery(%s, %s) AS stem
			FROM (SELECT * FROM cw1 UNION ALL SELECT * FROM cw2) f WHERE f.i = 1)`, ix.lang, quoteLexemeSQL("f.word"))
	return fmt.Sprintf(`coalesce((SELECT max(f.docs) FROM %[1]s f, c
		WHERE c.i = 1 AND numnode(f.stem) > 0
		AND f.stem IN (SELECT g.stem FROM %[1]s g WHERE g.typos = 0 OR g.word = ANY (c.best))), 0) > %[2]d`, words, n)
}

// oneWord reports whether the query is one plain word (not excluded, not a
// phrase) that may have typos: the query is then that word or one of its
// corrections.
func oneWord(p parsed, typoWords []string) bool {
	if len(typoWords) != 1 || len(p.groups) != 1 || len(p.groups[0]) != 1 {
		return false
	}
	t := p.groups[0][0]
	return !t.negate && !t.phrase && len(t.words) == 1 && t.words[0] == typoWords[0]
}

// orOnce is the SQL expression for the tsquery expr with each operand once
// when expr is a plain OR of operands (as a one-word query and its
// corrections are: the word, its prefix form and several corrections
// often share a stem), and expr itself otherwise. ts_rank_cd gives it the
// same rank at a fraction of the cost: it clears a 32 KB position array
// per query node for every row (the slowest one-word queries ranked 400
// rows with 29 nodes where 6 operands were distinct). ts_headline keeps the
// query as it is: it picks fragments by the nodes.
func orOnce(expr string) string {
	const operand = `'(?:[^']|'')*'(?::[*A-D]+)?`
	return fmt.Sprintf(`(SELECT CASE WHEN z.t ~ $re$^%[2]s(?: \| %[2]s)*$$re$
		THEN (SELECT string_agg(DISTINCT m[1], ' | ')::tsquery FROM regexp_matches(z.t, $re$(%[2]s)$re$, 'g') AS m)
		ELSE z.q END
		FROM (SELECT %[1]s AS q, (%[1]s)::text AS t OFFSET 0) z)`, expr, operand)
}

// quoteLexemeSQL is the SQL expression that quotes the text expr as a
// tsquery operand.
func quoteLexemeSQL(expr string) string {
	return `'''' || replace(replace(` + expr + `, E'\\', E'\\\\'), '''', '''''') || ''''`
}

// markup HTML-escapes a ts_headline snippet and turns its sentinel bytes
// into the configured markers. A < of the text was passed to ts_headline as
// \x03 (its parser would take "<table>" for a tag and leave it out).
func (ix *Index) markup(s string) string {
	s = html.EscapeString(s)
	s = strings.ReplaceAll(s, "\x03", "&lt;")
	s = strings.ReplaceAll(s, "\x01", ix.cfg.Highlight.Start)
	return strings.ReplaceAll(s, "\x02", ix.cfg.Highlight.Stop)
}

// Suggestion is a correctly spelled word close to what was typed.
type Suggestion struct {
	Word string
	// Docs is the number of rows the word appears in.
	Docs int
	// Typos is the edit distance from the typed word.
	Typos int
}

// Suggest returns up to n words of the word list closest to word ("did you
// mean"): the word itself first when it is in the list, then the likeliest
// corrections first (a weighted typo cost against how common the word is;
// see the package documentation). Words shorter than three
// characters, or with no close indexed word, give none. The word list is
// built by RefreshWords.
func (ix *Index) Suggest(ctx context.Context, db DB, word string, n int) ([]Suggestion, error) {
	if n <= 0 || n > 100 {
		return nil, fmt.Errorf("%w: n %d is not in 1..100", ErrQuery, n)
	}
	ws := words(word)
	if len(ws) != 1 || utf8.RuneCountInString(ws[0]) < 3 {
		return nil, nil
	}
	w := ws[0]
	k := max(ix.cfg.Typos.budget(utf8.RuneCountInString(w)), 1) + 1
	rows, err := db.Query(ctx, fmt.Sprintf(`SELECT word, docs, typos FROM %s(%s($1), $2, $3, $4, $5)`, ix.wordsFn, ix.unaccent),
		w, float32(ix.cfg.Typos.looseThreshold(utf8.RuneCountInString(w))), k, ix.cfg.Typos.Candidates, n)
	if err != nil {
		return nil, fmt.Errorf("search: suggesting: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Suggestion, error) {
		var s Suggestion
		err := r.Scan(&s.Word, &s.Docs, &s.Typos)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("search: suggesting: %w", err)
	}
	return out, nil
}

// Substring finds rows where some field contains q.Text as typed (case- and
// accent-insensitive, like ILIKE '%text%' with %, _ and \ taken literally),
// served by the trigram indexes. The text needs a run of at least three
// letters or digits, else ErrTooShort: no index could serve it. Hits are
// ordered by key; Score is 0 and Match is empty. q.Highlight, q.NoPrefix and
// q.NoTypos are ignored.
func (ix *Index) Substring(ctx context.Context, db DB, q Query) (*Result, error) {
	limit, err := ix.limit(q.Limit)
	if err != nil {
		return nil, err
	}
	text := strings.TrimSpace(strings.ToValidUTF8(q.Text, ""))
	if longestWordRun(text) < 3 {
		return nil, fmt.Errorf("%w: %q", ErrTooShort, text)
	}
	var after *cursor
	if q.After != "" {
		c, err := decodeCursor(q.After)
		if err != nil {
			return nil, err
		}
		after = &c
	}
	var a args
	filters, err := ix.filterSQL(q.Filters, &a)
	if err != nil {
		return nil, err
	}
	if strings.ContainsRune(text, 0) {
		return &Result{}, nil // no text PostgreSQL stores holds a NUL
	}
	pat := a.add("%" + escapeLike(text) + "%")
	var from, where string
	if ix.tenant != "" {
		from = fmt.Sprintf("%s(%s(%s)) AS f(k) JOIN %s t ON t.%s = f.k", ix.containFn, ix.unaccent, pat, ix.table, ix.key)
		where = "true"
	} else {
		from = ix.table + " t"
		var likes []string
		for _, f := range ix.fields {
			likes = append(likes, fmt.Sprintf("%s ILIKE %s(%s)", ix.unaccentExpr("t."+f.col), ix.unaccent, pat))
		}
		where = "(" + strings.Join(likes, " OR ") + ")"
	}
	keyset := ""
	if after != nil {
		keyset = "WHERE m.k > " + a.add(after.K)
	}
	sql := fmt.Sprintf(`WITH m AS MATERIALIZED (
	SELECT t.%s::text AS k FROM %s WHERE %s%s
)
SELECT m.k, (SELECT count(*) FROM m) FROM m %s ORDER BY m.k LIMIT %d`,
		ix.key, from, where, filters, keyset, limit+1)
	rows, err := db.Query(ctx, sql, a...)
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	defer rows.Close()
	res := &Result{}
	for rows.Next() {
		var h Hit
		if err := rows.Scan(&h.Key, &res.Total); err != nil {
			return nil, fmt.Errorf("search: %w", err)
		}
		res.Hits = append(res.Hits, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	if len(res.Hits) > limit {
		res.Hits = res.Hits[:limit]
		res.Next = encodeCursor(cursor{K: res.Hits[limit-1].Key})
	}
	return res, nil
}

// escapeLike makes s match literally in LIKE with the default escape \.
func escapeLike(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

// longestWordRun is the longest run of letters and digits in s, in
// characters: trigram indexes can only serve patterns with three or more.
func longestWordRun(s string) int {
	best, cur := 0, 0
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			cur++
			best = max(best, cur)
		} else {
			cur = 0
		}
	}
	return best
}

// RefreshWords rebuilds the word list that typo tolerance and Suggest use,
// from the indexed text: every distinct unstemmed, unaccented, lower-cased
// word of letters and digits (with a letter) with the number of rows it
// appears in. Tokens with punctuation (hyphenated compounds, host names,
// paths) are left out: a query word never has any, so they would only be
// wrong corrections. Run it after bulk changes
// (for example from a periodic job); words of rows added since the last
// refresh still match exactly and by prefix, only their typo corrections
// wait for the next refresh.
//
// With Config.TenantColumn set it rebuilds the current tenant's list (the
// rows whose tenant column equals the app.tenant_id setting, or the
// untenanted rows when it is unset). It runs in one transaction (a
// savepoint of db's) under an advisory lock, so concurrent refreshes queue.
// Only the words that changed are written (new ones inserted, counts
// updated, words no row holds any more deleted), so the role running it
// needs SELECT, INSERT, UPDATE and DELETE on the word list.
func (ix *Index) RefreshWords(ctx context.Context, db DB) error {
	var texts []string
	for _, f := range ix.fields {
		texts = append(texts, "coalesce(t."+f.col+", '')")
	}
	doc := ix.fold(strings.Join(texts, " || ' ' || "))
	tenantCol, pred, del := "NULL::uuid", "true", "tenant_id IS NULL"
	if ix.tenant != "" {
		tenantCol = "t." + ix.tenant
		pred = "t." + ix.tenant + " IS NOT DISTINCT FROM " + tenantSetting
		del = "tenant_id IS NOT DISTINCT FROM " + tenantSetting
	}
	return pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, "justpg.search.words:"+ix.words); err != nil {
			return fmt.Errorf("search: refreshing words: %w", err)
		}
		// Words whose count did not change are not written: rewriting the
		// whole list left every index of it with a dead and a new entry
		// per word (the per-length trigram indexes tripled in size). New
		// words go in by length and then alphabetically, so that a first
		// refresh lays the list out as the lookups read it: the candidates
		// of one length, often sharing a beginning, on few heap pages.
		sql := fmt.Sprintf(`WITH fresh AS MATERIALIZED (
	SELECT %[2]s AS tenant_id, w.word, count(*)::integer AS docs
	FROM %[3]s t, LATERAL pg_catalog.unnest(tsvector_to_array(pg_catalog.to_tsvector('simple', %[4]s))) AS w(word)
	WHERE %[5]s AND char_length(w.word) BETWEEN 2 AND %[6]d AND w.word ~ '^[[:alnum:]]*[[:alpha:]][[:alnum:]]*$'
	GROUP BY 1, 2
), gone AS (
	DELETE FROM %[1]s o WHERE %[7]s AND NOT EXISTS (SELECT FROM fresh f WHERE f.word = o.word)
)
INSERT INTO %[1]s AS o (tenant_id, word, docs) SELECT * FROM fresh ORDER BY char_length(word), word COLLATE "C"
ON CONFLICT (tenant_id, word) DO UPDATE SET docs = excluded.docs WHERE o.docs <> excluded.docs`,
			ix.words, tenantCol, ix.table, doc, pred, MaxWordLen, "o."+del)
		if _, err := tx.Exec(ctx, sql); err != nil {
			return fmt.Errorf("search: refreshing words: %w", err)
		}
		// Fresh statistics keep the planner on the trigram index, and the
		// pending lists of indexes made by earlier versions (with
		// fastupdate) are emptied into them. Both need ownership; without
		// it the autovacuum daemon catches up.
		var own bool
		if err := tx.QueryRow(ctx, `SELECT pg_has_role((SELECT relowner FROM pg_class WHERE oid = $1::regclass), 'USAGE')`, ix.words).Scan(&own); err != nil {
			return fmt.Errorf("search: refreshing words: %w", err)
		}
		if own {
			if _, err := tx.Exec(ctx, "ANALYZE "+ix.words); err != nil {
				return fmt.Errorf("search: analyzing words: %w", err)
			}
			if _, err := tx.Exec(ctx, `SELECT count(pg_catalog.gin_clean_pending_list(c.oid)) `+ginIndexesOf("$1::regclass"), ix.words); err != nil {
				return fmt.Errorf("search: emptying the word list's pending index entries: %w", err)
			}
		}
		return nil
	})
}
