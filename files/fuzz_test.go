package files_test

import (
	"errors"
	"mime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/justpg/justpg/files"
)

func FuzzNameAndDisposition(f *testing.F) {
	for _, s := range []string{"a.txt", "Résumé \"final\"; 100%.pdf", "..", ".", "a/b", `a\b`, "a\r\nSet-Cookie: x", "日本語.png",
		"\u202Eexe.txt", "  ", "x\x00y", "\xff", strings.Repeat("é", 200), "'quoted'", "a;b=c", "%41"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := files.ValidateName(name)
		if err != nil {
			if !errors.Is(err, files.ErrInvalidName) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if name == "" || name == "." || name == ".." || len(name) > files.MaxNameLen || !utf8.ValidString(name) ||
			strings.ContainsAny(name, "/\\\x00\r\n\x7f") {
			t.Fatalf("accepted bad name %q", name)
		}
		for _, disp := range []string{"attachment", "inline"} {
			v := files.ContentDisposition(disp, name)
			for _, r := range v {
				if r < 0x20 || r >= 0x7f {
					t.Fatalf("header value %q holds a non-printable or non-ASCII character", v)
				}
			}
			got, params, err := mime.ParseMediaType(v)
			if err != nil {
				t.Fatalf("%q does not parse: %v", v, err)
			}
			if got != disp || params["filename"] != name {
				t.Fatalf("%q parses to %q %q, want %q %q", v, got, params["filename"], disp, name)
			}
		}
	})
}

func FuzzCursor(f *testing.F) {
	f.Add("", "")
	f.Add("a.txt", "0f8fad5b-d9cb-469f-a165-70867728950e")
	f.Add("x", "garbage")
	f.Fuzz(func(t *testing.T, name, id string) {
		c := files.EncodeCursor(name, id)
		n, i, err := files.DecodeCursor(c)
		if err == nil && len(id) == 36 && (n != name || i != id) {
			t.Fatalf("round trip changed (%q, %q) into (%q, %q)", name, id, n, i)
		}
		// Arbitrary input never panics and never yields a NUL.
		if n, _, err := files.DecodeCursor(name); err == nil && strings.ContainsRune(n, 0) {
			t.Fatalf("cursor decoded to a name with NUL")
		}
	})
}

func FuzzContentType(f *testing.F) {
	for _, s := range []string{"text/plain", "text/plain; charset=UTF-8", "image/*", "", "a", "multipart/form-data; boundary=x", "text/html;\r\nx"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, ct string) {
		full, base, err := files.NormalizeContentType(ct)
		if err != nil {
			if !errors.Is(err, files.ErrInvalidInput) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if !strings.Contains(base, "/") || strings.ContainsAny(full, "\r\n\x00") {
			t.Fatalf("bad normalisation %q -> %q (%q)", ct, full, base)
		}
		if _, _, err := mime.ParseMediaType(full); err != nil {
			t.Fatalf("normalised %q does not parse: %v", full, err)
		}
	})
}

// FuzzPrefixUpperBound checks the bound List uses for name prefixes: every
// string starting with the prefix sorts (bytewise, as COLLATE "C" does)
// at or after the prefix and strictly before the bound.
func FuzzPrefixUpperBound(f *testing.F) {
	f.Add("abc", "def")
	f.Add("a\U0010FFFF", "x")
	f.Add("\U0010FFFF", "")
	f.Add("a\uD7FF", "z")
	f.Add("é", "\U0010FFFF\U0010FFFF")
	f.Fuzz(func(t *testing.T, prefix, rest string) {
		if !utf8.ValidString(prefix) || !utf8.ValidString(rest) || prefix == "" {
			return
		}
		hi, ok := files.PrefixUpperBound(prefix)
		if ok && !utf8.ValidString(hi) {
			t.Fatalf("bound %q of %q is not valid UTF-8", hi, prefix)
		}
		s := prefix + rest
		if ok && !(s < hi) {
			t.Fatalf("%q starts with %q but is not below the bound %q", s, prefix, hi)
		}
		if ok && strings.HasPrefix(hi, prefix) {
			t.Fatalf("bound %q itself starts with %q", hi, prefix)
		}
		if !ok && strings.Trim(prefix, "\U0010FFFF") != "" {
			t.Fatalf("no bound for %q", prefix)
		}
	})
}
