// Package pgtext checks text and JSON for what PostgreSQL cannot store: a
// NUL character (in text, or escaped as \u0000 in jsonb) and invalid UTF-8
// (in a UTF-8 database). Packages call it to refuse such input with their
// own invalid-input error instead of a database error.
package pgtext

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// Check returns nil if PostgreSQL can store s as text, or an error naming
// the problem.
func Check(s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return errors.New("contains a NUL character")
	}
	if !utf8.ValidString(s) {
		return errors.New("is not valid UTF-8")
	}
	return nil
}

// JSONHasNUL reports whether JSON text holds an escaped NUL (\u0000),
// which jsonb refuses. An escaped backslash followed by "u0000" is not one.
func JSONHasNUL(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if i+5 < len(b) && b[i+1] == 'u' && string(b[i+2:i+6]) == "0000" {
			return true
		}
		i++ // skip the escaped character
	}
	return false
}
