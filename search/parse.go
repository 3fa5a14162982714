package search

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on what a query may use; anything beyond is ignored, so a 10 KB
// query costs no more than a short one.
const (
	// MaxTerms is the number of words of a query that are used.
	MaxTerms = 32
	// MaxWordLen is the longest word, in bytes, that is searched for; longer
	// words are dropped (no real word is that long, and PostgreSQL refuses
	// very long tsquery words).
	MaxWordLen = 64
)

// term is one searchable item: a word, or a phrase of several words.
type term struct {
	words  []string // lower-cased, letters and digits only
	negate bool
	phrase bool // from double quotes: words must be adjacent
}

// group is a disjunction of terms ("a or b"); a query is a conjunction of
// groups.
type group []term

// parsed is a query in websearch_to_tsquery's syntax, reduced to safe parts:
// every word is a run of Unicode letters and digits, so nothing in it can be
// taken as tsquery syntax.
type parsed struct {
	groups []group
	// prefixable is true when the query's last term is a plain word not
	// followed by a space: the word being typed.
	prefixable bool
}

// positive reports whether the query has a word that is not negated; only
// such queries can be answered from an index.
func (p parsed) positive() bool {
	for _, g := range p.groups {
		for _, t := range g {
			if !t.negate {
				return true
			}
		}
	}
	return false
}

// quoteMakers are letters that PostgreSQL's default unaccent rules turn
// into an apostrophe (ŉ becomes 'n); the query is unaccented after it is
// built, so they must not reach a quoted tsquery operand. They separate
// words instead. TestUnaccentKeepsWordsQuotable checks the list against the
// server's rules.
var quoteMakers = map[rune]bool{0x149: true, 0x2b9: true, 0x2bb: true, 0x2bc: true, 0x2bd: true, 0x2c8: true}

func isWordRune(r rune) bool {
	return (unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r)) && !quoteMakers[r]
}

// parseQuery reads websearch syntax: words are ANDed, "quoted text" is a
// phrase, the word or (any case) between two terms means either, and a
// leading - negates a word or phrase. Everything that is not a letter or a
// digit separates words. It never fails.
func parseQuery(s string) parsed {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, " ")
	}
	var (
		p       parsed
		n       int  // terms so far
		orNext  bool // previous token was "or"
		lastEnd int  // byte offset after the last term
	)
	add := func(t term, end int) {
		if len(t.words) == 0 || n >= MaxTerms {
			return
		}
		n += len(t.words)
		if orNext && len(p.groups) > 0 {
			p.groups[len(p.groups)-1] = append(p.groups[len(p.groups)-1], t)
		} else {
			p.groups = append(p.groups, group{t})
		}
		orNext = false
		lastEnd = end
	}
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '"':
			j := strings.IndexByte(s[i+1:], '"')
			end := len(s)
			body := s[i+1:]
			if j >= 0 {
				body, end = s[i+1:i+1+j], i+2+j
			}
			neg := i > 0 && s[i-1] == '-' && (i == 1 || !isWordRune(lastRune(s[:i-1])))
			add(term{words: words(body), negate: neg, phrase: true}, end)
			if end == len(s) && j < 0 {
				lastEnd = -1 // unterminated quote: the user is typing a phrase
			}
			i = end
		case isWordRune(r):
			j := i
			for j < len(s) {
				r2, sz := utf8.DecodeRuneInString(s[j:])
				if !isWordRune(r2) {
					break
				}
				j += sz
			}
			w := strings.ToLower(s[i:j])
			neg := i > 0 && s[i-1] == '-' && (i == 1 || !isWordRune(lastRune(s[:i-1])))
			if w == "or" && !neg && len(p.groups) > 0 && !orNext {
				orNext = true
				i = j
				continue
			}
			add(term{words: keep([]string{w}), negate: neg}, j)
			i = j
		default:
			i += size
		}
	}
	if orNext && len(p.groups) > 0 {
		// A trailing "or" is a word the user is typing, as websearch does.
		orNext = false
	}
	if len(p.groups) > 0 && lastEnd == len(s) {
		g := p.groups[len(p.groups)-1]
		t := g[len(g)-1]
		p.prefixable = !t.negate && !t.phrase && len(t.words) == 1
	}
	return p
}

func lastRune(s string) rune {
	r, _ := utf8.DecodeLastRuneInString(s)
	return r
}

// words splits s into lower-cased runs of letters and digits.
func words(s string) []string {
	f := strings.FieldsFunc(s, func(r rune) bool { return !isWordRune(r) })
	for i := range f {
		f[i] = strings.ToLower(f[i])
	}
	return keep(f)
}

// keep drops words too long to search for.
func keep(ws []string) []string {
	out := ws[:0]
	for _, w := range ws {
		if w != "" && len(w) <= MaxWordLen {
			out = append(out, w)
		}
	}
	return out
}

// lexeme quotes w as a tsquery operand. Words hold only letters and digits,
// but quoting does not rely on it.
func lexeme(w string) string {
	w = strings.ReplaceAll(w, `\`, `\\`)
	return "'" + strings.ReplaceAll(w, "'", "''") + "'"
}

// websearch renders the query back in websearch_to_tsquery syntax, built
// from the safe words only.
func (p parsed) websearch() string {
	var b strings.Builder
	for gi, g := range p.groups {
		if gi > 0 {
			b.WriteByte(' ')
		}
		for ti, t := range g {
			if ti > 0 {
				b.WriteString(" or ")
			}
			if t.negate {
				b.WriteByte('-')
			}
			if t.phrase {
				b.WriteByte('"')
				b.WriteString(strings.Join(t.words, " "))
				b.WriteByte('"')
			} else {
				b.WriteString(t.words[0])
			}
		}
	}
	return b.String()
}

// alternatives maps a word to the corrections that may replace it.
type alternatives map[string][]string

// tsquery renders the query in to_tsquery syntax. With prefix, the word being
// typed matches as a prefix; alts adds typo corrections of plain positive
// words as alternatives.
func (p parsed) tsquery(prefix bool, alts alternatives) string {
	var b strings.Builder
	for gi, g := range p.groups {
		if gi > 0 {
			b.WriteString(" & ")
		}
		b.WriteString("( ")
		for ti, t := range g {
			if ti > 0 {
				b.WriteString(" | ")
			}
			last := gi == len(p.groups)-1 && ti == len(g)-1
			switch {
			case t.negate:
				b.WriteString("!( ")
				writePhrase(&b, t.words)
				b.WriteString(" )")
			case t.phrase || len(t.words) > 1:
				b.WriteString("( ")
				writePhrase(&b, t.words)
				b.WriteString(" )")
			default:
				w := t.words[0]
				b.WriteString("( ")
				b.WriteString(lexeme(w))
				if prefix && last && p.prefixable {
					b.WriteString(":*")
				}
				for _, a := range alts[w] {
					b.WriteString(" | ")
					b.WriteString(lexeme(a))
				}
				b.WriteString(" )")
			}
		}
		b.WriteString(" )")
	}
	return b.String()
}

func writePhrase(b *strings.Builder, ws []string) {
	for i, w := range ws {
		if i > 0 {
			b.WriteString(" <-> ")
		}
		b.WriteString(lexeme(w))
	}
}

// typoWords are the plain positive words that may have typos, each once.
func (p parsed) typoWords(minLen int) []string {
	var out []string
	seen := map[string]bool{}
	for _, g := range p.groups {
		for _, t := range g {
			if t.negate || t.phrase || len(t.words) != 1 {
				continue
			}
			w := t.words[0]
			if utf8.RuneCountInString(w) >= minLen && !seen[w] {
				seen[w] = true
				out = append(out, w)
			}
		}
	}
	return out
}

// verbatimWords are the plain positive words as typed, or their likeliest
// corrections when they have some: rows containing them unstemmed rank
// higher. The query turns them into a regular expression after unaccenting
// them and dropping anything but letters and digits.
func (p parsed) verbatimWords(best alternatives) []string {
	var out []string
	seen := map[string]bool{}
	for _, g := range p.groups {
		for _, t := range g {
			if t.negate {
				continue
			}
			for _, w := range t.words {
				ws := []string{w}
				if b := best[w]; len(b) > 0 {
					ws = b
				}
				for _, w := range ws {
					if !seen[w] {
						seen[w] = true
						out = append(out, w)
					}
				}
			}
		}
	}
	return out
}

// splitLast separates the word being typed from the rest of the query, for
// prefix matching: it applies when prefix is wanted, the query ends in a
// plain word and that word is a group of its own (not part of "a or b").
func (p parsed) splitLast(prefix bool) (rest, last parsed, word string, ok bool) {
	if !prefix || !p.prefixable || len(p.groups) == 0 {
		return p, parsed{}, "", false
	}
	g := p.groups[len(p.groups)-1]
	if len(g) != 1 {
		return p, parsed{}, "", false
	}
	rest = parsed{groups: p.groups[:len(p.groups)-1]}
	last = parsed{groups: []group{g}}
	return rest, last, g[0].words[0], true
}
