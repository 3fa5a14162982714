// Package ident validates and quotes SQL identifiers that come from callers:
// schema, table, column and channel names. Nothing a caller passes is ever
// concatenated into SQL without going through Quote.
package ident

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// MaxLen is PostgreSQL's identifier limit (NAMEDATALEN-1) in bytes. Longer
// names are silently truncated by the server, which could make two distinct
// names collide, so they are refused instead.
const MaxLen = 63

// ErrInvalid is wrapped by every validation error of this package.
var ErrInvalid = errors.New("invalid identifier")

// Validate reports whether name can be used as an identifier: non-empty, at
// most MaxLen bytes, valid UTF-8, and free of NUL and other control
// characters. Any other character is allowed because Quote makes it safe.
func Validate(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty name", ErrInvalid)
	case len(name) > MaxLen:
		return fmt.Errorf("%w: %q is longer than %d bytes", ErrInvalid, name, MaxLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: %q is not valid UTF-8", ErrInvalid, name)
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %q contains a control character", ErrInvalid, name)
		}
	}
	return nil
}

// Quote validates each part and returns them quoted and joined with dots,
// e.g. Quote("my schema", "t") == `"my schema"."t"`.
func Quote(parts ...string) (string, error) {
	for _, p := range parts {
		if err := Validate(p); err != nil {
			return "", err
		}
	}
	return pgx.Identifier(parts).Sanitize(), nil
}

// MustQuote is Quote for names fixed in code; it panics on an invalid name.
func MustQuote(parts ...string) string {
	q, err := Quote(parts...)
	if err != nil {
		panic(err)
	}
	return q
}

// Literal quotes s as an SQL string literal. It is only for the rare places
// where PostgreSQL accepts no bind parameter (DDL such as COMMENT ON or
// default values in generated SQL text); values in queries are always bound.
func Literal(s string) (string, error) {
	if strings.ContainsRune(s, 0) {
		return "", fmt.Errorf("%w: literal contains a NUL byte", ErrInvalid)
	}
	q := "'" + strings.ReplaceAll(s, "'", "''") + "'"
	if strings.Contains(s, `\`) {
		// An E'' string means the same whatever standard_conforming_strings is.
		q = "E" + strings.ReplaceAll(q, `\`, `\\`)
	}
	return q, nil
}
