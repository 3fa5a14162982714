package tenancy

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// WithTenant runs fn in a new transaction scoped to tenant and commits when
// fn returns nil (otherwise it rolls back and returns fn's error).
//
// BEGIN and the statement that scopes the transaction travel together in one
// pipelined batch, so scoping costs no round trip of its own. That statement
// refuses a role that would bypass row-level security (ErrBypass), takes the
// tenant's shared lock (so a move between shared and dedicated storage never
// runs under it), checks the tenant (ErrNotFound, ErrSuspended, ErrDeleted)
// and sets, all with set_config(..., true) and the tenant id as a bind
// parameter, so that nothing outlives the transaction: app.tenant_id;
// statement_timeout from the tenant's settings; and, for a dedicated tenant,
// search_path with its schema first. Safe with any pool and with PgBouncer in
// transaction mode.
//
// db must be a pool or a connection: a transaction is refused with
// ErrNestedTx because the setting would outlive the call in it. Hand tx to
// any justpg package (they all take a DB) to run its operations as the
// tenant.
func (m *Manager) WithTenant(ctx context.Context, db DB, tenant uuid.UUID, fn func(tx pgx.Tx) error) error {
	return m.WithTenantTx(ctx, db, tenant, pgx.TxOptions{}, fn)
}

// WithTenantTx is WithTenant with transaction modes: an isolation level,
// READ ONLY, DEFERRABLE (for example REPEATABLE READ READ ONLY to read
// several tables from one snapshot, as Export does). opts.BeginQuery is
// refused with ErrInvalid: WithTenantTx writes the BEGIN itself.
func (m *Manager) WithTenantTx(ctx context.Context, db DB, tenant uuid.UUID, opts pgx.TxOptions, fn func(tx pgx.Tx) error) error {
	if _, nested := db.(pgx.Tx); nested {
		return ErrNestedTx
	}
	if tenant == uuid.Nil {
		return fmt.Errorf("%w: the nil UUID", ErrMalformedID)
	}
	if opts.BeginQuery != "" {
		return fmt.Errorf("%w: TxOptions.BeginQuery is not supported", ErrInvalid)
	}
	tx, err := m.begin(ctx, db, tenant, opts)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("tenancy: commit: %w", err)
	}
	return nil
}

// begin opens a transaction on db and scopes it to tenant, in one round trip:
// BEGIN and the call of tenancy_enter are sent as one pipelined batch. On
// error the transaction is already rolled back (and a pooled connection
// released).
func (m *Manager) begin(ctx context.Context, db DB, tenant uuid.UUID, opts pgx.TxOptions) (pgx.Tx, error) {
	b := &pgx.Batch{}
	b.BeginTx(opts)
	b.Queue(`SELECT o_found, o_status, o_deleted, o_isolation, o_schema, o_bypass FROM `+m.qenter+`($1)`, tenant)
	br := db.SendBatch(ctx, b)
	tx := br.Tx()
	if tx == nil { // not a pgx connection, pool or transaction
		_ = br.Close()
		return nil, fmt.Errorf("tenancy: %T did not begin a transaction from a batch", db)
	}
	fail := func(err error) (pgx.Tx, error) {
		_ = br.Close()
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, err
	}
	if _, err := br.Exec(); err != nil {
		return fail(fmt.Errorf("tenancy: begin: %w", err))
	}
	var found, deleted, bypass bool
	var status, isolation, schema *string
	if err := br.QueryRow().Scan(&found, &status, &deleted, &isolation, &schema, &bypass); err != nil {
		return fail(fmt.Errorf("tenancy: entering tenant %s: %w", tenant, err))
	}
	if err := br.Close(); err != nil {
		return fail(fmt.Errorf("tenancy: entering tenant %s: %w", tenant, err))
	}
	var err error
	switch {
	case bypass:
		var role string
		_ = tx.QueryRow(ctx, `SELECT current_user`).Scan(&role)
		err = &BypassError{Role: role, Reasons: []string{"it is a superuser or has BYPASSRLS"}}
	case !found:
		err = fmt.Errorf("%w: %s", ErrNotFound, tenant)
	case deleted:
		err = fmt.Errorf("%w: %s", ErrDeleted, tenant)
	case status == nil || Status(*status) != Active:
		err = fmt.Errorf("%w: %s", ErrSuspended, tenant)
	}
	if err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return nil, err
	}
	return tx, nil
}

// InTenant is WithTenant for the tenant the context carries (see
// WithContext and Middleware); ErrNoTenant when it carries none.
func (m *Manager) InTenant(ctx context.Context, db DB, fn func(tx pgx.Tx) error) error {
	t, ok := FromContext(ctx)
	if !ok {
		return ErrNoTenant
	}
	return m.WithTenant(ctx, db, t.ID, fn)
}

type ctxKey struct{}

// WithContext returns a context carrying t.
func WithContext(ctx context.Context, t Tenant) context.Context {
	return context.WithValue(ctx, ctxKey{}, t)
}

// FromContext returns the tenant ctx carries.
func FromContext(ctx context.Context) (Tenant, bool) {
	t, ok := ctx.Value(ctxKey{}).(Tenant)
	return t, ok
}

// Current reports the tenant db's transaction is scoped to (uuid.Nil when
// none is set). Packages and tests use it to assert the scope.
func Current(ctx context.Context, db DB) (uuid.UUID, error) {
	var s *string
	if err := db.QueryRow(ctx, `SELECT NULLIF(current_setting('app.tenant_id', true), '')`).Scan(&s); err != nil {
		return uuid.Nil, fmt.Errorf("tenancy: reading the current tenant: %w", err)
	}
	if s == nil {
		return uuid.Nil, nil
	}
	return ParseID(*s)
}
