package search

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
)

func TestParseQuery(t *testing.T) {
	p := parseQuery(`"Pocket Reference" or guide -knife -"steel blade" postgr`)
	assert.Equal(t, `"pocket reference" or guide -knife -"steel blade" postgr`, p.websearch())
	assert.True(t, p.prefixable)
	assert.Equal(t, `( ( 'pocket' <-> 'reference' ) | ( 'guide' ) ) & ( !( 'knife' ) ) & ( !( 'steel' <-> 'blade' ) ) & ( ( 'postgr':* ) )`,
		p.tsquery(true, nil))
	assert.Equal(t, `( ( 'postgr' | 'postgre' ) )`, parseQuery("postgr ").tsquery(true, alternatives{"postgr": {"postgre"}}))
	assert.False(t, parseQuery("postgr ").prefixable)
	assert.False(t, parseQuery("-knife").positive())
	assert.True(t, parseQuery("x-ray").positive())
	assert.Equal(t, "x ray", parseQuery("x-ray").websearch(), "an inner dash is a separator, not a negation")
	assert.Equal(t, "", parseQuery(":* & | ! ' \\ ()").websearch())
	assert.Len(t, parseQuery(strings.Repeat("word ", 5000)).groups, MaxTerms)
	assert.Equal(t, []string{"recieved", "wisdom"}, parseQuery("recieved wisdom of it -other").typoWords(5))
}

func TestTypoDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"recieved", "received", 1}, {"teh", "the", 1}, {"abc", "abc", 0}, {"kitten", "sitting", 3},
		{"café", "cafe", 1}, {"", "abc", 3}, {"distribtued", "distributed", 1},
	} {
		assert.Equal(t, c.want, typoDistance(c.a, c.b, 3), "%s/%s", c.a, c.b)
	}
	assert.Equal(t, 3, typoDistance("kitten", "sitting", 2), "beyond max reports max+1")
}

// FuzzParseQuery checks what the builder hands to to_tsquery: balanced
// parentheses, operands that are quoted runs of letters and digits, and no
// more than MaxTerms words.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "a b", `"a b" or -c d`, "& | ! :* ' \\ ( ) <->", "😀 кофе", "\xff\x00", `-"x`, "or"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p := parseQuery(s)
		words := 0
		for _, g := range p.groups {
			for _, term := range g {
				words += len(term.words)
				for _, w := range term.words {
					if w == "" || len(w) > MaxWordLen || !utf8.ValidString(w) || strings.IndexFunc(w, func(r rune) bool { return !isWordRune(r) }) >= 0 {
						t.Fatalf("bad word %q from %q", w, s)
					}
				}
			}
		}
		if words > MaxTerms {
			t.Fatalf("%d words from %q", words, s)
		}
		for _, prefix := range []bool{false, true} {
			q := p.tsquery(prefix, nil)
			depth, inQuote := 0, false
			for _, r := range q {
				switch {
				case r == '\'':
					inQuote = !inQuote
				case inQuote:
				case r == '(':
					depth++
				case r == ')':
					depth--
					if depth < 0 {
						t.Fatalf("unbalanced %q", q)
					}
				case strings.ContainsRune(" &|!<->:*", r):
				default:
					t.Fatalf("unexpected %q outside quotes in %q", r, q)
				}
			}
			if depth != 0 || inQuote {
				t.Fatalf("unbalanced %q", q)
			}
		}
		if ws := p.websearch(); strings.ContainsAny(ws, "&|!():*'\\<>") {
			t.Fatalf("websearch text %q carries operators", ws)
		}
	})
}

// TestThresholdKeepsOneTypo: the derived threshold never drops a one-typo
// correction of a common pattern because of rounding.
func TestThresholdKeepsOneTypo(t *testing.T) {
	ty := DefaultTypos
	for n := 1; n < 30; n++ {
		s := ty.threshold(n)
		assert.GreaterOrEqual(t, s, 0.2)
		assert.LessOrEqual(t, s, 0.5)
	}
	assert.Less(t, ty.threshold(8), 6.0/12, "a substitution in 8 letters leaves 6 of 12 trigrams")
	assert.Less(t, ty.threshold(5), 3.0/9, "a substitution in 5 letters leaves 3 of 9 trigrams")
	assert.Less(t, ty.looseThreshold(8), 5.0/13, "recieved/received (a transposition) share 5 of 13 trigrams")
	assert.Equal(t, 0.3, Typos{Similarity: 0.3}.threshold(8))
}

// typoDistance is the reference for the SQL justpg_typo_distance: the optimal-string-alignment distance between a and b
// (insertions, deletions, substitutions and adjacent transpositions, in
// characters), or max+1 when it exceeds max.
func typoDistance(a, b string, max int) int {
	ra, rb := []rune(a), []rune(b)
	if d := len(ra) - len(rb); d > max || -d > max {
		return max + 1
	}
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			v := min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				v = min(v, prev2[j-2]+1)
			}
			cur[j] = v
			rowMin = min(rowMin, v)
		}
		if rowMin > max {
			return max + 1
		}
		prev2, prev, cur = prev, cur, prev2
	}
	if prev[len(rb)] > max {
		return max + 1
	}
	return prev[len(rb)]
}

// typoCost is the reference for the SQL justpg_typo_cost: the weighted
// optimal string alignment from the typed word a to the candidate b.
func typoCost(a, b string) float64 {
	if a == b {
		return 0
	}
	x, y := []rune(a), []rune(b)
	m, n := len(x), len(y)
	if m == 0 || n == 0 {
		return float64(max(m, n))
	}
	neighbours := map[rune]string{'q': "wa", 'w': "qeas", 'e': "wrsd", 'r': "etdf", 't': "ryfg", 'y': "tugh", 'u': "yihj",
		'i': "uojk", 'o': "ipkl", 'p': "ol", 'a': "qwsz", 's': "weadzx", 'd': "ersfxc", 'f': "rtdgcv", 'g': "tyfhvb",
		'h': "yugjbn", 'j': "uihknm", 'k': "iojlm", 'l': "opk", 'z': "asx", 'x': "sdzc", 'c': "dfxv", 'v': "fgcb",
		'b': "ghvn", 'n': "hjbm", 'm': "jkn"}
	extra := func(i int) float64 { // x[i] typed but not in b
		if (i > 0 && x[i] == x[i-1]) || (i+1 < m && x[i] == x[i+1]) {
			return 0.5
		}
		return 1
	}
	sub := func(c, d rune) float64 {
		switch {
		case c == d:
			return 0
		case strings.ContainsRune("aeiouy", c) && strings.ContainsRune("aeiouy", d), strings.ContainsRune(neighbours[c], d):
			return 0.5
		}
		return 1
	}
	d := make([][]float64, m+1)
	for i := range d {
		d[i] = make([]float64, n+1)
	}
	for i := 1; i <= m; i++ {
		d[i][0] = d[i-1][0] + extra(i-1)
	}
	for j := 1; j <= n; j++ {
		d[0][j] = d[0][j-1] + 0.5
	}
	for i := 1; i <= m; i++ {
		for j := 1; j <= n; j++ {
			v := min(d[i-1][j]+extra(i-1), d[i][j-1]+0.5, d[i-1][j-1]+sub(x[i-1], y[j-1]))
			if i > 1 && j > 1 && x[i-1] == y[j-2] && x[i-2] == y[j-1] {
				v = min(v, d[i-2][j-2]+0.5)
			}
			d[i][j] = v
		}
	}
	if x[m-1] != y[n-1] {
		return d[m][n] + 0.5
	}
	return d[m][n]
}

// TestTypoCost pins the weights: common slips cost half an edit, other
// edits one, and changing the last letter (the inflection) half more.
func TestTypoCost(t *testing.T) {
	for _, c := range []struct {
		typed, word string
		cost        float64
	}{
		{"recieve", "receive", 0.5},        // transposition
		{"seperate", "separate", 0.5},      // vowel for vowel
		{"enviroment", "environment", 0.5}, // dropped letter
		{"controlls", "controls", 0.5},     // letter typed twice
		{"ocasion", "occasion", 0.5},       // doubled letter typed once
		{"wprld", "world", 0.5},            // neighbouring key
		{"wzrld", "world", 1},              // any other substitution
		{"worrld", "world", 0.5},
		{"wxorld", "world", 1}, // an extra letter
		{"interviewd", "interviewed", 0.5},
		{"interviewd", "interview", 1.5}, // the ending changes
		{"abc", "abc", 0},
	} {
		assert.InDelta(t, c.cost, typoCost(c.typed, c.word), 1e-9, "%s -> %s", c.typed, c.word)
	}
}
