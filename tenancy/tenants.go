package tenancy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/justpg/justpg/internal/pgdb"
	"github.com/justpg/justpg/internal/pgtext"
)

// Tenant is one customer.
type Tenant struct {
	ID   uuid.UUID
	Slug string
	Name string
	Plan string
	// Settings is free-form JSON for the application. One key is read by
	// this package: "statement_timeout_ms" (a non-negative integer), applied
	// to every transaction run as the tenant.
	Settings  map[string]any
	Status    Status
	Isolation Isolation
	// Schema is the dedicated schema, "" for shared tenants.
	Schema    string
	CreatedAt time.Time
	UpdatedAt time.Time
	// DeletedAt is set on deleted tenants awaiting their purge.
	DeletedAt *time.Time
}

// Usable returns nil for an active, not deleted tenant, else ErrSuspended or
// ErrDeleted.
func (t Tenant) Usable() error {
	switch {
	case t.DeletedAt != nil:
		return fmt.Errorf("%w: %s", ErrDeleted, t.Slug)
	case t.Status != Active:
		return fmt.Errorf("%w: %s", ErrSuspended, t.Slug)
	}
	return nil
}

// NewTenant describes a tenant to provision.
type NewTenant struct {
	Slug     string
	Name     string
	Plan     string
	Settings map[string]any
	// Isolation defaults to Shared. Dedicated needs Config.TenantMigrations.
	Isolation Isolation
}

const tenantCols = `id, slug, name, plan, settings, status, isolation, coalesce(schema_name, ''), created_at, updated_at, deleted_at`

func scanTenant(row pgx.Row) (Tenant, error) {
	var t Tenant
	var settings []byte
	err := row.Scan(&t.ID, &t.Slug, &t.Name, &t.Plan, &settings, &t.Status, &t.Isolation, &t.Schema,
		&t.CreatedAt, &t.UpdatedAt, &t.DeletedAt)
	if err != nil {
		return t, err
	}
	if err := json.Unmarshal(settings, &t.Settings); err != nil {
		return t, fmt.Errorf("tenancy: tenant settings: %w", err)
	}
	return t, nil
}

// validateSettings returns the settings' JSON text: a string, which every pgx
// exec mode sends as text (a []byte would go as bytea in the exec and
// simple-protocol modes).
func validateSettings(s map[string]any) (string, error) {
	if s == nil {
		s = map[string]any{}
	}
	if v, ok := s["statement_timeout_ms"]; ok {
		okVal := false
		switch n := v.(type) {
		case int:
			okVal = n >= 0 && n < 1e9
		case int64:
			okVal = n >= 0 && n < 1e9
		case float64:
			okVal = n >= 0 && n < 1e9 && n == float64(int64(n))
		case json.Number:
			i, err := n.Int64()
			okVal = err == nil && i >= 0 && i < 1e9
		}
		if !okVal {
			return "", fmt.Errorf("%w: settings statement_timeout_ms must be a whole number of milliseconds, got %v", ErrInvalid, v)
		}
	}
	b, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("%w: settings: %v", ErrInvalid, err)
	}
	if pgtext.JSONHasNUL(b) {
		return "", fmt.Errorf("%w: settings contain a NUL character", ErrInvalid)
	}
	return string(b), nil
}

// Create provisions a tenant. A Dedicated tenant's schema is created and
// migrated with Config.TenantMigrations in the same transaction, so a
// failure leaves nothing behind. Run it with a role that may create schemas
// (the role that owns the application's tables), not the application role.
func (m *Manager) Create(ctx context.Context, db DB, nt NewTenant) (Tenant, error) {
	if err := ValidateSlug(nt.Slug); err != nil {
		return Tenant{}, err
	}
	if nt.Name == "" || len(nt.Name) > 200 {
		return Tenant{}, fmt.Errorf("%w: name must be 1-200 bytes", ErrInvalid)
	}
	if err := pgtext.Check(nt.Name); err != nil {
		return Tenant{}, fmt.Errorf("%w: name %v", ErrInvalid, err)
	}
	if err := pgtext.Check(nt.Plan); err != nil {
		return Tenant{}, fmt.Errorf("%w: plan %v", ErrInvalid, err)
	}
	if nt.Isolation == "" {
		nt.Isolation = Shared
	}
	if nt.Isolation != Shared && nt.Isolation != Dedicated {
		return Tenant{}, fmt.Errorf("%w: isolation %q", ErrInvalid, nt.Isolation)
	}
	if nt.Isolation == Dedicated && m.migrations == nil {
		return Tenant{}, ErrNoMigrations
	}
	settings, err := validateSettings(nt.Settings)
	if err != nil {
		return Tenant{}, err
	}
	var schema *string
	if nt.Isolation == Dedicated {
		s, err := m.SchemaName(nt.Slug)
		if err != nil {
			return Tenant{}, err
		}
		schema = &s
	}
	var t Tenant
	err = pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		t, err = scanTenant(tx.QueryRow(ctx, `INSERT INTO `+m.qtenants+` (slug, name, plan, settings, isolation, schema_name)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+tenantCols,
			nt.Slug, nt.Name, nt.Plan, settings, nt.Isolation, schema))
		if err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "23505" {
				return fmt.Errorf("%w: %s", ErrSlugTaken, nt.Slug)
			}
			return fmt.Errorf("tenancy: creating tenant %s: %w", nt.Slug, err)
		}
		if schema != nil {
			return m.createSchema(ctx, tx, *schema)
		}
		return nil
	})
	if err != nil {
		return Tenant{}, err
	}
	return t, nil
}

// Get returns the tenant with id, whatever its status.
func (m *Manager) Get(ctx context.Context, db DB, id uuid.UUID) (Tenant, error) {
	t, err := scanTenant(db.QueryRow(ctx, `SELECT `+tenantCols+` FROM `+m.qtenants+` WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Tenant{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("tenancy: reading tenant: %w", err)
	}
	return t, nil
}

// BySlug returns the tenant with slug, whatever its status.
func (m *Manager) BySlug(ctx context.Context, db DB, slug string) (Tenant, error) {
	if err := ValidateSlug(slug); err != nil {
		return Tenant{}, err
	}
	t, err := scanTenant(db.QueryRow(ctx, `SELECT `+tenantCols+` FROM `+m.qtenants+` WHERE slug = $1`, slug))
	if errors.Is(err, pgx.ErrNoRows) {
		return Tenant{}, fmt.Errorf("%w: %s", ErrNotFound, slug)
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("tenancy: reading tenant: %w", err)
	}
	return t, nil
}

// List returns every tenant (deleted ones too), ordered by slug.
func (m *Manager) List(ctx context.Context, db DB) ([]Tenant, error) {
	rows, err := db.Query(ctx, `SELECT `+tenantCols+` FROM `+m.qtenants+` ORDER BY slug`)
	if err != nil {
		return nil, fmt.Errorf("tenancy: listing tenants: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Tenant, error) { return scanTenant(r) })
	if err != nil {
		return nil, fmt.Errorf("tenancy: listing tenants: %w", err)
	}
	return out, nil
}

func (m *Manager) update(ctx context.Context, db DB, id uuid.UUID, set string, args ...any) (Tenant, error) {
	t, err := scanTenant(db.QueryRow(ctx, `UPDATE `+m.qtenants+` SET `+set+`, updated_at = now()
		WHERE id = $1 RETURNING `+tenantCols, append([]any{id}, args...)...))
	if errors.Is(err, pgx.ErrNoRows) {
		return Tenant{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("tenancy: updating tenant: %w", err)
	}
	return t, nil
}

// Suspend stops every tenant-scoped transaction of the tenant from starting
// (they fail with ErrSuspended) until Activate.
func (m *Manager) Suspend(ctx context.Context, db DB, id uuid.UUID) (Tenant, error) {
	return m.update(ctx, db, id, `status = 'suspended'`)
}

// Activate lifts a suspension.
func (m *Manager) Activate(ctx context.Context, db DB, id uuid.UUID) (Tenant, error) {
	return m.update(ctx, db, id, `status = 'active'`)
}

// SetSettings replaces the tenant's settings (validated as for Create).
func (m *Manager) SetSettings(ctx context.Context, db DB, id uuid.UUID, settings map[string]any) (Tenant, error) {
	b, err := validateSettings(settings)
	if err != nil {
		return Tenant{}, err
	}
	return m.update(ctx, db, id, `settings = $2`, b)
}

// SetPlan changes the tenant's plan.
func (m *Manager) SetPlan(ctx context.Context, db DB, id uuid.UUID, plan string) (Tenant, error) {
	if err := pgtext.Check(plan); err != nil {
		return Tenant{}, fmt.Errorf("%w: plan %v", ErrInvalid, err)
	}
	return m.update(ctx, db, id, `plan = $2`, plan)
}

// Delete soft-deletes the tenant: its transactions are refused at once with
// ErrDeleted, and Purge removes it and its rows after Config.Retention.
func (m *Manager) Delete(ctx context.Context, db DB, id uuid.UUID) (Tenant, error) {
	return m.update(ctx, db, id, `deleted_at = coalesce(deleted_at, now())`)
}

// Restore undoes Delete within the retention period.
func (m *Manager) Restore(ctx context.Context, db DB, id uuid.UUID) (Tenant, error) {
	return m.update(ctx, db, id, `deleted_at = NULL`)
}

// Purge removes every tenant deleted more than Config.Retention before now:
// its rows in every protected table outside other tenants' schemas, its
// dedicated schema, and its tenant row, one tenant per transaction. It
// returns the ids purged. Run it with the role that owns the tables.
func (m *Manager) Purge(ctx context.Context, db DB, now time.Time) ([]uuid.UUID, error) {
	rows, err := db.Query(ctx, `SELECT id FROM `+m.qtenants+` WHERE deleted_at < $1 ORDER BY deleted_at`,
		now.Add(-m.cfg.Retention))
	if err != nil {
		return nil, fmt.Errorf("tenancy: purge: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, fmt.Errorf("tenancy: purge: %w", err)
	}
	var done []uuid.UUID
	for _, id := range ids {
		err := pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
			t, err := m.lockTenant(ctx, tx, id)
			if err != nil {
				return err
			}
			if t.DeletedAt == nil {
				return nil // restored meanwhile
			}
			tables, err := m.protectedTables(ctx, tx, id, "")
			if err != nil {
				return err
			}
			for _, tb := range tables {
				if tb.Schema == t.Schema {
					continue // dropped with the schema below
				}
				if _, err := tx.Exec(ctx, `DELETE FROM `+tb.Quoted()+` WHERE tenant_id = $1`, id); err != nil {
					return fmt.Errorf("tenancy: purging %s from %s: %w", t.Slug, tb.Quoted(), err)
				}
			}
			if t.Schema != "" {
				if err := dropSchema(ctx, tx, t.Schema); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, `DELETE FROM `+m.qtenants+` WHERE id = $1`, id); err != nil {
				return fmt.Errorf("tenancy: purging tenant row: %w", err)
			}
			done = append(done, id)
			return nil
		})
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// lockTenant takes the tenant's advisory lock exclusively (waiting for its
// running transactions and holding new ones back until this transaction
// ends) and reads its row.
func (m *Manager) lockTenant(ctx context.Context, tx pgx.Tx, id uuid.UUID) (Tenant, error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('justpg.tenancy:' || $1::text, 0))`, id); err != nil {
		return Tenant{}, fmt.Errorf("tenancy: locking tenant: %w", err)
	}
	t, err := scanTenant(tx.QueryRow(ctx, `SELECT `+tenantCols+` FROM `+m.qtenants+` WHERE id = $1 FOR UPDATE`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Tenant{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Tenant{}, fmt.Errorf("tenancy: reading tenant: %w", err)
	}
	return t, nil
}
