package tenancy

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// ExportReport says how many rows Export wrote, per table.
type ExportReport struct {
	Rows map[string]int64 // by quoted table name
}

// Export streams the tenant's rows of every protected table it can have
// rows in to w, in the format of pg_dump's data section (one block per
// table: "COPY table (columns) FROM stdin;", rows in COPY text format, then
// "\."), so psql can load it back. It runs through WithTenantTx on db (the
// application role is enough): row-level security and an explicit filter on
// tenant_id both restrict every COPY to the tenant. The tables are read one
// after another in one REPEATABLE READ READ ONLY transaction, so every table
// is read from the same snapshot: a write committed while the export runs
// is in all of it or in none of it (a row moved from one table to another
// is exported once, a parent is never missing for its child). Nothing is
// held in memory.
func (m *Manager) Export(ctx context.Context, db DB, tenant uuid.UUID, w io.Writer) (*ExportReport, error) {
	rep := &ExportReport{Rows: map[string]int64{}}
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	err := m.WithTenantTx(ctx, db, tenant, opts, func(tx pgx.Tx) error {
		tables, err := m.protectedTables(ctx, tx, tenant, "")
		if err != nil {
			return err
		}
		for _, t := range tables {
			var cols []string
			err := tx.QueryRow(ctx, `SELECT coalesce(pg_catalog.array_agg(pg_catalog.quote_ident(attname) ORDER BY attnum), '{}') FROM pg_catalog.pg_attribute
				WHERE attrelid = pg_catalog.to_regclass($1) AND attnum > 0 AND NOT attisdropped AND attgenerated = ''`, t.Quoted()).Scan(&cols)
			if err != nil {
				return fmt.Errorf("tenancy: export: columns of %s: %w", t.Quoted(), err)
			}
			list := strings.Join(cols, ", ")
			if _, err := fmt.Fprintf(w, "COPY %s (%s) FROM stdin;\n", t.Quoted(), list); err != nil {
				return fmt.Errorf("tenancy: export: %w", err)
			}
			tag, err := tx.Conn().PgConn().CopyTo(ctx, w, `COPY (SELECT `+list+` FROM `+t.Quoted()+
				` WHERE tenant_id = `+CurrentTenantSQL+`) TO STDOUT`)
			if err != nil {
				return fmt.Errorf("tenancy: export %s: %w", t.Quoted(), err)
			}
			rep.Rows[t.Quoted()] = tag.RowsAffected()
			if _, err := io.WriteString(w, "\\.\n\n"); err != nil {
				return fmt.Errorf("tenancy: export: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rep, nil
}
