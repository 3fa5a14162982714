package search

import (
	"math"
	"strings"
)

// budget is how many typos a word of n characters may have.
func (t Typos) budget(n int) int {
	switch {
	case t.Disabled || n < t.OneTypo:
		return 0
	case n < t.TwoTypos:
		return 1
	default:
		return 2
	}
}

// threshold is the pg_trgm similarity above which a word of the list is a
// candidate correction of a query word of n characters. Unless set, it is
// the least similarity a word within the typo budget can have: pg_trgm
// splits a word into n+1 trigrams (with padding), a substitution changes up
// to three of them, an insertion or deletion fewer, so one typo leaves at
// least (n-2)/(n+4) and two at least (n-5)/(n+7). A transposition changes
// four, which for one typo would need a threshold so low that the lookup
// reads thousands of words; instead the lookup function also finds the
// word's n-1 adjacent transpositions by exact match. A margin of 10% covers
// words with repeated trigrams, and the result is kept within [0.2, 0.5]:
// lower would make the lookup slow, higher would lose real corrections.
func (t Typos) threshold(n int) float64 {
	if t.Similarity > 0 {
		return t.Similarity
	}
	var s float64
	if t.budget(n) >= 2 {
		s = float64(n-5) / float64(n+7)
	} else {
		s = float64(n-2) / float64(n+4)
	}
	return min(max(math.Floor(s*900)/1000, 0.2), 0.5)
}

// looseThreshold is the similarity of a word one typo beyond the budget
// (any typos, transpositions included), for Suggest.
func (t Typos) looseThreshold(n int) float64 {
	if t.Similarity > 0 {
		return t.Similarity
	}
	s := float64(n-7) / float64(n+9)
	if t.budget(n) < 2 {
		s = float64(n-5) / float64(n+7)
	}
	return min(max(math.Floor(s*900)/1000, 0.2), 0.5)
}

// frequencyWeight converts word frequency into typo cost when corrections
// are ranked: a correction's score is its typo cost (justpg_typo_cost) minus
// frequencyWeight·ln(1 + rows it occurs in), lowest first. It is 1/ln(500):
// a word 500 times as frequent may need one more edit, as in a
// noisy-channel model where a typo is a few-hundred-to-one event. Rare
// words of a real corpus are often its own typos ("enviroment"), and the
// weight keeps them from beating a common word one cheap slip away.
const frequencyWeight = 0.161

// bestMargin is how far above the likeliest correction's score another
// correction may score and still count as a likeliest one: one cheap slip
// (half an edit). Near-ties are ambiguous; their rows share the
// likeliest-correction tier and are ordered by relevance.
const bestMargin = 0.5

// keyboardNeighbours are the keys next to each letter on a QWERTY keyboard.
var keyboardNeighbours = map[byte]string{
	'q': "wa", 'w': "qeas", 'e': "wrsd", 'r': "etdf", 't': "ryfg", 'y': "tugh", 'u': "yihj", 'i': "uojk",
	'o': "ipkl", 'p': "ol", 'a': "qwsz", 's': "weadzx", 'd': "ersfxc", 'f': "rtdgcv", 'g': "tyfhvb",
	'h': "yugjbn", 'j': "uihknm", 'k': "iojlm", 'l': "opk", 'z': "asx", 'x': "sdzc", 'c': "dfxv",
	'v': "fgcb", 'b': "ghvn", 'n': "hjbm", 'm': "jkn",
}

// cheapPairs lists the substitutions that cost half an edit in the typo
// cost, as ",xy," items (typed x for y): a vowel for another vowel, and a
// key for a neighbouring key.
func cheapPairs() string {
	var b strings.Builder
	b.WriteByte(',')
	const vowels = "aeiouy"
	for i := range len(vowels) {
		for j := range len(vowels) {
			if i != j {
				b.WriteString(vowels[i:i+1] + vowels[j:j+1] + ",")
			}
		}
	}
	for c := byte('a'); c <= 'z'; c++ {
		for _, n := range []byte(keyboardNeighbours[c]) {
			b.WriteString(string([]byte{c, n}) + ",")
		}
	}
	return b.String()
}

// altPerCorrection is how many rows containing it verbatim each of the
// altCorrections likeliest corrections of a word of a corrected query adds
// to the ranked rows, looked for among the first altScan rows matching the
// correction and the query. Each costs an index lookup (~1 ms on the
// benchmark), hence the bound.
const (
	altCorrections   = 3
	altPerCorrection = 3
	altScan          = 200
)

// verbatimScan is how many rows matching a query (or its likeliest
// corrections) are read through the tsvector index and tested for a query
// word verbatim one by one (a few microseconds each) before the verbatim
// rows are looked up through the trigram indexes instead (several
// milliseconds when the words have common trigrams).
const verbatimScan = 2000
