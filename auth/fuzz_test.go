package auth_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/justpg/justpg/auth"
)

func FuzzNormalizeEmail(f *testing.F) {
	for _, s := range append([]string{"Alice@Example.COM", "用户@例子.广告", "E\u0301lodie@exemple.fr"}, badEmails...) {
		if len(s) < 4096 {
			f.Add(s)
		}
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := auth.NormalizeEmail(in)
		if err != nil {
			if out != "" {
				t.Fatalf("error with output %q", out)
			}
			return
		}
		if !utf8.ValidString(out) || len(out) > 254 || strings.Count(out, "@") != 1 ||
			strings.ContainsAny(out, " \t\r\n\x00\"<>;,") || strings.ToLower(out) != out {
			t.Fatalf("NormalizeEmail(%q) = %q: not a normalised address", in, out)
		}
		again, err := auth.NormalizeEmail(out)
		if err != nil || again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", in, out, again, err)
		}
	})
}
