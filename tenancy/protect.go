package tenancy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/justpg/justpg/internal/ident"
	"github.com/justpg/justpg/internal/pgdb"
)

// Table names a table, optionally schema-qualified.
type Table struct {
	Schema string // "" means resolved through search_path
	Name   string
}

// Quoted returns the table's quoted, possibly qualified name.
func (t Table) Quoted() string {
	if t.Schema == "" {
		return pgx.Identifier{t.Name}.Sanitize()
	}
	return pgx.Identifier{t.Schema, t.Name}.Sanitize()
}

// String returns the quoted name.
func (t Table) String() string { return t.Quoted() }

// ParseTable parses "name" or "schema.name" (names containing dots are not
// supported) and validates each part.
func ParseTable(s string) (Table, error) {
	var t Table
	if i := strings.IndexByte(s, '.'); i >= 0 {
		t.Schema, t.Name = s[:i], s[i+1:]
		if err := ident.Validate(t.Schema); err != nil {
			return Table{}, fmt.Errorf("%w: table %q: %v", ErrInvalid, truncate(s), err)
		}
	} else {
		t.Name = s
	}
	if err := ident.Validate(t.Name); err != nil {
		return Table{}, fmt.Errorf("%w: table %q: %v", ErrInvalid, truncate(s), err)
	}
	return t, nil
}

// indexName is <table>_tenant_id_idx, shortened with a hash when that would
// pass PostgreSQL's 63-byte limit (which would otherwise truncate silently).
func indexName(table string) string {
	n := table + "_tenant_id_idx"
	if len(n) <= ident.MaxLen {
		return n
	}
	sum := sha256.Sum256([]byte(table))
	short := table
	for len(short) > 40 {
		short = short[:len(short)-1]
	}
	for !validUTF8Prefix(short) {
		short = short[:len(short)-1]
	}
	return short + "_" + hex.EncodeToString(sum[:4]) + "_tenant_id_idx"
}

func validUTF8Prefix(s string) bool { return strings.ToValidUTF8(s, "\x00") == s }

// ProtectSQL returns the DDL Protect runs for table ("name" or
// "schema.name"), for teams that keep it in their own migration history:
//
//   - the tenant_id column, added when missing, defaulting to the current
//     tenant (TenantIDColumnSQL);
//   - ENABLE and FORCE ROW LEVEL SECURITY (FORCE makes the owner subject to
//     the policy too);
//   - one policy for all commands whose USING and WITH CHECK compare
//     tenant_id with CurrentTenantSQL: rows of other tenants are invisible,
//     and inserting or moving a row to another tenant is refused;
//   - an index on tenant_id.
//
// The statements are idempotent. On a large live table, create the index
// CONCURRENTLY beforehand (outside a transaction) under the same name.
func ProtectSQL(table string) (string, error) {
	t, err := ParseTable(table)
	if err != nil {
		return "", err
	}
	q := t.Quoted()
	idx := pgx.Identifier{indexName(t.Name)}.Sanitize()
	policy := pgx.Identifier{PolicyName}.Sanitize()
	var b strings.Builder
	fmt.Fprintf(&b, "ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s;\n", q, TenantIDColumnSQL)
	fmt.Fprintf(&b, "ALTER TABLE %s ALTER COLUMN tenant_id SET DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid;\n", q)
	fmt.Fprintf(&b, "ALTER TABLE %s ENABLE ROW LEVEL SECURITY;\n", q)
	fmt.Fprintf(&b, "ALTER TABLE %s FORCE ROW LEVEL SECURITY;\n", q)
	fmt.Fprintf(&b, "DROP POLICY IF EXISTS %s ON %s;\n", policy, q)
	fmt.Fprintf(&b, "CREATE POLICY %s ON %s AS PERMISSIVE FOR ALL\n    USING (tenant_id = %s)\n    WITH CHECK (tenant_id = %s);\n",
		policy, q, CurrentTenantSQL, CurrentTenantSQL)
	fmt.Fprintf(&b, "CREATE INDEX IF NOT EXISTS %s ON %s (tenant_id);\n", idx, q)
	return b.String(), nil
}

// Protect applies ProtectSQL(table) in one transaction (a savepoint when db
// is a transaction). Run it with the role that owns the table.
func Protect(ctx context.Context, db DB, table string) error {
	sql, err := ProtectSQL(table)
	if err != nil {
		return err
	}
	t, _ := ParseTable(table)
	return pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		var typ *string
		err := tx.QueryRow(ctx, `SELECT (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
			WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
			FROM (SELECT to_regclass($1) AS oid) c WHERE c.oid IS NOT NULL`, t.Quoted()).Scan(&typ)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("tenancy: protect: table %s does not exist", t.Quoted())
		}
		if err != nil {
			return fmt.Errorf("tenancy: protect %s: %w", t.Quoted(), err)
		}
		if typ != nil && *typ != "uuid" {
			return fmt.Errorf("%w: protect: %s.tenant_id has type %s, want uuid", ErrInvalid, t.Quoted(), *typ)
		}
		// Simple protocol: several statements, no parameters.
		if _, err := tx.Exec(ctx, sql, pgx.QueryExecModeSimpleProtocol); err != nil {
			return fmt.Errorf("tenancy: protect %s: %w", t.Quoted(), err)
		}
		return nil
	})
}

// ProtectedTable is a table carrying the tenancy policy.
type ProtectedTable struct {
	Table
	Enabled bool // ROW LEVEL SECURITY enabled
	Forced  bool // FORCE ROW LEVEL SECURITY
	Owner   string
}

// ProtectedTables lists the tables that carry the tenancy policy, in every
// schema.
func ProtectedTables(ctx context.Context, db DB) ([]ProtectedTable, error) {
	rows, err := db.Query(ctx, `SELECT n.nspname, c.relname, c.relrowsecurity, c.relforcerowsecurity,
			pg_get_userbyid(c.relowner)
		FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE p.polname = $1 ORDER BY 1, 2`, PolicyName)
	if err != nil {
		return nil, fmt.Errorf("tenancy: listing protected tables: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ProtectedTable, error) {
		var p ProtectedTable
		err := r.Scan(&p.Schema, &p.Name, &p.Enabled, &p.Forced, &p.Owner)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("tenancy: listing protected tables: %w", err)
	}
	return out, nil
}

// Unprotected lists tables that have a tenant_id column but not the tenancy
// policy (or have it with row-level security disabled), outside the system
// schemas. An empty result means every per-tenant table is protected.
func Unprotected(ctx context.Context, db DB) ([]Table, error) {
	rows, err := db.Query(ctx, `SELECT n.nspname, c.relname
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
		WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
		  AND n.nspname NOT LIKE E'pg\\_%'
		  AND (NOT c.relrowsecurity OR NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid AND p.polname = $1))
		ORDER BY 1, 2`, PolicyName)
	if err != nil {
		return nil, fmt.Errorf("tenancy: listing unprotected tables: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Table])
	if err != nil {
		return nil, fmt.Errorf("tenancy: listing unprotected tables: %w", err)
	}
	return out, nil
}

// Check refuses (with a *BypassError wrapping ErrBypass) a connection whose
// role would bypass row-level security: a superuser, a role with BYPASSRLS,
// or the owner (or a member of the owner) of a protected table that is not
// FORCEd or has row-level security disabled. Call it at start-up on the pool
// the application runs tenant-scoped work on. WithTenant repeats the
// superuser and BYPASSRLS part in every transaction.
func Check(ctx context.Context, db DB) error {
	var role string
	var super, bypass bool
	err := db.QueryRow(ctx, `SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user`).
		Scan(&role, &super, &bypass)
	if err != nil {
		return fmt.Errorf("tenancy: checking the role: %w", err)
	}
	var reasons []string
	if super {
		reasons = append(reasons, "it is a superuser")
	}
	if bypass {
		reasons = append(reasons, "it has BYPASSRLS")
	}
	rows, err := db.Query(ctx, `SELECT n.nspname, c.relname, c.relrowsecurity, c.relforcerowsecurity,
			pg_has_role(current_user, c.relowner, 'USAGE')
		FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE p.polname = $1 ORDER BY 1, 2`, PolicyName)
	if err != nil {
		return fmt.Errorf("tenancy: checking protected tables: %w", err)
	}
	var schema, name string
	var enabled, forced, owns bool
	_, err = pgx.ForEachRow(rows, []any{&schema, &name, &enabled, &forced, &owns}, func() error {
		t := Table{Schema: schema, Name: name}.Quoted()
		switch {
		case !enabled:
			reasons = append(reasons, "row level security is disabled on "+t)
		case owns && !forced:
			reasons = append(reasons, "it owns "+t+", which is not FORCE ROW LEVEL SECURITY")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("tenancy: checking protected tables: %w", err)
	}
	if len(reasons) > 0 {
		return &BypassError{Role: role, Reasons: reasons}
	}
	return nil
}

// AppRole describes the role the application connects as for tenant-scoped
// work.
type AppRole struct {
	// Name of the role (created when missing).
	Name string
	// Password, when set, lets the role log in with it; LOGIN is granted
	// either way.
	Password string
	// Schemas whose tables and sequences the role may read and write (now
	// and, through default privileges, tables the current role creates
	// there later). The package schema gets read access to the tenants
	// table only.
	Schemas []string
}

// CreateAppRole creates (or completes) the application role: LOGIN,
// NOSUPERUSER, NOBYPASSRLS, owning nothing, with USAGE and
// SELECT/INSERT/UPDATE/DELETE on the tables of the given schemas, their
// sequences, and what WithTenant needs in the package schema. It refuses an
// existing role that is a superuser or has BYPASSRLS. Run it as the role
// that owns the tables (it needs CREATEROLE).
func (m *Manager) CreateAppRole(ctx context.Context, db DB, r AppRole) error {
	qrole, err := ident.Quote(r.Name)
	if err != nil {
		return fmt.Errorf("%w: app role: %w", ErrInvalid, err)
	}
	schemas := make([]string, len(r.Schemas))
	for i, s := range r.Schemas {
		if schemas[i], err = ident.Quote(s); err != nil {
			return fmt.Errorf("%w: app role schema: %w", ErrInvalid, err)
		}
	}
	return pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		var exists, super, bypass bool
		err := tx.QueryRow(ctx, `SELECT count(*) > 0, coalesce(bool_or(rolsuper), false), coalesce(bool_or(rolbypassrls), false)
			FROM pg_roles WHERE rolname = $1`, r.Name).Scan(&exists, &super, &bypass)
		if err != nil {
			return fmt.Errorf("tenancy: app role: %w", err)
		}
		if super || bypass {
			return &BypassError{Role: r.Name, Reasons: []string{"the existing role is a superuser or has BYPASSRLS; use another role"}}
		}
		verb := "CREATE"
		if exists {
			verb = "ALTER"
		}
		stmt := verb + " ROLE " + qrole + " LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB"
		if r.Password != "" {
			lit, err := ident.Literal(r.Password)
			if err != nil {
				return fmt.Errorf("tenancy: app role password: %w", err)
			}
			stmt += " PASSWORD " + lit // CREATE ROLE takes no bind parameter
		}
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("tenancy: app role: %w", err)
		}
		for _, s := range schemas {
			if err := grantSchema(ctx, tx, s, qrole); err != nil {
				return err
			}
		}
		for _, g := range []string{
			`GRANT USAGE ON SCHEMA ` + m.qschema + ` TO ` + qrole,
			`GRANT SELECT ON ` + m.qtenants + ` TO ` + qrole,
			`REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ` + m.qtenants + ` FROM ` + qrole,
			`REVOKE ALL ON ` + m.qaccess + ` FROM ` + qrole,
			`GRANT EXECUTE ON FUNCTION ` + m.qenter + `(uuid) TO ` + qrole,
		} {
			if _, err := tx.Exec(ctx, g); err != nil {
				return fmt.Errorf("tenancy: app role grants: %w", err)
			}
		}
		return nil
	})
}

// SystemRole describes the role of the background components that serve
// every tenant (job workers, the realtime listener, the files janitor, backup
// drills): it bypasses row-level security and is used on a pool of its own,
// for nothing else (see the package documentation).
type SystemRole struct {
	// Name of the role (created when missing).
	Name string
	// Password, when set, lets the role log in with it; LOGIN is granted
	// either way.
	Password string
	// Schemas whose tables and sequences the role may read and write (now
	// and, through default privileges, tables the current role creates
	// there later): the justpg schema of the background components, and
	// the application's schemas if its jobs touch them outside a tenant.
	Schemas []string
}

// CreateSystemRole creates (or completes) the system role: LOGIN,
// NOSUPERUSER, BYPASSRLS, NOCREATEROLE, owning nothing, with USAGE and
// SELECT/INSERT/UPDATE/DELETE on the tables and sequences of the given
// schemas. It refuses an existing superuser (demoting it could lock the
// owner out; give the system role its own name) and the current role. The
// role sees every tenant's rows, so WithTenant and Check refuse it; keep it
// on its own pool and hand per-tenant work to WithTenant on the application
// pool. Creating a role with BYPASSRLS takes a superuser.
func (m *Manager) CreateSystemRole(ctx context.Context, db DB, r SystemRole) error {
	qrole, err := ident.Quote(r.Name)
	if err != nil {
		return fmt.Errorf("%w: system role: %w", ErrInvalid, err)
	}
	schemas := make([]string, len(r.Schemas))
	for i, s := range r.Schemas {
		if schemas[i], err = ident.Quote(s); err != nil {
			return fmt.Errorf("%w: system role schema: %w", ErrInvalid, err)
		}
	}
	return pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		var exists, super, self bool
		err := tx.QueryRow(ctx, `SELECT count(*) > 0, coalesce(bool_or(rolsuper), false), $1 = current_user
			FROM pg_roles WHERE rolname = $1`, r.Name).Scan(&exists, &super, &self)
		if err != nil {
			return fmt.Errorf("tenancy: system role: %w", err)
		}
		if super || self {
			return fmt.Errorf("%w: system role %q is a superuser or the current role; give the system role a name of its own", ErrInvalid, r.Name)
		}
		verb := "CREATE"
		if exists {
			verb = "ALTER"
		}
		stmt := verb + " ROLE " + qrole + " LOGIN NOSUPERUSER BYPASSRLS NOCREATEROLE NOCREATEDB"
		if r.Password != "" {
			lit, err := ident.Literal(r.Password)
			if err != nil {
				return fmt.Errorf("tenancy: system role password: %w", err)
			}
			stmt += " PASSWORD " + lit // CREATE ROLE takes no bind parameter
		}
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("tenancy: system role: %w", err)
		}
		for _, s := range schemas {
			if err := grantSchema(ctx, tx, s, qrole); err != nil {
				return err
			}
		}
		return nil
	})
}

func grantSchema(ctx context.Context, tx pgx.Tx, qschema, qrole string) error {
	for _, g := range []string{
		`GRANT USAGE ON SCHEMA ` + qschema + ` TO ` + qrole,
		`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ` + qschema + ` TO ` + qrole,
		`GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA ` + qschema + ` TO ` + qrole,
		`ALTER DEFAULT PRIVILEGES IN SCHEMA ` + qschema + ` GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ` + qrole,
		`ALTER DEFAULT PRIVILEGES IN SCHEMA ` + qschema + ` GRANT USAGE, SELECT ON SEQUENCES TO ` + qrole,
	} {
		if _, err := tx.Exec(ctx, g); err != nil {
			return fmt.Errorf("tenancy: grants on %s: %w", qschema, err)
		}
	}
	return nil
}

// protectedTables lists the protected tables the tenant's rows can live in:
// those outside every other tenant's dedicated schema. With onlySchema set,
// only that schema's.
func (m *Manager) protectedTables(ctx context.Context, db DB, tenant uuid.UUID, onlySchema string) ([]Table, error) {
	rows, err := db.Query(ctx, `SELECT n.nspname, c.relname
		FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE p.polname = $1
		  AND ($3 = '' OR n.nspname = $3)
		  AND n.nspname NOT IN (SELECT schema_name FROM `+m.qtenants+` WHERE schema_name IS NOT NULL AND id <> $2)
		ORDER BY 1, 2`, PolicyName, tenant, onlySchema)
	if err != nil {
		return nil, fmt.Errorf("tenancy: listing protected tables: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Table])
	if err != nil {
		return nil, fmt.Errorf("tenancy: listing protected tables: %w", err)
	}
	return out, nil
}
