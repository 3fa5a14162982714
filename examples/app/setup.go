package main

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/auth"
	"github.com/justpg/justpg/files"
	"github.com/justpg/justpg/internal/ident"
	"github.com/justpg/justpg/internal/migrate"
	"github.com/justpg/justpg/jobs"
	"github.com/justpg/justpg/realtime"
	"github.com/justpg/justpg/search"
	"github.com/justpg/justpg/tenancy"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// searchIndexes describes the two search indexes: notes (title and body)
// and attachments (file names). Both are per tenant (TenantColumn), so the
// GIN indexes serve searches under row-level security and the typo word
// lists are kept per workspace.
func searchIndexes() (notes, attachments *search.Index, err error) {
	notes, err = search.New(search.Config{
		Table:            "notes",
		Key:              "id",
		Fields:           []search.Field{{Column: "title", Weight: search.A}, {Column: "body", Weight: search.B}},
		TenantColumn:     "tenant_id",
		CreateExtensions: true,
	})
	if err != nil {
		return nil, nil, err
	}
	attachments, err = search.New(search.Config{
		Table:            "attachments",
		Key:              "id",
		Fields:           []search.Field{{Column: "name_words", Weight: search.A}},
		Language:         "simple",
		TenantColumn:     "tenant_id",
		CreateExtensions: true,
	})
	return notes, attachments, err
}

// migrateAll creates every table, as the owner: the packages' tables in
// schema justpg, the app's in public, the search indexes; then it protects
// every table that has a tenant_id column with tenancy's row-level security
// policy — the app's own and every justpg package's (users, sessions,
// tokens, jobs, files and their chunks, realtime logs, search word lists).
func migrateAll(ctx context.Context, owner *pgxpool.Pool) error {
	for _, m := range []func(context.Context, tenancy.DB) error{
		tenancy.Migrate, auth.Migrate, jobs.Migrate, realtime.Migrate, files.Migrate,
	} {
		if err := m(ctx, owner); err != nil {
			return err
		}
	}
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return err
	}
	if _, err := migrate.Run(ctx, owner, "", migrate.Line{Name: "app", FS: sub}); err != nil {
		return err
	}
	notes, attachments, err := searchIndexes()
	if err != nil {
		return err
	}
	for _, ix := range []*search.Index{notes, attachments} {
		if err := ix.Create(ctx, owner); err != nil {
			return err
		}
	}
	tables, err := tenancy.Unprotected(ctx, owner)
	if err != nil {
		return err
	}
	for _, t := range tables {
		if err := tenancy.Protect(ctx, owner, t.Schema+"."+t.Name); err != nil {
			return fmt.Errorf("protect %s: %w", t, err)
		}
	}
	return nil
}

// roles are the two roles the app connects as besides the owner.
type roles struct {
	App, AppPassword       string // tenant-scoped request work: no BYPASSRLS, owns nothing
	System, SystemPassword string // background work for every tenant: BYPASSRLS
}

func newRoles(prefix string) (roles, error) {
	r := roles{App: prefix + "_app", System: prefix + "_system"}
	for _, p := range []*string{&r.AppPassword, &r.SystemPassword} {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return r, err
		}
		*p = base64.RawURLEncoding.EncodeToString(b)
	}
	return r, nil
}

// createRoles creates (or updates) the app and system roles, as the owner.
//
// The app role gets what tenancy.CreateAppRole grants: DML on the tables of
// public and justpg, read-only access to the tenants table, nothing on the
// admin access log. The system role has BYPASSRLS, DML on the same tables,
// pg_read_all_data (backups dump every table) and CREATEDB; it is used only
// by the background components (job workers, the realtime listener, the
// files janitor, backups) and for provisioning a workspace at sign-up.
func createRoles(ctx context.Context, owner *pgxpool.Pool, tm *tenancy.Manager, r roles) error {
	if err := tm.CreateAppRole(ctx, owner, tenancy.AppRole{
		Name: r.App, Password: r.AppPassword, Schemas: []string{"public", "justpg"},
	}); err != nil {
		return err
	}
	qsys, err := ident.Quote(r.System)
	if err != nil {
		return err
	}
	pw, err := ident.Literal(r.SystemPassword)
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, owner, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT count(*) > 0 FROM pg_roles WHERE rolname = $1`, r.System).Scan(&exists); err != nil {
			return err
		}
		verb := "CREATE"
		if exists {
			verb = "ALTER"
		}
		stmts := []string{
			// CREATE ROLE takes no bind parameter; the password is a quoted literal.
			verb + ` ROLE ` + qsys + ` LOGIN NOSUPERUSER BYPASSRLS CREATEDB PASSWORD ` + pw,
			`GRANT pg_read_all_data TO ` + qsys,
		}
		for _, s := range []string{"public", "justpg"} {
			q, _ := ident.Quote(s)
			stmts = append(stmts,
				`GRANT USAGE ON SCHEMA `+q+` TO `+qsys,
				`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA `+q+` TO `+qsys,
				`GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA `+q+` TO `+qsys,
				`GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA `+q+` TO `+qsys)
		}
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("system role: %w", err)
			}
		}
		return nil
	})
}

// poolAs opens a pool on the owner's URL as another role.
func poolAs(ctx context.Context, ownerURL, user, password string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(ownerURL)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.User, cfg.ConnConfig.Password = user, password
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	return pgxpool.NewWithConfig(ctx, cfg)
}
