package search_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/search"
)

// TestCorrectionRanking: corrections are ranked by how likely the slip is
// and how common the word is, not by edit count alone.
func TestCorrectionRanking(t *testing.T) {
	t.Parallel()
	db, ix := newProducts(t, productsConfig())
	ctx := context.Background()
	var rows []product
	for i := range 5 {
		rows = append(rows, product{id: int64(500 + i), title: fmt.Sprintf("Dimension chart %d", i), category: "misc"})
	}
	rows = append(rows,
		product{id: 510, title: "Demission letter", category: "misc"},
		product{id: 511, title: "Interview tips", category: "misc"},
		product{id: 512, title: "Interviewed candidates", category: "misc"})
	seed(t, db, rows)
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))

	// "demission" is one substitution away, "dimension" two vowel swaps and
	// five times as common: the likelier correction wins.
	r, err := ix.Search(ctx, db.Pool, search.Query{Text: "deminsion "})
	require.NoError(t, err)
	require.NotEmpty(t, r.Hits)
	require.NotEmpty(t, r.Corrections["deminsion"])
	assert.Equal(t, "dimension", r.Corrections["deminsion"][0])
	assert.Contains(t, r.Corrections["deminsion"], "demission", "the other correction is still an alternative")
	// The likeliest correction's rows lead; the other correction's row is
	// interleaved after them (see TestCorrectionInterleaving).
	dims := []string{"500", "501", "502", "503", "504"}
	require.Len(t, r.Hits, 6)
	assert.Contains(t, dims, r.Hits[0].Key)
	assert.Contains(t, dims, r.Hits[1].Key)
	assert.Equal(t, "510", r.Hits[2].Key)
	assert.ElementsMatch(t, append(dims, "510"), keys(r))
	assert.Equal(t, search.MatchTypo, r.Hits[0].Match)

	// Equally common: the correction that keeps the typed ending (a dropped
	// letter) beats the one that changes it.
	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "interviewd "})
	require.NoError(t, err)
	require.NotEmpty(t, r.Hits)
	assert.Equal(t, "interviewed", r.Corrections["interviewd"][0])
	assert.Equal(t, "512", r.Hits[0].Key)

	// Suggest uses the same order.
	s, err := ix.Suggest(ctx, db.Pool, "deminsion", 2)
	require.NoError(t, err)
	require.Len(t, s, 2)
	assert.Equal(t, "dimension", s[0].Word)
	assert.Equal(t, 2, s[0].Typos)
	assert.Equal(t, 5, s[0].Docs)
	assert.Equal(t, "demission", s[1].Word)
}

// TestStopWordCorrection: a typo whose correction is a stop word drops out
// of a longer query, as the stop word itself would; a query of stop words
// only matches them as whole words through the trigram indexes.
func TestStopWordCorrection(t *testing.T) {
	t.Parallel()
	db, ix := newProducts(t, productsConfig())
	ctx := context.Background()
	seed(t, db, []product{
		{601, "Which grinder", "Pick the grinder for your beans.", "kitchen", 50},
		{602, "Sandwich maker", "Toasts bread.", "kitchen", 30},
	})
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))

	r, err := ix.Search(ctx, db.Pool, search.Query{Text: "whihc "})
	require.NoError(t, err)
	assert.Equal(t, []string{"601"}, keys(r), "rows with the word which, not sandwich")
	assert.Equal(t, search.MatchTypo, r.Hits[0].Match)
	assert.Contains(t, r.Corrections["whihc"], "which")

	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "which "})
	require.NoError(t, err)
	assert.Equal(t, []string{"601"}, keys(r))
	assert.Equal(t, search.MatchExact, r.Hits[0].Match)

	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "whihc espresso "})
	require.NoError(t, err)
	assert.Equal(t, []string{"7"}, keys(r), "the stop-word correction does not have to match")

	// Short stop words alone still find nothing, without a scan.
	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "the of "})
	require.NoError(t, err)
	assert.Empty(t, r.Hits)
}

// TestVerbatimCandidatesFirst: when a broad stem matches more rows than
// MaxCandidates, the rows with the query word itself are ranked.
func TestVerbatimCandidatesFirst(t *testing.T) {
	t.Parallel()
	cfg := productsConfig()
	cfg.MaxCandidates = 3
	db, ix := newProducts(t, cfg)
	ctx := context.Background()
	var rows []product
	for i := range 8 {
		rows = append(rows, product{id: int64(300 + i), title: fmt.Sprintf("Set of %d cups", i+2), category: "kitchen"})
	}
	rows = append(rows, product{id: 399, title: "Grinder settings guide", category: "kitchen"})
	seed(t, db, rows)
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))

	// english stems settings to 'set'.
	r, err := ix.Search(ctx, db.Pool, search.Query{Text: "settings ", NoTypos: true})
	require.NoError(t, err)
	require.NotEmpty(t, r.Hits)
	assert.Equal(t, "399", r.Hits[0].Key)
	assert.True(t, r.TotalCapped)

	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "setitngs "})
	require.NoError(t, err)
	require.NotEmpty(t, r.Hits)
	assert.Equal(t, "399", r.Hits[0].Key, "also through the correction")
}

// TestCorrectionInterleaving: the rows of a corrected query are grouped by
// the correction they contain and interleaved, the j-th likeliest
// correction's k-th row at k·j; each correction contributes rows even when
// the likeliest one's rows fill MaxCandidates, and pages stay stable.
func TestCorrectionInterleaving(t *testing.T) {
	t.Parallel()
	cfg := productsConfig()
	cfg.MaxCandidates = 10
	db, ix := newProducts(t, cfg)
	ctx := context.Background()
	rows := collectionRows()
	seed(t, db, rows)
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))

	r, err := ix.Search(ctx, db.Pool, search.Query{Text: "collectoin ", Limit: 10})
	require.NoError(t, err)
	alts := r.Corrections["collectoin"]
	require.GreaterOrEqual(t, len(alts), 2)
	require.Equal(t, "collection", alts[0], "a transposition of the common word is likeliest")
	require.Contains(t, alts, "collections")
	require.Len(t, r.Hits, 10)
	assert.True(t, r.TotalCapped, "30 rows with collection exceed MaxCandidates")
	// Without the interleaving all ten would be collection rows: the
	// collections row (one more edit, one row) would not even be ranked.
	got := keys(r)
	assert.Contains(t, got, "780", "the less likely inflection's row is on the first page")
	assert.Less(t, indexOf(got, "780"), 4)
	assert.GreaterOrEqual(t, indexOf(got, "780"), 1, "after the likeliest correction's first row")
	assert.Equal(t, "collection", wordOf(r.Hits[0].Key, rows))
	n := 0
	for _, k := range got {
		if wordOf(k, rows) == "collection" {
			n++
		}
	}
	assert.GreaterOrEqual(t, n, 5, "the likeliest correction keeps most of the page")

	// The k-th row of the j-th likeliest correction is placed at k·j: the
	// positions never decrease down the page.
	seen := map[string]int{}
	last := 0
	for _, k := range got {
		w := wordOf(k, rows)
		j := indexOf(alts, w) + 1
		require.Positive(t, j, "%s is one of the corrections %v", w, alts)
		seen[w]++
		pos := seen[w] * j
		assert.GreaterOrEqual(t, pos, last, "hits %v", got)
		last = pos
	}

	// Pages of a corrected query follow the same order, without gaps or
	// repeats.
	var paged []string
	after := ""
	for range 20 {
		p, err := ix.Search(ctx, db.Pool, search.Query{Text: "collectoin ", Limit: 3, After: after})
		require.NoError(t, err)
		paged = append(paged, keys(p)...)
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	all, err := ix.Search(ctx, db.Pool, search.Query{Text: "collectoin ", Limit: 100})
	require.NoError(t, err)
	assert.Equal(t, keys(all), paged)
	assert.Equal(t, got, keys(all)[:10])

	// A correctly spelled query is not interleaved: its exact matches lead.
	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "collection ", Limit: 10})
	require.NoError(t, err)
	require.Len(t, r.Hits, 10)
	for _, h := range r.Hits {
		assert.Equal(t, "collection", wordOf(h.Key, rows))
		assert.Equal(t, search.MatchExact, h.Match)
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// wordOf is the collect* word in the title of the row with key k.
func wordOf(k string, rows []product) string {
	for _, p := range rows {
		if fmt.Sprint(p.id) == k {
			for _, w := range strings.Fields(strings.ToLower(p.title)) {
				if strings.HasPrefix(w, "collect") {
					return w
				}
			}
		}
	}
	return ""
}

// TestLooseFallback: an unknown word with no correction within its typo
// budget gets the corrections one typo beyond it; a word with one within
// the budget, or a word of the list, does not.
func TestLooseFallback(t *testing.T) {
	t.Parallel()
	db, ix := newProducts(t, productsConfig())
	ctx := context.Background()
	seed(t, db, []product{
		{801, "Treasury bonds", "", "books", 10},
		{802, "Rubber gasket", "", "garden", 3},
		{803, "Picnic basket", "", "garden", 20},
		{804, "Rocket stove", "", "outdoor", 80},
	})
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))

	// Eight letters allow one typo; tresuary is two away from treasury.
	r, err := ix.Search(ctx, db.Pool, search.Query{Text: "tresuary "})
	require.NoError(t, err)
	assert.Equal(t, []string{"801"}, keys(r))
	assert.Equal(t, []string{"treasury"}, r.Corrections["tresuary"])
	assert.Equal(t, search.MatchTypo, r.Hits[0].Match)

	// gaskit is one typo from gasket: basket, two away, is not used.
	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "gaskit "})
	require.NoError(t, err)
	assert.Equal(t, []string{"802"}, keys(r))
	assert.Equal(t, []string{"gasket"}, r.Corrections["gaskit"])

	// A word of the list gets no corrections two typos away (rocket).
	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "jacket "})
	require.NoError(t, err)
	assert.Equal(t, []string{"4"}, keys(r))
	assert.NotContains(t, r.Corrections["jacket"], "rocket")

	// NoTypos turns the fallback off too.
	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "tresuary ", NoTypos: true})
	require.NoError(t, err)
	assert.Empty(t, r.Hits)
}

// TestLooseFallbackNotWhileTyping: the word being typed is a prefix, not a
// misspelling, so it gets no corrections beyond its budget.
func TestLooseFallbackNotWhileTyping(t *testing.T) {
	t.Parallel()
	db, ix := newProducts(t, productsConfig())
	ctx := context.Background()
	seed(t, db, []product{{801, "Treasury bonds", "", "books", 10}})
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))

	r, err := ix.Search(ctx, db.Pool, search.Query{Text: "tresuary"})
	require.NoError(t, err)
	assert.Empty(t, r.Hits)
	assert.Empty(t, r.Corrections)

	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "tresuary bonds"})
	require.NoError(t, err)
	assert.Equal(t, []string{"801"}, keys(r), "an earlier, complete word still gets it")
	assert.Equal(t, []string{"treasury"}, r.Corrections["tresuary"])
}

// TestTypedPrefixKeptWithCorrection: the word being typed matches as a
// prefix even when it has a correction whose stem is the typed word itself
// (ts_rewrite would also replace the prefix node and drop its flag).
func TestTypedPrefixKeptWithCorrection(t *testing.T) {
	t.Parallel()
	db, ix := newProducts(t, productsConfig())
	ctx := context.Background()
	seed(t, db, []product{
		{811, "Nationalistic fervour", "", "books", 10},
		{812, "National park guide", "", "books", 12},
	})
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))

	r, err := ix.Search(ctx, db.Pool, search.Query{Text: "nationa"})
	require.NoError(t, err)
	assert.Contains(t, r.Corrections["nationa"], "national")
	assert.ElementsMatch(t, []string{"811", "812"}, keys(r), "nationalistic matches the typed prefix")

	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "fervour nationa"})
	require.NoError(t, err)
	assert.Equal(t, []string{"811"}, keys(r))

	// As a complete word it is a misspelling: only the correction matches.
	r, err = ix.Search(ctx, db.Pool, search.Query{Text: "nationa "})
	require.NoError(t, err)
	assert.Equal(t, []string{"812"}, keys(r))
}

// collectionRows are 30 rows with "collection" and one each with
// "collections" and "collector": the misspelling "collectoin" has three
// corrections, the likeliest of which alone fills MaxCandidates 10.
func collectionRows() []product {
	var rows []product
	for i := range 30 {
		rows = append(rows, product{id: int64(700 + i), title: fmt.Sprintf("Stamp collection volume %d", i), category: "misc"})
	}
	return append(rows,
		product{id: 780, title: "Museum collections abroad", category: "misc"},
		product{id: 781, title: "Debt collector handbook", category: "misc"})
}
