package pgtest

import (
	"fmt"
	"strings"
)

// ShadowingSQL returns statements that create, in schema, functions,
// aggregates and operators shadowing built-ins the way a role allowed to
// create objects there could (every role in public before PostgreSQL 15):
// each matches a common call more closely than pg_catalog's polymorphic or
// variadic version, so a statement or function that names the built-in
// unqualified, with schema on its search_path, calls it instead. Each raises
// an error naming itself ("shadowing unnest(text[]) ran as <role>").
//
// The set: unnest, cardinality, array_length, array_fill, to_jsonb, array_agg
// and jsonb_agg for arrays and values of common types; text || x and x ||
// text for those types; jsonb_build_array(jsonb); quote_ident(name);
// format(text, regclass); power(integer, integer); bigint * interval,
// integer * interval and numeric * integer.
func ShadowingSQL(schema string) string {
	q := strings.ReplaceAll(schema, `"`, `""`)
	var b strings.Builder
	fail := func(what string) string {
		return fmt.Sprintf("$$ BEGIN RAISE EXCEPTION 'shadowing %s ran as %%', current_user; END $$", what)
	}
	fn := func(sig, ret, what string) {
		fmt.Fprintf(&b, "CREATE FUNCTION \"%s\".%s RETURNS %s LANGUAGE plpgsql AS %s;\n", q, sig, ret, fail(what))
	}
	for _, typ := range []string{"text", "bytea", "bigint", "smallint", "integer", "jsonb", "timestamptz",
		"boolean", "uuid", "real", "numeric", "double precision", "name"} {
		id := strings.ReplaceAll(typ, " ", "_")
		fn(fmt.Sprintf("unnest(%s[])", typ), "SETOF "+typ, "unnest("+typ+"[])")
		fn(fmt.Sprintf("cardinality(%s[])", typ), "integer", "cardinality("+typ+"[])")
		fn(fmt.Sprintf("array_length(%s[], integer)", typ), "integer", "array_length("+typ+"[])")
		fn(fmt.Sprintf("array_fill(%s, integer[])", typ), typ+"[]", "array_fill("+typ+")")
		fn(fmt.Sprintf("to_jsonb(%s)", typ), "jsonb", "to_jsonb("+typ+")")
		fn(fmt.Sprintf("shadow_array_agg_%s(%s[], %s)", id, typ, typ), typ+"[]", "array_agg("+typ+")")
		fmt.Fprintf(&b, "CREATE AGGREGATE \"%s\".array_agg(%s) (SFUNC = \"%s\".shadow_array_agg_%s, STYPE = %s[]);\n", q, typ, q, id, typ)
		fn(fmt.Sprintf("shadow_jsonb_agg_%s(jsonb, %s)", id, typ), "jsonb", "jsonb_agg("+typ+")")
		fmt.Fprintf(&b, "CREATE AGGREGATE \"%s\".jsonb_agg(%s) (SFUNC = \"%s\".shadow_jsonb_agg_%s, STYPE = jsonb);\n", q, typ, q, id)
		if typ != "text" {
			fn(fmt.Sprintf("shadow_cat_%s(text, %s)", id, typ), "text", "text || "+typ)
			fmt.Fprintf(&b, "CREATE OPERATOR \"%s\".|| (LEFTARG = text, RIGHTARG = %s, FUNCTION = \"%s\".shadow_cat_%s);\n", q, typ, q, id)
			fn(fmt.Sprintf("shadow_rcat_%s(%s, text)", id, typ), "text", typ+" || text")
			fmt.Fprintf(&b, "CREATE OPERATOR \"%s\".|| (LEFTARG = %s, RIGHTARG = text, FUNCTION = \"%s\".shadow_rcat_%s);\n", q, typ, q, id)
		}
	}
	fn("jsonb_build_array(jsonb)", "jsonb", "jsonb_build_array(jsonb)")
	fn("quote_ident(name)", "text", "quote_ident(name)")
	fn("format(text, regclass)", "text", "format(text, regclass)")
	fn("power(integer, integer)", "double precision", "power(integer, integer)")
	fn("shadow_mul_numeric_integer(numeric, integer)", "numeric", "numeric * integer")
	fmt.Fprintf(&b, "CREATE OPERATOR \"%s\".* (LEFTARG = numeric, RIGHTARG = integer, FUNCTION = \"%s\".shadow_mul_numeric_integer);\n", q, q)
	for _, typ := range []string{"bigint", "integer"} {
		fn(fmt.Sprintf("shadow_mul_%s(%s, interval)", typ, typ), "interval", typ+" * interval")
		fmt.Fprintf(&b, "CREATE OPERATOR \"%s\".* (LEFTARG = %s, RIGHTARG = interval, FUNCTION = \"%s\".shadow_mul_%s);\n", q, typ, q, typ)
	}
	return b.String()
}

// SearchPathCase is one kind of session the search_path tests run a
// package's API in.
type SearchPathCase struct {
	Name string
	// SearchPath is the sessions' search_path ("" leaves the default,
	// "$user", public).
	SearchPath string
	// Shadow: public holds ShadowingSQL's objects, planted by the test.
	Shadow bool
}

// SearchPathCases are the sessions every package's search_path test runs
// in: only the application's own schema (app, which the test creates), no
// schema at all, pg_catalog alone, and the default path with public
// holding objects that shadow built-ins, as a role allowed to create there
// could plant them.
var SearchPathCases = []SearchPathCase{
	{"app", "app", false},
	{"empty", "''", false},
	{"pg_catalog", "pg_catalog", false},
	{"shadowed public", "", true},
}

// SetupSQL creates the schema app and, for a Shadow case, ShadowingSQL's
// objects in public: what a test runs, as the database's owner, before
// using the API in the case's sessions.
func (c SearchPathCase) SetupSQL() string {
	if c.Shadow {
		return "CREATE SCHEMA app;\n" + ShadowingSQL("public")
	}
	return "CREATE SCHEMA app"
}
