// Package tenancy makes PostgreSQL enforce which tenant sees which rows, so
// that no "WHERE tenant_id = ?" has to be remembered in application code:
// row-level security on shared tables that fails closed, a schema per
// tenant, or a mix of both (most tenants shared, some dedicated), with the
// same application code.
//
// # How it works
//
// Every per-tenant table has a tenant_id column (TenantIDColumnSQL):
//
//	tenant_id uuid DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid
//
// Protect (or ProtectSQL, the same DDL as text for a migration file) enables
// and FORCEs row-level security on the table, adds a policy whose USING and
// WITH CHECK compare tenant_id with
//
//	(SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid)
//
// and indexes tenant_id. The sub-select is planned as an InitPlan, evaluated
// once per statement, so the index on tenant_id serves the query. When no
// tenant is set the expression is NULL, which equals nothing: a transaction
// that forgot its tenant reads no rows and cannot insert any (fails closed).
// WITH CHECK refuses a row written for, or moved to, another tenant.
//
// WithTenant opens a transaction and, in the same round trip as its BEGIN
// (BEGIN and two plain statements travel as one pipelined batch, so scoping
// costs no round trip of its own), takes the tenant's shared lock, checks the
// role and the tenant, and sets app.tenant_id with set_config(..., true) (a bind
// parameter, never string-built SQL), the
// tenant's statement_timeout (Tenant.Settings "statement_timeout_ms", against
// noisy neighbours) and, for a dedicated tenant, a search_path that starts
// with its quoted schema; then it runs the caller's function and commits.
// All three settings are transaction-local: nothing outlives the
// transaction, so a pooled connection goes back clean even after an error or
// a cancelled statement, and the package is safe behind PgBouncer in
// transaction mode. (PgBouncer before 1.21 keeps no prepared statements in
// that mode: configure pgx with QueryExecModeExec or
// QueryExecModeSimpleProtocol there.)
//
// # Roles: the bypass is the worst failure
//
// Row-level security does not apply to superusers, to roles with BYPASSRLS,
// or to a table's owner unless the table is FORCEd. The application must
// therefore connect as a role of its own, created with CreateAppRole
// (NOSUPERUSER, NOBYPASSRLS, owning nothing, with DML grants), while
// migrations, Protect, provisioning and moves run as the owner. Check, called
// at start-up on the application's pool, refuses (ErrBypass, with the
// reasons) a connection that would bypass the policies: superuser,
// BYPASSRLS, owner of a protected table that is not FORCEd, or a protected
// table with row-level security disabled. WithTenant repeats the superuser
// and BYPASSRLS check inside every transaction, so a pool pointed at the
// wrong role fails loudly instead of showing every tenant's rows.
//
// Crossing tenants is possible only through AsAdmin, on a separate pool whose
// role has BYPASSRLS, with an actor and a reason that are recorded (and
// committed) before the work runs; AccessLog reads the record.
//
// # Background components: the system role
//
// Under FORCE ROW LEVEL SECURITY a row whose tenant_id does not match
// app.tenant_id, NULL included, is invisible. The justpg components that
// serve every tenant from the background (jobs workers fetching and
// completing jobs, the realtime listener resolving stored payloads, the
// files janitor, backup drills) therefore run on a separate pool whose role
// has BYPASSRLS: the system role, created with CreateSystemRole (NOSUPERUSER,
// BYPASSRLS, owning nothing, DML on the schemas it is given) and used for
// nothing else. WithTenant and Check refuse that pool, so it cannot be
// mistaken for the application's.
//
// Request-scoped work runs on the application pool (CreateAppRole: no
// BYPASSRLS, not the owner) through WithTenant. A job carries its tenant
// (jobs.JobRow.TenantID, stamped from app.tenant_id when it was inserted); a
// worker that touches tenant data opens its own tenant-scoped transaction on
// the application pool:
//
//	jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[SendInvoice]) error {
//		tenant, err := tenancy.ParseID(job.TenantID)
//		if err != nil {
//			return err // a job inserted outside any tenant has TenantID ""
//		}
//		return tm.WithTenant(ctx, appPool, tenant, func(tx pgx.Tx) error {
//			// reads and writes as the job's tenant, and only that tenant
//		})
//	})
//
// The worker's own bookkeeping (fetching, completing the job) stays on the
// system pool; only the tenant's data goes through WithTenant. A job
// inserted outside any tenant has no tenant, and ParseID refuses it
// (ErrMalformedID) rather than guessing. The system role also suits AsAdmin,
// which records every use.
//
// # Tenants
//
// The tenancy_tenants table (in the justpg schema, see Migrate) holds id,
// unique slug, name, plan, settings (JSON), status (active or suspended),
// isolation (shared or dedicated) and the soft-delete time. Create
// provisions a tenant (a dedicated one gets its schema created and migrated
// in the same transaction); Suspend, Activate, SetSettings, SetPlan, Delete
// and Restore change it; Purge removes tenants deleted longer than
// Config.Retention ago with all their rows. Unknown, suspended and deleted
// tenants are refused by WithTenant and by the Middleware (ErrNotFound,
// ErrSuspended, ErrDeleted). Slugs are 1-48 lower-case letters, digits and
// inner hyphens; a dedicated schema is Config.SchemaPrefix plus the slug with
// hyphens as underscores, always quoted.
//
// # Schema per tenant
//
// Config.TenantMigrations holds the application's own migrations. The same
// files serve the shared schema (MigrateApp(ctx, db, "public")) and each
// dedicated schema, whose tables carry the same tenant_id column and
// policies: a dedicated tenant is isolated by its search_path and, should a
// query name another schema, still by row-level security. MigrateTenants
// applies pending migrations to every tenant schema, a bounded number at a
// time, each in its own transaction under its own advisory lock; a failing
// schema is rolled back and reported (MigrateReport, *MigrateError) without
// stopping the others. MoveToDedicated and MoveToShared move a tenant between
// the shared tables and its schema in one transaction that holds the
// tenant's lock exclusively: its running transactions finish first, new ones
// wait and then see the tenant in its new place; rows are copied parents
// first (foreign keys), removed from the source and counted.
//
// # Working with the other justpg packages
//
// Every justpg package takes a DB on each operation, and the pgx.Tx that
// WithTenant hands to its function is one: pass it, and the package's
// reads and writes run as the tenant in the same transaction as the
// application's own. The packages follow this convention for their
// per-tenant tables: a tenant_id column defined as TenantIDColumnSQL
// (nullable: NULL means not tenant-scoped), so rows they write inside a
// tenant's transaction are stamped automatically, and indexes that serve
// tenant-scoped queries lead with tenant_id. Protect works on those tables
// as on the application's; Unprotected lists tables with a tenant_id column
// and no policy.
//
// Export streams a tenant's rows of every protected table it can have rows
// in, through COPY, in pg_dump's data format, on the application role, all
// read from one snapshot (a REPEATABLE READ READ ONLY transaction, see
// WithTenantTx), so writes committed meanwhile never make it inconsistent.
// Middleware resolves the tenant of an HTTP request from a header
// (FromHeader), a subdomain (FromSubdomain) or a path segment (FromPath) and
// puts it in the request's context, where InTenant finds it.
//
// # Choosing: shared tables, a schema, or a database per tenant
//
// Shared tables with row-level security are the default: one set of tables,
// one migration, cheap tenants (a row), cross-tenant reporting for admins,
// and the planner's statistics and caches shared by everyone. They suit
// thousands to millions of small and mid-size tenants. Their costs: one
// noisy tenant shares the tables' bloat and locks (statement_timeout per
// tenant limits the damage), and every per-tenant index leads with
// tenant_id.
//
// A schema per tenant gives a big tenant its own tables, indexes, statistics
// and VACUUM, and lets it be dumped, restored or dropped alone. Each schema
// costs catalog entries and a migration run (see bench/RESULTS.md: creating
// and migrating 1,000 schemas takes seconds, not hours), so it suits tens to
// a few thousand tenants; past that, catalogs and migration time grow. Move
// a tenant to a dedicated schema when its rows dominate the shared tables,
// when its queries need statistics of their own, or when a contract asks
// for separate storage; move it back when it shrinks.
//
// A database (or cluster) per tenant is for tenants that need their own
// resource limits, extensions, version, region or encryption keys, or
// contractual physical isolation. It is outside this package: point a
// separate pool at each database; the same tables and policies work there.
//
// # Scaling out: Citus
//
// The same tables distribute by tenant on Citus: create_distributed_table
// on each per-tenant table with tenant_id as the distribution column (and
// co-location between them) puts all of a tenant's rows on one worker.
// Primary and foreign keys must then include tenant_id. Check that your
// Citus version propagates row-level security policies to the shards (recent
// versions do for distributed tables) before relying on them there. The
// coordinator routes a query to one worker when its WHERE clause pins the
// distribution column to a value it can see; a filter that exists only in
// the policy's InitPlan may not be routed that way, so on Citus, hot paths
// should also state tenant_id = $1 (a bind parameter) themselves — the
// policy still guards against the ones that forget.
package tenancy
