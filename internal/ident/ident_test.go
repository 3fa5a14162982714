package ident_test

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/ident"
	"github.com/justpg/justpg/internal/pgtest"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"a", "jobs", "My Schema", `we"ird`, "ünïcödé", strings.Repeat("x", 63), "1abc", "a;DROP TABLE x"} {
		assert.NoError(t, ident.Validate(ok), ok)
	}
	for _, bad := range []string{"", strings.Repeat("x", 64), "a\x00b", "tab\there", "new\nline", "\xff\xfe", "del\x7f"} {
		assert.ErrorIs(t, ident.Validate(bad), ident.ErrInvalid, "%q", bad)
	}
}

func TestQuote(t *testing.T) {
	t.Parallel()
	q, err := ident.Quote("my schema", `ta"ble`)
	require.NoError(t, err)
	assert.Equal(t, `"my schema"."ta""ble"`, q)
	_, err = ident.Quote("ok", "")
	require.ErrorIs(t, err, ident.ErrInvalid)
	assert.Panics(t, func() { ident.MustQuote("") })
}

// Quoted names and literals reach PostgreSQL as exactly the text the caller
// passed, whatever it contains.
func TestQuoteAndLiteralRoundTripThroughPostgres(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	ctx := context.Background()
	for _, name := range []string{`x"; DROP TABLE t; --`, `back\slash`, "ユニコード", `'quote'`, "Mixed Case"} {
		q := ident.MustQuote(name)
		_, err := db.Pool.Exec(ctx, "CREATE TABLE "+q+" (v text)")
		require.NoError(t, err, name)
		var got string
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT relname FROM pg_class WHERE oid = $1::regclass`, q).Scan(&got))
		assert.Equal(t, name, got)

		lit, err := ident.Literal(name)
		require.NoError(t, err)
		require.NoError(t, db.Pool.QueryRow(ctx, "SELECT "+lit).Scan(&got))
		assert.Equal(t, name, got)
	}
	// A backslash literal means the same with standard_conforming_strings off.
	_, err := db.Pool.Exec(ctx, `SET standard_conforming_strings = off`)
	require.NoError(t, err)
	lit, err := ident.Literal(`a\'; SELECT 1; --`)
	require.NoError(t, err)
	// pgx refuses the simple protocol on a session with
	// standard_conforming_strings off: under JUSTPG_TEST_EXEC_MODE=simple
	// this query goes in exec mode.
	var mode []any
	if pgtest.InExecMode(pgx.QueryExecModeSimpleProtocol) {
		mode = []any{pgx.QueryExecModeExec}
	}
	var got string
	require.NoError(t, db.Pool.QueryRow(ctx, "SELECT "+lit, mode...).Scan(&got))
	assert.Equal(t, `a\'; SELECT 1; --`, got)
	_, err = ident.Literal("nul\x00")
	require.ErrorIs(t, err, ident.ErrInvalid)
}

func FuzzQuote(f *testing.F) {
	for _, s := range []string{"a", `"`, `""`, "a.b", "x\x00", strings.Repeat("é", 40), `\`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		q, err := ident.Quote(name)
		if err != nil {
			if ident.Validate(name) == nil {
				t.Fatalf("Quote failed on a valid name %q: %v", name, err)
			}
			return
		}
		if !utf8.ValidString(name) || len(name) == 0 || len(name) > ident.MaxLen {
			t.Fatalf("Quote accepted %q", name)
		}
		// The quoted form is "…" with every inner quote doubled: undoing
		// that gives back the name, so nothing can escape the quotes.
		if len(q) < 2 || q[0] != '"' || q[len(q)-1] != '"' {
			t.Fatalf("not quoted: %s", q)
		}
		inner := q[1 : len(q)-1]
		if strings.ReplaceAll(strings.ReplaceAll(inner, `""`, ""), `"`, "X") != strings.ReplaceAll(inner, `""`, "") {
			t.Fatalf("lone quote inside %s", q)
		}
		if strings.ReplaceAll(inner, `""`, `"`) != name {
			t.Fatalf("quoted %q as %s", name, q)
		}
	})
}

func FuzzLiteral(f *testing.F) {
	for _, s := range []string{"", "'", `\'`, "a''b", "\\\\'"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lit, err := ident.Literal(s)
		if err != nil {
			if !strings.ContainsRune(s, 0) {
				t.Fatalf("Literal(%q): %v", s, err)
			}
			return
		}
		body := strings.TrimPrefix(lit, "E")
		if len(body) < 2 || body[0] != '\'' || body[len(body)-1] != '\'' {
			t.Fatalf("not a literal: %s", lit)
		}
		inner := body[1 : len(body)-1]
		if strings.Contains(strings.ReplaceAll(inner, "''", ""), "'") {
			t.Fatalf("lone quote in %s", lit)
		}
		if strings.HasPrefix(lit, "E") {
			inner = strings.ReplaceAll(inner, `\\`, `\`)
		} else if strings.Contains(inner, `\`) {
			t.Fatalf("backslash in a non-E literal: %s", lit)
		}
		if strings.ReplaceAll(inner, "''", "'") != s {
			t.Fatalf("Literal(%q) = %s", s, lit)
		}
	})
}
