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
// BEGIN and the two statements that scope the transaction travel together in
// one pipelined batch, so scoping costs no round trip of its own. They take
// the tenant's shared lock (so a move between shared and dedicated storage
// never runs under it), refuse a role that would bypass row-level security
// (ErrBypass), check the tenant (ErrNotFound, ErrSuspended, ErrDeleted) and
// set, all with set_config(..., true) and the tenant id as a bind parameter,
// so that nothing outlives the transaction: app.tenant_id;
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
// refused with ErrInvalid: WithTenantTx writes the BEGIN itself. A
// REPEATABLE READ or SERIALIZABLE transaction that is not READ ONLY also
// reads the tenant's row FOR SHARE: if the tenant changed (a move, a
// suspension) after its snapshot was taken, it fails with a serialization
// error (a *pgconn.PgError with SQLSTATE 40001), to be retried like any
// other.
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

// lockSQL takes the tenant's advisory lock in shared mode: any number of
// tenant-scoped transactions hold it together, and a move between shared and
// dedicated storage (lockTenant, exclusive) waits for them and holds new ones
// back until it commits.
const lockSQL = `SELECT pg_catalog.pg_advisory_xact_lock_shared(pg_catalog.hashtextextended('justpg.tenancy:' || $1::text, 0))`

// scopeSQL returns the statement that checks the role and the tenant and
// scopes the transaction, given the qualified tenants table and the probe
// table's name as a literal. It returns one row whatever it finds: whether
// the role bypasses row-level security (row_security_active is false exactly
// for a superuser or a BYPASSRLS role, answered from the catalog caches; a
// probe table whose row-level security was switched off makes every role
// look like a bypassing one, so the check fails closed), whether the tenant
// exists, its status and whether it is deleted. Only when all is well does it
// set app.tenant_id, the tenant's statement_timeout and, for a dedicated
// tenant, search_path with its schema first, each with set_config(..., true).
// It runs as a statement of its own after lockSQL, so under READ COMMITTED its
// snapshot is taken once the lock is granted and it sees a move that
// committed meanwhile.
//
// A REPEATABLE READ or SERIALIZABLE transaction has taken its snapshot with
// the lock statement, before waiting. For one that may write (asked for in
// TxOptions or by the session's defaults: the statement reads the
// transaction's own settings), shareFn (the qualified tenancy_share_tenant
// function) reads the tenant's row FOR SHARE, which fails with a
// serialization error (SQLSTATE 40001: retry the transaction) when the row
// changed after the snapshot, so such a transaction never writes under a
// storage mode that a move has just changed. READ ONLY ones read the
// consistent state their snapshot shows and need no row lock.
func scopeSQL(qtenants, probe, shareFn string) string {
	share := `CASE WHEN pg_catalog.current_setting('transaction_isolation') IN ('repeatable read', 'serializable')
                  AND pg_catalog.current_setting('transaction_read_only') = 'off'
             THEN ` + shareFn + `($1) END`
	return `SELECT b.bypass, t.id IS NOT NULL, t.status, coalesce(t.deleted_at IS NOT NULL, false), ` + share + `,
       CASE WHEN o.ok THEN pg_catalog.set_config('app.tenant_id', t.id::text, true) END,
       CASE WHEN o.ok AND t.settings ? 'statement_timeout_ms'
            THEN pg_catalog.set_config('statement_timeout', t.settings->>'statement_timeout_ms', true) END,
       CASE WHEN o.ok AND t.isolation = 'dedicated'
            THEN pg_catalog.set_config('search_path',
                 pg_catalog.quote_ident(t.schema_name) || ', ' || pg_catalog.current_setting('search_path'), true) END
  FROM (SELECT NOT pg_catalog.row_security_active(` + probe + `::pg_catalog.regclass) AS bypass) b
  LEFT JOIN ` + qtenants + ` t ON t.id = $1
  CROSS JOIN LATERAL (SELECT NOT b.bypass AND t.status = 'active' AND t.deleted_at IS NULL AS ok) o`
}

// begin opens a transaction on db and scopes it to tenant, in one round trip:
// BEGIN, the tenant's lock and the scoping statement are sent as one
// pipelined batch (plain statements, prepared and cached by pgx: cheaper than
// one call of a PL/pgSQL function doing the same). On error the transaction
// is already rolled back (and a pooled connection released).
func (m *Manager) begin(ctx context.Context, db DB, tenant uuid.UUID, opts pgx.TxOptions) (pgx.Tx, error) {
	b := &pgx.Batch{}
	b.BeginTx(opts)
	b.Queue(lockSQL, tenant)
	b.Queue(m.qscope, tenant)
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
	if _, err := br.Exec(); err != nil {
		return fail(fmt.Errorf("tenancy: locking tenant %s: %w", tenant, err))
	}
	var bypass, found, deleted bool
	var status *string
	if err := br.QueryRow().Scan(&bypass, &found, &status, &deleted, nil, nil, nil, nil); err != nil {
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
