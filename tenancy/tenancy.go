package tenancy

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"regexp"
	"time"

	"github.com/google/uuid"

	"github.com/justpg/justpg/internal/ident"
	"github.com/justpg/justpg/internal/migrate"
	"github.com/justpg/justpg/internal/pgdb"
)

// DB runs statements: *pgxpool.Pool, *pgxpool.Conn, *pgx.Conn and pgx.Tx all
// satisfy it.
type DB = pgdb.DB

// Setting is the transaction-local setting that holds the current tenant's id.
const Setting = "app.tenant_id"

// CurrentTenantSQL is the expression policies compare tenant_id with. The
// scalar sub-select makes PostgreSQL evaluate it once per statement (an
// InitPlan) rather than once per row; NULLIF turns "not set" (NULL or the
// empty string a finished transaction leaves behind) into NULL, which matches
// no row: a transaction that forgot to set a tenant sees nothing and can
// insert nothing.
const CurrentTenantSQL = `(SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid)`

// TenantIDColumnSQL is the column definition every per-tenant table carries,
// so that rows written inside a tenant's transaction are stamped with it.
const TenantIDColumnSQL = `tenant_id uuid DEFAULT NULLIF(current_setting('app.tenant_id', true), '')::uuid`

// PolicyName is the name of the row-level security policy Protect creates.
const PolicyName = "tenancy_isolation"

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the package's migration files (for teams that keep their
// own migration history).
func Migrations() fs.FS {
	return migrate.Sub(migrationFiles, "migrations")
}

// Migrate creates or upgrades the package's tables in the justpg schema.
func Migrate(ctx context.Context, db DB) error {
	return MigrateSchema(ctx, db, migrate.DefaultSchema)
}

// MigrateSchema creates or upgrades the package's tables in schema.
func MigrateSchema(ctx context.Context, db DB, schema string) error {
	return migrate.Apply(ctx, db, schema, "tenancy", Migrations())
}

// Errors callers branch on with errors.Is.
var (
	// ErrInvalid is wrapped by every error about malformed input: a slug,
	// schema or table name, an id, settings, options.
	ErrInvalid = errors.New("tenancy: invalid input")
	// ErrMalformedID means a tenant id is not a UUID.
	ErrMalformedID = fmt.Errorf("%w: malformed tenant id", ErrInvalid)
	// ErrNotFound means no tenant has that id or slug (or it was purged).
	ErrNotFound = errors.New("tenancy: unknown tenant")
	// ErrSuspended means the tenant exists but is suspended.
	ErrSuspended = errors.New("tenancy: tenant is suspended")
	// ErrDeleted means the tenant was deleted and awaits its purge.
	ErrDeleted = errors.New("tenancy: tenant is deleted")
	// ErrSlugTaken means another tenant (possibly a deleted one still within
	// its retention period) already has the slug.
	ErrSlugTaken = errors.New("tenancy: slug is taken")
	// ErrBypass means the connection's role would bypass row-level security
	// (superuser, BYPASSRLS, or owner of a table that is not FORCEd), so
	// tenant-scoped work on it is refused. See BypassError.
	ErrBypass = errors.New("tenancy: connection would bypass row-level security")
	// ErrNotAdmin means AsAdmin was given a connection whose role cannot see
	// across tenants (it is subject to row-level security).
	ErrNotAdmin = errors.New("tenancy: admin access needs a role that bypasses row-level security")
	// ErrNoTenant means the context carries no tenant (see WithContext).
	ErrNoTenant = errors.New("tenancy: no tenant in context")
	// ErrNestedTx means WithTenant was given a transaction. The tenant
	// setting is transaction-local, so it must own the transaction: inside a
	// caller's transaction it would outlive the call.
	ErrNestedTx = errors.New("tenancy: WithTenant needs a pool or connection, not a transaction")
	// ErrIsolation means a move was asked for a tenant already in that mode.
	ErrIsolation = errors.New("tenancy: tenant already has that isolation mode")
	// ErrNoMigrations means an operation needs Config.TenantMigrations.
	ErrNoMigrations = errors.New("tenancy: Config.TenantMigrations is not set")
)

// BypassError lists why a role would bypass row-level security.
type BypassError struct {
	Role    string
	Reasons []string
}

// Error names the role and the reasons.
func (e *BypassError) Error() string {
	return fmt.Sprintf("tenancy: refusing tenant-scoped work: role %q would bypass row-level security: %v", e.Role, e.Reasons)
}

// Unwrap makes errors.Is(err, ErrBypass) true.
func (e *BypassError) Unwrap() error { return ErrBypass }

// Status is a tenant's status.
type Status string

// Tenant statuses.
const (
	Active    Status = "active"
	Suspended Status = "suspended"
)

// Isolation says where a tenant's rows live.
type Isolation string

// Isolation modes.
const (
	// Shared tenants' rows live in the shared tables, separated by
	// row-level security on tenant_id.
	Shared Isolation = "shared"
	// Dedicated tenants have a schema of their own, first on their
	// search_path; its tables are protected by the same policies.
	Dedicated Isolation = "dedicated"
)

// Config configures a Manager. The zero value is usable: tables in the justpg
// schema, shared tables in public, tenant schemas named tenant_<slug>, 30 days
// of retention, no app migrations (so no dedicated tenants).
type Config struct {
	// Schema holds the package's own tables; "" means "justpg".
	Schema string
	// SharedSchema holds the application's shared per-tenant tables; ""
	// means "public". Moves copy rows between it and tenant schemas.
	SharedSchema string
	// SchemaPrefix prefixes dedicated tenant schema names; "" means
	// "tenant_". Lower-case letters, digits and underscores only.
	SchemaPrefix string
	// TenantMigrations are the application's migrations (files named
	// NNN_description.sql at the root), applied to each dedicated tenant
	// schema with search_path set to it. Nil means no dedicated tenants.
	TenantMigrations fs.FS
	// MigrationLine names the application's line in each schema's
	// migrations table; "" means "app".
	MigrationLine string
	// AppRole, when set, is granted what it needs on every tenant schema
	// this package creates.
	AppRole string
	// Retention is how long a deleted tenant is kept before Purge removes
	// it; 0 means 30 days.
	Retention time.Duration
	// Logger receives a record of admin access and migration failures;
	// nil means slog.Default().
	Logger *slog.Logger
}

// Manager provisions tenants and runs work scoped to one of them. It holds no
// connection: every operation takes the DB to run on, so it is safe for
// concurrent use.
type Manager struct {
	cfg        Config
	qschema    string // quoted package schema
	qtenants   string // qualified tenants table
	qaccess    string // qualified admin access table
	qenter     string // qualified tenancy_enter function
	qscope     string // the statement that checks the tenant and scopes the transaction
	qshared    string // quoted shared schema
	line       string
	migrations []migrate.Migration
	log        *slog.Logger
}

var prefixRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,14}$`)

// New validates cfg and returns a Manager.
func New(cfg Config) (*Manager, error) {
	if cfg.Schema == "" {
		cfg.Schema = migrate.DefaultSchema
	}
	if cfg.SharedSchema == "" {
		cfg.SharedSchema = "public"
	}
	if cfg.SchemaPrefix == "" {
		cfg.SchemaPrefix = "tenant_"
	}
	if cfg.MigrationLine == "" {
		cfg.MigrationLine = "app"
	}
	if cfg.Retention == 0 {
		cfg.Retention = 30 * 24 * time.Hour
	}
	if cfg.Retention < 0 {
		return nil, fmt.Errorf("%w: negative Retention", ErrInvalid)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if !prefixRE.MatchString(cfg.SchemaPrefix) {
		return nil, fmt.Errorf("%w: SchemaPrefix %q must match %s", ErrInvalid, cfg.SchemaPrefix, prefixRE)
	}
	m := &Manager{cfg: cfg, line: cfg.MigrationLine, log: cfg.Logger}
	var err error
	if m.qschema, err = ident.Quote(cfg.Schema); err != nil {
		return nil, fmt.Errorf("tenancy: Schema: %w", err)
	}
	if m.qshared, err = ident.Quote(cfg.SharedSchema); err != nil {
		return nil, fmt.Errorf("tenancy: SharedSchema: %w", err)
	}
	if cfg.AppRole != "" {
		if err := ident.Validate(cfg.AppRole); err != nil {
			return nil, fmt.Errorf("tenancy: AppRole: %w", err)
		}
	}
	m.qtenants = m.qschema + ".tenancy_tenants"
	m.qaccess = m.qschema + ".tenancy_admin_access"
	m.qenter = m.qschema + ".tenancy_enter"
	probe, err := ident.Literal(m.qschema + ".tenancy_rls_probe")
	if err != nil {
		return nil, fmt.Errorf("tenancy: Schema: %w", err)
	}
	m.qscope = scopeSQL(m.qtenants, probe, m.qschema+".tenancy_share_tenant")
	if cfg.TenantMigrations != nil {
		if m.migrations, err = migrate.Load(cfg.TenantMigrations); err != nil {
			return nil, fmt.Errorf("tenancy: TenantMigrations: %w", err)
		}
	}
	return m, nil
}

// ParseID parses a tenant id; malformed input gives ErrMalformedID.
func ParseID(s string) (uuid.UUID, error) {
	if len(s) != 36 {
		return uuid.Nil, fmt.Errorf("%w: %q is not a UUID in canonical form", ErrMalformedID, truncate(s))
	}
	id, err := uuid.Parse(s)
	if err != nil || id == uuid.Nil {
		return uuid.Nil, fmt.Errorf("%w: %q is not a UUID in canonical form", ErrMalformedID, truncate(s))
	}
	return id, nil
}

var slugRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?$`)

// ValidateSlug reports whether s can be a tenant slug: 1 to 48 lower-case
// letters, digits and inner hyphens. Slugs appear in host names, URLs and
// (mapped) schema names, so nothing else is allowed.
func ValidateSlug(s string) error {
	if !slugRE.MatchString(s) {
		return fmt.Errorf("%w: slug %q must be 1-48 lower-case letters, digits and inner hyphens", ErrInvalid, truncate(s))
	}
	return nil
}

// SchemaName is the dedicated schema a tenant with this slug gets: the
// prefix, then the slug with hyphens turned into underscores (slugs have no
// underscores, so distinct slugs give distinct names).
func (m *Manager) SchemaName(slug string) (string, error) {
	if err := ValidateSlug(slug); err != nil {
		return "", err
	}
	out := []byte(m.cfg.SchemaPrefix + slug)
	for i, c := range out {
		if c == '-' {
			out[i] = '_'
		}
	}
	return string(out), nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}
