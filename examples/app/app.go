package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/auth"
	"github.com/justpg/justpg/backup"
	"github.com/justpg/justpg/files"
	"github.com/justpg/justpg/jobs"
	"github.com/justpg/justpg/realtime"
	"github.com/justpg/justpg/search"
	"github.com/justpg/justpg/tenancy"
)

// Options configure the app. main fills them from flags and the
// environment; the tests fill them directly.
type Options struct {
	// OwnerURL connects as the role that owns (or will own) the tables: it
	// runs the migrations, protects the tables and creates the two roles
	// below. Required.
	OwnerURL string
	// RolePrefix names the roles the app creates: <prefix>_app (row-level
	// security applies, owns nothing) and <prefix>_system (BYPASSRLS, for
	// background work). Default "justpg_demo".
	RolePrefix string
	// BackupDir is the backup repository; "" makes a temporary one.
	BackupDir string
	// SecureCookie marks the session cookie Secure (serve over HTTPS);
	// without it the cookie works on plain-HTTP localhost.
	SecureCookie bool
	// IPLimit is auth's per-address limit of log-in, sign-up and invite
	// attempts per minute; 0 means auth's default (30), negative none.
	IPLimit int
	// DigestSchedule and BackupSchedule are the periodic jobs' cron
	// schedules (UTC); defaults "0 7 * * *" and "15 2 * * *".
	DigestSchedule, BackupSchedule string
	// AdminWorkspace is the slug of the operator's workspace, whose owners
	// see the admin page (backups of the whole instance); "" means the
	// first workspace signed up.
	AdminWorkspace string
	// Retention prunes backups after each drill; the zero value keeps 7
	// daily, 4 weekly and 6 monthly backups.
	Retention backup.Retention
	// Workers is the number of concurrent jobs; default 4.
	Workers int
	// MaxUpload is the largest attachment in bytes; default 25 MiB.
	MaxUpload int64
	// Hasher hashes passwords; nil means auth's default (argon2id at
	// OWASP's parameters). The tests use cheaper parameters.
	Hasher auth.Hasher
	// Logger receives the app's logs; nil means slog.Default().
	Logger *slog.Logger
}

// App is the running application: its pools, the seven packages' clients
// and the HTTP handler.
type App struct {
	opt     Options
	log     *slog.Logger
	owner   *pgxpool.Pool // migrations and set-up only
	app     *pgxpool.Pool // request work, always through tenancy.WithTenant
	sys     *pgxpool.Pool // background work across tenants (BYPASSRLS)
	tm      *tenancy.Manager
	auth    *auth.Auth
	jobs    *jobs.Client
	broker  *realtime.Broker
	bridge  *realtime.Bridge
	store   *files.Store
	notesIx *search.Index
	attIx   *search.Index
	backups *backup.Manager
	handler http.Handler
	tmpDir  string
}

// Open sets the database up (migrations, row-level security, roles),
// connects the app and system pools and starts the background components:
// job workers, the realtime listener.
func Open(ctx context.Context, opt Options) (a *App, err error) {
	if opt.OwnerURL == "" {
		return nil, errors.New("app: no database URL")
	}
	if opt.RolePrefix == "" {
		opt.RolePrefix = "justpg_demo"
	}
	if opt.DigestSchedule == "" {
		opt.DigestSchedule = "0 7 * * *"
	}
	if opt.BackupSchedule == "" {
		opt.BackupSchedule = "15 2 * * *"
	}
	if opt.Retention == (backup.Retention{}) {
		opt.Retention = backup.Retention{Daily: 7, Weekly: 4, Monthly: 6}
	}
	if opt.Workers <= 0 {
		opt.Workers = 4
	}
	if opt.MaxUpload <= 0 {
		opt.MaxUpload = 25 << 20
	}
	a = &App{opt: opt, log: opt.Logger}
	if a.log == nil {
		a.log = slog.Default()
	}
	defer func() {
		if err != nil {
			a.Close(context.WithoutCancel(ctx))
			a = nil
		}
	}()

	if a.owner, err = pgxpool.New(ctx, opt.OwnerURL); err != nil {
		return a, err
	}
	if a.tm, err = tenancy.New(tenancy.Config{Logger: a.log}); err != nil {
		return a, err
	}
	if err = migrateAll(ctx, a.owner); err != nil {
		return a, fmt.Errorf("migrate: %w", err)
	}
	r, err := newRoles(opt.RolePrefix)
	if err != nil {
		return a, err
	}
	if err = createRoles(ctx, a.owner, a.tm, r); err != nil {
		return a, fmt.Errorf("roles: %w", err)
	}
	if a.app, err = poolAs(ctx, opt.OwnerURL, r.App, r.AppPassword, 0); err != nil {
		return a, err
	}
	if err = tenancy.Check(ctx, a.app); err != nil {
		return a, err // never serve requests on a role that bypasses RLS
	}
	if a.sys, err = poolAs(ctx, opt.OwnerURL, r.System, r.SystemPassword, int32(opt.Workers)+6); err != nil {
		return a, err
	}

	if a.notesIx, a.attIx, err = searchIndexes(); err != nil {
		return a, err
	}
	if a.auth, err = auth.New(a.app, auth.Config{
		Mailer:         inviteMailer{},
		Hasher:         opt.Hasher,
		InsecureCookie: !opt.SecureCookie,
		CookieName:     cookieName(opt.SecureCookie),
		IPLimit:        opt.IPLimit,
		// Invitations are reset-style tokens (see handleInvite).
		ResetTokenTTL: 72 * time.Hour,
		Logger:        a.log,
	}); err != nil {
		return a, err
	}
	if a.store, err = files.New(files.Config{MaxSize: opt.MaxUpload, Logger: a.log}); err != nil {
		return a, err
	}

	dir := opt.BackupDir
	if dir == "" {
		if a.tmpDir, err = os.MkdirTemp("", "justpg-app-backups-"); err != nil {
			return a, err
		}
		dir = a.tmpDir
	}
	if err = os.MkdirAll(dir, 0o700); err != nil {
		return a, err
	}
	repo, err := backup.NewDirRepository(filepath.Clean(dir))
	if err != nil {
		return a, err
	}
	// Dumps run as the system role (BYPASSRLS and pg_read_all_data: every
	// workspace's rows, never a silently partial dump). Drills restore into
	// a temporary database as the owner, who can recreate every object with
	// its owner and grants.
	if a.backups, err = backup.New(a.sys, backup.Config{
		Repository: repo, DrillConnString: opt.OwnerURL, Logger: a.log,
	}); err != nil {
		return a, err
	}

	if a.broker, err = realtime.New(a.sys, realtime.Config{Logger: a.log}); err != nil {
		return a, err
	}
	// The listener and the workers live until Close, whatever ctx does.
	if err = a.broker.Start(context.WithoutCancel(ctx)); err != nil {
		return a, err
	}
	if a.bridge, err = realtime.NewBridge(a.broker, realtime.BridgeConfig{
		Authorize: a.authorizeLive, Logger: a.log,
	}); err != nil {
		return a, err
	}
	if a.jobs, err = a.newJobs(); err != nil {
		return a, err
	}
	if err = a.jobs.Start(context.WithoutCancel(ctx)); err != nil {
		return a, err
	}
	if a.handler, err = a.routes(); err != nil {
		return a, err
	}
	return a, nil
}

func cookieName(secure bool) string {
	if secure {
		return "__Host-session"
	}
	return "justpg_session"
}

// Handler is the app's HTTP handler.
func (a *App) Handler() http.Handler { return a.handler }

// Close stops the job workers (running jobs get until ctx ends to finish)
// and the realtime listener, and closes the pools.
func (a *App) Close(ctx context.Context) {
	if a.jobs != nil {
		if err := a.jobs.Stop(ctx); err != nil {
			a.log.Warn("stopping jobs", "err", err)
		}
	}
	if a.broker != nil {
		if err := a.broker.Stop(ctx); err != nil {
			a.log.Warn("stopping realtime", "err", err)
		}
	}
	for _, p := range []*pgxpool.Pool{a.app, a.sys, a.owner} {
		if p != nil {
			p.Close()
		}
	}
	if a.tmpDir != "" {
		_ = os.RemoveAll(a.tmpDir)
	}
}
