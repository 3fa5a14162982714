package search_test

import (
	"context"
	"errors"
	"testing"

	"github.com/justpg/justpg/search"
)

// FuzzSearch feeds arbitrary text to the query builder against a real
// database: no input may produce a database error.
func FuzzSearch(f *testing.F) {
	for _, s := range []string{
		"", " ", "espresso", `"pocket reference"`, "pocket -knife", "a or b", "-", `"`, "& | ! :* ' \\",
		"'; DROP TABLE products; --", "<->", "<2>", "(x", "x)", "😀", "кофе", "咖啡", "\x00", "\xff",
		"or or or", "- - -", `-"`, "espresso:*", "e\u0301", "100%_\\", "a:*b", "!(a & b)", "ŉ", "ʼespresso", "ʹ", "ˈx", "⑴ ½",
	} {
		f.Add(s)
	}
	db, ix := newProducts(f, productsConfig())
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, text string) {
		for _, q := range []search.Query{{Text: text, Highlight: true}, {Text: text, NoPrefix: true}, {Text: text, NoTypos: true}} {
			if _, err := ix.Search(ctx, db.Pool, q); err != nil {
				t.Fatalf("Search(%q): %v", text, err)
			}
		}
		if _, err := ix.Substring(ctx, db.Pool, search.Query{Text: text}); err != nil && !errors.Is(err, search.ErrTooShort) {
			t.Fatalf("Substring(%q): %v", text, err)
		}
		if _, err := ix.Suggest(ctx, db.Pool, text, 3); err != nil {
			t.Fatalf("Suggest(%q): %v", text, err)
		}
	})
}
