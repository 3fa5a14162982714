package tenancy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/internal/ident"
	"github.com/justpg/justpg/internal/migrate"
	"github.com/justpg/justpg/internal/pgdb"
)

// createSchema creates a dedicated tenant schema, grants Config.AppRole on it
// and applies the app's migrations there.
func (m *Manager) createSchema(ctx context.Context, tx pgx.Tx, schema string) error {
	q, err := ident.Quote(schema)
	if err != nil {
		return fmt.Errorf("tenancy: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE SCHEMA `+q); err != nil {
		return fmt.Errorf("tenancy: creating schema %s: %w", q, err)
	}
	if m.cfg.AppRole != "" {
		if err := grantSchema(ctx, tx, q, ident.MustQuote(m.cfg.AppRole)); err != nil {
			return err
		}
	}
	if _, err := m.MigrateApp(ctx, tx, schema); err != nil {
		return err
	}
	return nil
}

func dropSchema(ctx context.Context, tx pgx.Tx, schema string) error {
	q, err := ident.Quote(schema)
	if err != nil {
		return fmt.Errorf("tenancy: %w", err)
	}
	if _, err := tx.Exec(ctx, `DROP SCHEMA IF EXISTS `+q+` CASCADE`); err != nil {
		return fmt.Errorf("tenancy: dropping schema %s: %w", q, err)
	}
	return nil
}

// MigrateApp applies Config.TenantMigrations to schema (the shared schema or
// a tenant's) and returns the names of the migrations it applied. It runs
// under that schema's migration lock, so concurrent runs are safe.
func (m *Manager) MigrateApp(ctx context.Context, db DB, schema string) ([]string, error) {
	if m.cfg.TenantMigrations == nil {
		return nil, ErrNoMigrations
	}
	done, err := migrate.Run(ctx, db, schema, migrate.Line{Name: m.line, FS: m.cfg.TenantMigrations})
	if err != nil {
		return nil, fmt.Errorf("tenancy: migrating schema %s: %w", schema, err)
	}
	names := make([]string, len(done))
	for i, d := range done {
		names[i] = d.File
	}
	return names, nil
}

// SchemaResult is the outcome of migrating one tenant schema.
type SchemaResult struct {
	Tenant  uuid.UUID
	Schema  string
	Applied []string // migration files applied
	Err     error    // nil on success
}

// MigrateReport is the outcome of MigrateTenants.
type MigrateReport struct {
	Results []SchemaResult // one per dedicated tenant, ordered by schema
}

// Failed returns the results that failed.
func (r *MigrateReport) Failed() []SchemaResult {
	var out []SchemaResult
	for _, s := range r.Results {
		if s.Err != nil {
			out = append(out, s)
		}
	}
	return out
}

// MigrateError reports the schemas MigrateTenants could not migrate; the
// others were migrated. errors.As finds it; Unwrap gives each schema's error.
type MigrateError struct {
	Failed []SchemaResult
}

// Error lists the failed schemas and the first error.
func (e *MigrateError) Error() string {
	names := make([]string, len(e.Failed))
	for i, f := range e.Failed {
		names[i] = f.Schema
	}
	return fmt.Sprintf("tenancy: %d tenant schema(s) failed to migrate: %s (first error: %v)",
		len(e.Failed), strings.Join(names, ", "), e.Failed[0].Err)
}

// Unwrap returns every schema's error.
func (e *MigrateError) Unwrap() []error {
	out := make([]error, len(e.Failed))
	for i, f := range e.Failed {
		out[i] = f.Err
	}
	return out
}

// MigrateTenants applies Config.TenantMigrations to every dedicated tenant
// schema (deleted tenants' too, until purged), parallelism schemas at a time
// (0 means 4), each in its own transaction under its own lock. A failing
// schema is reported and rolled back without stopping the others: the report
// lists every schema, and the error is a *MigrateError when any failed.
func (m *Manager) MigrateTenants(ctx context.Context, pool *pgxpool.Pool, parallelism int) (*MigrateReport, error) {
	if m.cfg.TenantMigrations == nil {
		return nil, ErrNoMigrations
	}
	if parallelism <= 0 {
		parallelism = 4
	}
	rows, err := pool.Query(ctx, `SELECT id, schema_name FROM `+m.qtenants+` WHERE schema_name IS NOT NULL ORDER BY schema_name`)
	if err != nil {
		return nil, fmt.Errorf("tenancy: listing tenant schemas: %w", err)
	}
	type target struct {
		ID     uuid.UUID
		Schema string
	}
	targets, err := pgx.CollectRows(rows, pgx.RowToStructByPos[target])
	if err != nil {
		return nil, fmt.Errorf("tenancy: listing tenant schemas: %w", err)
	}
	report := &MigrateReport{Results: make([]SchemaResult, len(targets))}
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(parallelism, len(targets)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				t := targets[i]
				res := SchemaResult{Tenant: t.ID, Schema: t.Schema}
				res.Applied, res.Err = m.MigrateApp(ctx, pool, t.Schema)
				if res.Err != nil {
					m.log.Error("tenancy: tenant schema migration failed", "schema", t.Schema, "tenant", t.ID, "err", res.Err)
				}
				report.Results[i] = res
			}
		}()
	}
	for i := range targets {
		if ctx.Err() != nil {
			report.Results[i] = SchemaResult{Tenant: targets[i].ID, Schema: targets[i].Schema, Err: ctx.Err()}
			continue
		}
		work <- i
	}
	close(work)
	wg.Wait()
	if failed := report.Failed(); len(failed) > 0 {
		return report, &MigrateError{Failed: failed}
	}
	return report, nil
}

// MoveReport says how many rows a move copied, per table.
type MoveReport struct {
	Rows map[string]int64 // by quoted destination table
}

// MoveToDedicated gives a shared tenant its own schema: in one transaction,
// holding the tenant's lock exclusively (its running transactions finish
// first, new ones wait), it creates and migrates the schema, copies the
// tenant's rows of every protected table of Config.SharedSchema that the
// schema also has (parents before children), deletes them from the shared
// tables, and switches the tenant to Dedicated. Any failure rolls all of it
// back. Run it with the role that owns the tables.
func (m *Manager) MoveToDedicated(ctx context.Context, db DB, id uuid.UUID) (*MoveReport, error) {
	if m.cfg.TenantMigrations == nil {
		return nil, ErrNoMigrations
	}
	var rep *MoveReport
	err := pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		t, err := m.lockTenant(ctx, tx, id)
		if err != nil {
			return err
		}
		if t.Isolation == Dedicated {
			return fmt.Errorf("%w: %s is already dedicated", ErrIsolation, t.Slug)
		}
		schema, err := m.SchemaName(t.Slug)
		if err != nil {
			return err
		}
		if err := m.createSchema(ctx, tx, schema); err != nil {
			return err
		}
		if rep, err = m.copyRows(ctx, tx, id, m.cfg.SharedSchema, schema); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE `+m.qtenants+` SET isolation = 'dedicated', schema_name = $2, updated_at = now() WHERE id = $1`, id, schema)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tenancy: move to dedicated: %w", err)
	}
	return rep, nil
}

// MoveToShared is the reverse of MoveToDedicated: it copies the tenant's
// rows from its schema into the shared tables, drops the schema and switches
// the tenant to Shared, in one transaction under the tenant's lock. Rows
// whose keys collide with other tenants' shared rows make it fail and roll
// back (use UUID keys in per-tenant tables).
func (m *Manager) MoveToShared(ctx context.Context, db DB, id uuid.UUID) (*MoveReport, error) {
	var rep *MoveReport
	err := pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		t, err := m.lockTenant(ctx, tx, id)
		if err != nil {
			return err
		}
		if t.Isolation == Shared {
			return fmt.Errorf("%w: %s is already shared", ErrIsolation, t.Slug)
		}
		if rep, err = m.copyRows(ctx, tx, id, t.Schema, m.cfg.SharedSchema); err != nil {
			return err
		}
		if err := dropSchema(ctx, tx, t.Schema); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE `+m.qtenants+` SET isolation = 'shared', schema_name = NULL, updated_at = now() WHERE id = $1`, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("tenancy: move to shared: %w", err)
	}
	return rep, nil
}

// copyRows moves the tenant's rows of the protected tables of from that also
// exist (protected) in to. The filter on tenant_id is explicit, so it is
// right whatever the role; app.tenant_id is set too so that FORCEd policies
// let the owner read and write them.
func (m *Manager) copyRows(ctx context.Context, tx pgx.Tx, id uuid.UUID, from, to string) (*MoveReport, error) {
	if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true)`, id.String()); err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, `SELECT c.relname FROM pg_policy p
		JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE p.polname = $1 AND n.nspname = $2
		  AND EXISTS (SELECT 1 FROM pg_policy p2 JOIN pg_class c2 ON c2.oid = p2.polrelid
		              JOIN pg_namespace n2 ON n2.oid = c2.relnamespace
		              WHERE p2.polname = $1 AND n2.nspname = $3 AND c2.relname = c.relname)`, PolicyName, from, to)
	if err != nil {
		return nil, fmt.Errorf("listing tables to move: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("listing tables to move: %w", err)
	}
	ordered, err := fkOrder(ctx, tx, to, names)
	if err != nil {
		return nil, err
	}
	rep := &MoveReport{Rows: map[string]int64{}}
	for _, name := range ordered {
		src, dst := Table{Schema: from, Name: name}, Table{Schema: to, Name: name}
		var cols []string
		err := tx.QueryRow(ctx, `SELECT coalesce(pg_catalog.array_agg(pg_catalog.quote_ident(a.attname) ORDER BY a.attnum), '{}')
			FROM pg_catalog.pg_attribute a
			WHERE a.attrelid = pg_catalog.to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
			  AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute b WHERE b.attrelid = pg_catalog.to_regclass($2) AND b.attname = a.attname
			              AND b.attnum > 0 AND NOT b.attisdropped AND b.attgenerated = '')`,
			dst.Quoted(), src.Quoted()).Scan(&cols)
		if err != nil {
			return nil, fmt.Errorf("columns of %s: %w", dst.Quoted(), err)
		}
		list := strings.Join(cols, ", ")
		tag, err := tx.Exec(ctx, `INSERT INTO `+dst.Quoted()+` (`+list+`) OVERRIDING SYSTEM VALUE SELECT `+list+
			` FROM `+src.Quoted()+` WHERE tenant_id = $1`, id)
		if err != nil {
			return nil, fmt.Errorf("copying %s to %s: %w", src.Quoted(), dst.Quoted(), err)
		}
		rep.Rows[dst.Quoted()] = tag.RowsAffected()
	}
	for i := len(ordered) - 1; i >= 0; i-- {
		src := Table{Schema: from, Name: ordered[i]}
		tag, err := tx.Exec(ctx, `DELETE FROM `+src.Quoted()+` WHERE tenant_id = $1`, id)
		if err != nil {
			return nil, fmt.Errorf("removing moved rows from %s: %w", src.Quoted(), err)
		}
		if want := rep.Rows[Table{Schema: to, Name: ordered[i]}.Quoted()]; tag.RowsAffected() != want {
			return nil, fmt.Errorf("removing moved rows from %s: deleted %d rows, copied %d", src.Quoted(), tag.RowsAffected(), want)
		}
	}
	return rep, nil
}

// fkOrder orders tables of schema so that referenced tables come before the
// tables referencing them.
func fkOrder(ctx context.Context, tx pgx.Tx, schema string, names []string) ([]string, error) {
	rows, err := tx.Query(ctx, `SELECT c.relname, r.relname FROM pg_constraint k
		JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class r ON r.oid = k.confrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE k.contype = 'f' AND n.nspname = $1 AND r.relnamespace = c.relnamespace AND c.oid <> r.oid`, schema)
	if err != nil {
		return nil, fmt.Errorf("reading foreign keys: %w", err)
	}
	deps := map[string][]string{}
	var child, parent string
	if _, err := pgx.ForEachRow(rows, []any{&child, &parent}, func() error {
		deps[child] = append(deps[child], parent)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("reading foreign keys: %w", err)
	}
	in := map[string]bool{}
	for _, n := range names {
		in[n] = true
	}
	sort.Strings(names)
	var out []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(n string) error
	visit = func(n string) error {
		switch state[n] {
		case 1:
			return errors.New("tenancy: foreign keys between per-tenant tables form a cycle; move them by hand")
		case 2:
			return nil
		}
		state[n] = 1
		for _, p := range deps[n] {
			if in[p] {
				if err := visit(p); err != nil {
					return err
				}
			}
		}
		state[n] = 2
		out = append(out, n)
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return out, nil
}
