// Command app is a small team notebook — a SaaS app built on all seven
// justpg packages and nothing but PostgreSQL:
//
//   - auth: sign-up, log-in/out, invitations by link, sessions with "log out
//     other sessions";
//   - tenancy: every sign-up creates a workspace (a tenant); every request
//     runs in a transaction scoped to it, as a role row-level security
//     applies to, and every per-workspace table — the app's and every
//     package's — is protected by a policy;
//   - files: attachments streamed into PostgreSQL, downloads with Range;
//   - jobs: thumbnails of images and previews of text files made in the
//     background, a daily digest, live job progress;
//   - search: search-as-you-type over notes and file names, typo-tolerant,
//     with highlights;
//   - realtime: notes appear in teammates' browsers as they are written,
//     mentions notify the mentioned user; nothing crosses workspaces;
//   - backup: daily logical backups, each proved by a restore drill; the
//     admin page shows the last one and its restore time, and runs one now.
//
// Run it with no set-up (a throwaway PostgreSQL server is started when
// DATABASE_URL is unset) and open the address it prints:
//
//	go run ./examples/app
//
// Configuration is by flags or the environment variables named in -h.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/justpg/justpg/internal/pgtest"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "app:", err)
		os.Exit(1)
	}
}

// env returns the environment variable's value, or def.
func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func run(args []string) error {
	fs := flag.NewFlagSet("app", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: go run ./examples/app [flags]

A team notebook on the seven justpg packages. With DATABASE_URL unset it
starts a throwaway PostgreSQL server (Docker or the local server binaries)
and removes it on exit.

Flags (each also read from the environment variable in brackets):
`)
		fs.PrintDefaults()
		fmt.Fprint(fs.Output(), `
DATABASE_URL is the connection string of the role that owns the tables (it
runs the migrations and creates the <prefix>_app and <prefix>_system roles,
so it needs CREATEROLE). SIGINT or SIGTERM shuts down gracefully: requests
and running jobs get -shutdown-timeout to finish.
`)
	}
	addr := fs.String("addr", env("ADDR", "127.0.0.1:8080"), "listen address [ADDR]")
	rolePrefix := fs.String("role-prefix", env("ROLE_PREFIX", "justpg_demo"), "prefix of the app and system roles [ROLE_PREFIX]")
	backupDir := fs.String("backup-dir", env("BACKUP_DIR", ""), "backup repository directory; empty: a temporary one [BACKUP_DIR]")
	secure := fs.Bool("secure-cookie", env("SECURE_COOKIE", "") == "true", "send the session cookie only over HTTPS (__Host- prefix) [SECURE_COOKIE=true]")
	ipLimit := fs.Int("ip-limit", envInt("IP_LIMIT", 0), "log-in/sign-up attempts per address per minute; 0: 30, negative: no limit [IP_LIMIT]")
	digest := fs.String("digest-schedule", env("DIGEST_SCHEDULE", "0 7 * * *"), "cron schedule (UTC) of the daily digest [DIGEST_SCHEDULE]")
	backups := fs.String("backup-schedule", env("BACKUP_SCHEDULE", "15 2 * * *"), "cron schedule (UTC) of the backup and drill [BACKUP_SCHEDULE]")
	adminWS := fs.String("admin-workspace", env("ADMIN_WORKSPACE", ""), "workspace whose owners see the admin page (backups); empty: the first one signed up [ADMIN_WORKSPACE]")
	workers := fs.Int("workers", envInt("WORKERS", 4), "concurrent background jobs [WORKERS]")
	maxUpload := fs.Int64("max-upload", int64(envInt("MAX_UPLOAD", 25<<20)), "largest attachment in bytes [MAX_UPLOAD]")
	shutdown := fs.Duration("shutdown-timeout", 15*time.Second, "grace period for requests and jobs on shutdown")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if os.Getenv("DATABASE_URL") == "" {
		log.Info("DATABASE_URL is not set: starting a throwaway PostgreSQL server")
	}
	url, stopDB, err := pgtest.ExampleDatabase(ctx, "justpg_app")
	if err != nil {
		return err
	}
	defer stopDB()

	app, err := Open(ctx, Options{
		OwnerURL: url, RolePrefix: *rolePrefix, BackupDir: *backupDir, SecureCookie: *secure,
		IPLimit: *ipLimit, AdminWorkspace: *adminWS, DigestSchedule: *digest, BackupSchedule: *backups, Workers: *workers,
		MaxUpload: *maxUpload, Logger: log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		app.Close(context.Background())
		return err
	}
	srv := &http.Server{
		Handler:           app.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Printf("\n  justpg notes is running: open http://%s/\n\n", ln.Addr())

	select {
	case err = <-errc:
	case <-ctx.Done():
		log.Info("shutting down")
	}
	sctx, cancel := context.WithTimeout(context.Background(), *shutdown)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil && err == nil {
		err = serr
	}
	app.Close(sctx)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
