package search_test

import (
	"context"
	"fmt"
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
	for _, h := range r.Hits[:5] {
		assert.Contains(t, []string{"500", "501", "502", "503", "504"}, h.Key)
	}
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
