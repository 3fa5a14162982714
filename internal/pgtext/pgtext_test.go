package pgtext

import (
	"encoding/json"
	"testing"
)

func TestCheck(t *testing.T) {
	for s, ok := range map[string]bool{"": true, "héllo ✓": true, "a\x00b": false, "a\xffb": false} {
		if got := Check(s) == nil; got != ok {
			t.Errorf("Check(%q) ok = %v, want %v", s, got, ok)
		}
	}
}

func TestJSONHasNUL(t *testing.T) {
	for v, want := range map[string]bool{
		"plain": false, "a\x00b": true, `\u0000`: false, `\` + "\x00": true, `\\u0000`: false, "\x00\\": true,
	} {
		b, err := json.Marshal(map[string]string{"k": v})
		if err != nil {
			t.Fatal(err)
		}
		if got := JSONHasNUL(b); got != want {
			t.Errorf("JSONHasNUL(%s) = %v, want %v", b, got, want)
		}
	}
	if JSONHasNUL([]byte(`"\u00`)) {
		t.Error("a truncated escape is not a NUL")
	}
}

func FuzzJSONHasNUL(f *testing.F) {
	f.Add("a\x00b")
	f.Add(`\u0000`)
	f.Fuzz(func(t *testing.T, s string) {
		b, err := json.Marshal(s)
		if err != nil {
			t.Skip()
		}
		want := false
		for i := 0; i < len(s); i++ {
			if s[i] == 0 {
				want = true
			}
		}
		if got := JSONHasNUL(b); got != want {
			t.Errorf("JSONHasNUL(%s) = %v, want %v", b, got, want)
		}
	})
}
