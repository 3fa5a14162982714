package tenancy_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/justpg/justpg/tenancy"
)

var safeSchema = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func FuzzSlug(f *testing.F) {
	for _, s := range []string{"acme", "big-co", "a", "-", "a--b", `x"; DROP SCHEMA public; --`, "ACME", "a_b", "ä", strings.Repeat("z", 48), strings.Repeat("z", 49)} {
		f.Add(s)
	}
	m, err := tenancy.New(tenancy.Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := tenancy.ValidateSlug(s)
		schema, serr := m.SchemaName(s)
		if (err == nil) != (serr == nil) {
			t.Fatalf("ValidateSlug and SchemaName disagree on %q", s)
		}
		if err != nil {
			if !errors.Is(err, tenancy.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if !safeSchema.MatchString(schema) {
			t.Fatalf("slug %q gives unsafe schema name %q", s, schema)
		}
	})
}

func FuzzParseID(f *testing.F) {
	for _, s := range []string{"6ba7b810-9dad-11d1-80b4-00c04fd430c8", "", "x", "00000000-0000-0000-0000-000000000000",
		"6ba7b810-9dad-11d1-80b4-00c04fd430c8'--", "6ba7b8109dad11d180b400c04fd430c8", "urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := tenancy.ParseID(s)
		if err != nil {
			if !errors.Is(err, tenancy.ErrMalformedID) {
				t.Fatalf("error %v does not wrap ErrMalformedID", err)
			}
			return
		}
		if !strings.EqualFold(id.String(), s) {
			t.Fatalf("accepted %q as %s: only the canonical form is accepted", s, id)
		}
	})
}

func FuzzProtectSQL(f *testing.F) {
	for _, s := range []string{"notes", "public.notes", `x"; DROP TABLE y; --`, "a.b.c", ".", "", "\x00", `s"."t`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sql, err := tenancy.ProtectSQL(s)
		if err != nil {
			if !errors.Is(err, tenancy.ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		tb, err := tenancy.ParseTable(s)
		if err != nil {
			t.Fatalf("ProtectSQL accepted %q that ParseTable refuses: %v", s, err)
		}
		// Every statement names the table only in its quoted form, and the
		// quoted form is exactly what the name becomes.
		if strings.Count(sql, tb.Quoted()) != 7 {
			t.Fatalf("quoted table %s does not appear in every statement:\n%s", tb.Quoted(), sql)
		}
		rest := strings.ReplaceAll(sql, tb.Quoted(), "")
		if strings.Count(rest, ";\n") != 7 {
			t.Fatalf("the name %q changed the statement structure:\n%s", s, sql)
		}
	})
}
