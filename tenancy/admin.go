package tenancy

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Access describes one use of admin access across tenants.
type Access struct {
	// Actor is who asked (a staff user, a job name); required.
	Actor string
	// Reason says why; required.
	Reason string
	// Tenant is the tenant concerned, uuid.Nil for all of them.
	Tenant uuid.UUID
}

// AsAdmin runs fn in a transaction that sees every tenant's rows. It is the
// one explicit way across tenants: it needs a connection whose role bypasses
// row-level security (a support role with BYPASSRLS, kept apart from the
// application role; ErrNotAdmin otherwise), and it records the access (who,
// why, which tenant, which database role) in the tenancy_admin_access table,
// committed before fn runs so that failed and rolled-back accesses are
// recorded too. It returns the record's id.
func (m *Manager) AsAdmin(ctx context.Context, db DB, a Access, fn func(tx pgx.Tx) error) (int64, error) {
	if a.Actor == "" || a.Reason == "" {
		return 0, fmt.Errorf("%w: admin access needs an actor and a reason", ErrInvalid)
	}
	if _, nested := db.(pgx.Tx); nested {
		return 0, fmt.Errorf("tenancy: AsAdmin needs a pool or connection, so that the record of access commits on its own")
	}
	var tenant *uuid.UUID
	if a.Tenant != uuid.Nil {
		tenant = &a.Tenant
	}
	var bypass bool
	if err := db.QueryRow(ctx, `SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user`).Scan(&bypass); err != nil {
		return 0, fmt.Errorf("tenancy: checking the role: %w", err)
	}
	if !bypass {
		return 0, ErrNotAdmin
	}
	var id int64
	if err := db.QueryRow(ctx, `INSERT INTO `+m.qaccess+` (actor, reason, target_tenant) VALUES ($1, $2, $3) RETURNING id`,
		a.Actor, a.Reason, tenant).Scan(&id); err != nil {
		return 0, fmt.Errorf("tenancy: recording admin access: %w", err)
	}
	m.log.Info("tenancy: admin access", "id", id, "actor", a.Actor, "reason", a.Reason, "tenant", a.Tenant)
	tx, err := db.Begin(ctx)
	if err != nil {
		return id, fmt.Errorf("tenancy: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(tx); err != nil {
		return id, err
	}
	if err := tx.Commit(ctx); err != nil {
		return id, fmt.Errorf("tenancy: commit: %w", err)
	}
	return id, nil
}

// AccessRecord is a row of the admin access log.
type AccessRecord struct {
	ID     int64
	At     time.Time
	Access Access
	Role   string // the database role that ran it
}

// AccessLog returns the admin accesses recorded at or after since, oldest
// first.
func (m *Manager) AccessLog(ctx context.Context, db DB, since time.Time) ([]AccessRecord, error) {
	rows, err := db.Query(ctx, `SELECT id, at, actor, reason, coalesce(target_tenant, '00000000-0000-0000-0000-000000000000'), db_role
		FROM `+m.qaccess+` WHERE at >= $1 ORDER BY id`, since)
	if err != nil {
		return nil, fmt.Errorf("tenancy: reading the admin access log: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AccessRecord, error) {
		var a AccessRecord
		err := r.Scan(&a.ID, &a.At, &a.Access.Actor, &a.Access.Reason, &a.Access.Tenant, &a.Role)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("tenancy: reading the admin access log: %w", err)
	}
	return out, nil
}
