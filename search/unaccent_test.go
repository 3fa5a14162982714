package search

import (
	"context"
	"testing"
	"unicode"

	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
)

// TestUnaccentKeepsWordsQuotable unaccents every character the parser keeps
// in a word, with the server's own rules, and checks that none becomes a
// quote or a backslash, which would break the tsquery operand it sits in.
func TestUnaccentKeepsWordsQuotable(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	var runes []string
	for r := rune(1); r <= 0x1FFFF; r++ {
		if isWordRune(r) && (r > 0x7f && !unicode.Is(unicode.Han, r) && !unicode.Is(unicode.Hangul, r)) {
			runes = append(runes, string(r))
		}
	}
	rows, err := db.Pool.Query(context.Background(),
		`SELECT c, unaccent(c) FROM unnest($1::text[]) AS c WHERE unaccent(c) ~ '[''\\]'`, runes)
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var c, u string
		require.NoError(t, rows.Scan(&c, &u))
		t.Errorf("%q (U+%04X) unaccents to %q", c, []rune(c)[0], u)
	}
	require.NoError(t, rows.Err())
	require.NotEmpty(t, runes)
}
