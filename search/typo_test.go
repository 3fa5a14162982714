package search

import (
	"context"
	"math/rand"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
)

// TestTypoDistanceSQL checks the SQL typo distance against the Go reference
// on typical typos and on random pairs of short words, for every budget.
func TestTypoDistanceSQL(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	ix, err := New(Config{Table: "t", Key: "id", Fields: []Field{{Column: "body"}}})
	require.NoError(t, err)
	ctx := context.Background()
	for _, stmt := range ix.DDL() {
		if strings.Contains(stmt, "justpg_typo_distance\"(a text") {
			_, err := db.Pool.Exec(ctx, stmt)
			require.NoError(t, err)
		}
	}
	var as, bs []string
	var ks []int32
	add := func(a, b string, k int) {
		as, bs, ks = append(as, a), append(bs, b), append(ks, int32(k))
	}
	for _, p := range [][2]string{{"recieved", "received"}, {"teh", "the"}, {"kitten", "sitting"}, {"café", "cafe"},
		{"", "abc"}, {"distribtued", "distributed"}, {"ca", "abc"}, {"abc", "abc"}, {"deminsion", "dimension"}} {
		for k := 0; k <= 3; k++ {
			add(p[0], p[1], k)
		}
	}
	rng := rand.New(rand.NewSource(1))
	word := func() string {
		b := make([]rune, rng.Intn(8))
		for i := range b {
			b[i] = []rune("abcé")[rng.Intn(4)]
		}
		return string(b)
	}
	for range 3000 {
		add(word(), word(), rng.Intn(4))
	}
	rows, err := db.Pool.Query(ctx, `SELECT justpg_typo_distance(a, b, k) FROM unnest($1::text[], $2::text[], $3::int[]) AS u(a, b, k)`, as, bs, ks)
	require.NoError(t, err)
	i := 0
	for rows.Next() {
		var got int
		require.NoError(t, rows.Scan(&got))
		require.Equal(t, typoDistance(as[i], bs[i], int(ks[i])), got, "%q / %q within %d", as[i], bs[i], ks[i])
		i++
	}
	require.NoError(t, rows.Err())
	require.Equal(t, len(as), i)
}

// TestTypoCostSQL checks the SQL typo cost against the Go reference on
// typical misspellings and on random pairs of short words.
func TestTypoCostSQL(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	ix, err := New(Config{Table: "t", Key: "id", Fields: []Field{{Column: "body"}}})
	require.NoError(t, err)
	ctx := context.Background()
	created := false
	for _, stmt := range ix.DDL() {
		if strings.Contains(stmt, "justpg_typo_cost\"(a text") {
			_, err := db.Pool.Exec(ctx, stmt)
			require.NoError(t, err)
			created = true
		}
	}
	require.True(t, created)
	var as, bs []string
	for _, p := range [][2]string{{"recieve", "receive"}, {"seperate", "separate"}, {"enviroment", "environment"},
		{"controlls", "controls"}, {"interviewd", "interviewed"}, {"interviewd", "interview"}, {"deminsion", "dimension"},
		{"deminsion", "demission"}, {"a", ""}, {"", "ab"}, {"café", "cafe"}, {"x", "x"}} {
		as, bs = append(as, p[0]), append(bs, p[1])
	}
	rng := rand.New(rand.NewSource(2))
	word := func() string {
		b := make([]rune, rng.Intn(7))
		for i := range b {
			b[i] = []rune("aeswdbé")[rng.Intn(7)]
		}
		return string(b)
	}
	for range 2000 {
		as, bs = append(as, word()), append(bs, word())
	}
	rows, err := db.Pool.Query(ctx, `SELECT justpg_typo_cost(a, b) FROM unnest($1::text[], $2::text[]) AS u(a, b)`, as, bs)
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, pgx.RowTo[float64])
	require.NoError(t, err)
	require.Len(t, got, len(as))
	for i := range as {
		require.InDelta(t, typoCost(as[i], bs[i]), got[i], 1e-6, "%q -> %q", as[i], bs[i])
	}
}
