// Package pgtest provides a PostgreSQL server for justpg's tests and examples,
// and a fresh database per test.
//
// A server is found once per process, in this order:
//
//  1. JUSTPG_TEST_DATABASE_URL, when set: any reachable server, used as is
//     (the role needs CREATEDB);
//  2. a PostgreSQL container through testcontainers-go, when a Docker engine
//     answers (image from JUSTPG_TEST_IMAGE, else postgres:<major>-alpine
//     matching the local client tools so they are never older than the
//     server, else DefaultImage);
//  3. a throwaway cluster from the local server binaries (initdb and postgres
//     on PATH or under /usr/lib/postgresql/<ver>/bin, newest first), in a
//     temporary directory, on a free loopback port, with durability off. As
//     root the binaries run as the "postgres" system user. The initialised
//     data directory is cached per machine, so initdb runs once.
//
// The local cluster is stopped and its directory removed when the process
// exits, also after a panic or a kill: the server is a child that receives
// SIGQUIT when this process dies, and a detached watchdog removes the files.
//
// NewDB gives each test its own database, cloned from a template that has the
// extensions justpg uses (pg_trgm, unaccent, pgcrypto, citext), and drops it
// in t.Cleanup. Tests using it call t.Parallel(). JUSTPG_TEST_EXEC_MODE runs
// its pools in another pgx query exec mode (see EnvExecMode).
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Environment variables read by this package.
const (
	// EnvURL names a server to use instead of starting one.
	EnvURL = "JUSTPG_TEST_DATABASE_URL"
	// EnvImage overrides the container image.
	EnvImage = "JUSTPG_TEST_IMAGE"
	// EnvNoDocker, when set, skips the Docker probe.
	EnvNoDocker = "JUSTPG_TEST_NO_DOCKER"
)

// DefaultImage is the container image used when a Docker engine answers.
const DefaultImage = "postgres:17-alpine"

// Extensions are created in every template database.
var Extensions = []string{"pg_trgm", "unaccent", "pgcrypto", "citext"}

// Kind says where a Server came from.
type Kind string

// The kinds of server.
const (
	KindURL       Kind = "url"
	KindContainer Kind = "container"
	KindLocal     Kind = "local"
)

// ErrNotLocal is returned by operations that need a local cluster (restart,
// binaries, data directory) on a server that is not one.
var ErrNotLocal = errors.New("pgtest: operation needs a local cluster")

// HowToGetOne is the message given when no server can be found.
const HowToGetOne = `pgtest: no PostgreSQL server available. Do one of:
  - install the PostgreSQL server package (Debian/Ubuntu: apt-get install postgresql), so that
    initdb and postgres are on PATH or under /usr/lib/postgresql/<version>/bin;
  - start a Docker engine (testcontainers-go will run ` + DefaultImage + `);
  - set ` + EnvURL + ` to a server where the role may CREATE DATABASE.`

// Server is a PostgreSQL server for tests and examples.
type Server struct {
	id        uint64 // distinguishes servers in the template cache
	kind      Kind
	adminURL  string // connects as a role that can create databases
	local     *localCluster
	container interface{ Terminate(context.Context) error }
	stopOnce  sync.Once
}

// Kind reports where the server came from.
func (s *Server) Kind() Kind { return s.kind }

// AdminURL connects to the server's maintenance database as a role that can
// create and drop databases (the superuser for local clusters and containers).
func (s *Server) AdminURL() string { return s.adminURL }

// DatabaseURL is AdminURL pointed at database name.
func (s *Server) DatabaseURL(name string) string {
	u, err := url.Parse(s.adminURL)
	if err != nil || u.Scheme == "" {
		// A keyword/value connection string.
		return s.adminURL + " dbname=" + quoteConnValue(name)
	}
	u.Path = "/" + name
	return u.String()
}

func quoteConnValue(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// BinDir is the directory of the server binaries of a local cluster; the
// client tools there (pg_dump, pg_basebackup…) match the server's version.
func (s *Server) BinDir() (string, error) {
	if s.local == nil {
		return "", ErrNotLocal
	}
	return s.local.binDir, nil
}

// DataDir is a local cluster's data directory.
func (s *Server) DataDir() (string, error) {
	if s.local == nil {
		return "", ErrNotLocal
	}
	return s.local.dataDir, nil
}

// Port is the TCP port a local cluster listens on (on 127.0.0.1).
func (s *Server) Port() (int, error) {
	if s.local == nil {
		return 0, ErrNotLocal
	}
	return s.local.port, nil
}

// Owner reports the user that owns a local cluster's files and runs its
// server: this process's user normally, the postgres system user (asRoot)
// when this process is root. Tests that run server-side tools (an
// archive_command, pg_basebackup into the cluster's directories) use it.
func (s *Server) Owner() (uid, gid int, asRoot bool) {
	if s.local == nil || s.local.owner == nil {
		return os.Getuid(), os.Getgid(), false
	}
	return int(s.local.owner.Uid), int(s.local.owner.Gid), true
}

// Restart stops a local cluster (fast shutdown: every connection is closed)
// and starts it again on the same port and data. Pools see their connections
// fail and reconnect.
func (s *Server) Restart(ctx context.Context) error {
	if s.local == nil {
		return ErrNotLocal
	}
	s.local.stop(ctx)
	return s.local.start(ctx)
}

// StopServer stops a local cluster without removing it, so a test can observe
// clients while the server is down; StartServer starts it again.
func (s *Server) StopServer(ctx context.Context) error {
	if s.local == nil {
		return ErrNotLocal
	}
	s.local.stop(ctx)
	return nil
}

// StartServer starts a local cluster stopped with StopServer.
func (s *Server) StartServer(ctx context.Context) error {
	if s.local == nil {
		return ErrNotLocal
	}
	return s.local.start(ctx)
}

// Stop shuts the server down and removes a local cluster's files. A server
// found through the environment is left running. Stop is idempotent.
func (s *Server) Stop(ctx context.Context) error {
	var err error
	s.stopOnce.Do(func() {
		switch {
		case s.local != nil:
			s.local.stop(ctx)
			err = os.RemoveAll(s.local.root)
		case s.container != nil:
			err = s.container.Terminate(ctx)
		}
	})
	return err
}

// TerminateBackends ends every session connected to database dbname (other
// than the caller's) with pg_terminate_backend and returns how many it ended.
func (s *Server) TerminateBackends(ctx context.Context, dbname string) (int, error) {
	conn, err := pgx.Connect(ctx, s.adminURL)
	if err != nil {
		return 0, fmt.Errorf("pgtest: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var n int
	err = conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
		FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, dbname).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("pgtest: terminating backends of %s: %w", dbname, err)
	}
	return n, nil
}

// Start finds or starts a server as the package documentation describes. The
// caller owns it and stops it with Stop.
func Start(ctx context.Context) (*Server, error) {
	if u := os.Getenv(EnvURL); u != "" {
		return fromURL(ctx, u)
	}
	var dockerErr error
	if os.Getenv(EnvNoDocker) == "" {
		s, err := startContainer(ctx, containerImage())
		if err == nil {
			return s, nil
		}
		dockerErr = err
	}
	if _, err := FindBinDir(); err != nil {
		return nil, fmt.Errorf("%s\n(docker: %v; local binaries: %v)", HowToGetOne, dockerErr, err)
	}
	return StartLocal(ctx, ClusterOptions{})
}

// StartLocal starts a throwaway cluster from the local server binaries.
func StartLocal(ctx context.Context, opts ClusterOptions) (*Server, error) {
	c, err := startLocal(ctx, opts)
	if err != nil {
		if errors.Is(err, errNoBinaries) {
			return nil, fmt.Errorf("%s\n(%v)", HowToGetOne, err)
		}
		return nil, err
	}
	return newServer(&Server{kind: KindLocal, adminURL: c.url("postgres"), local: c}), nil
}

var serverIDs atomic.Uint64

func newServer(s *Server) *Server {
	s.id = serverIDs.Add(1)
	return s
}

// containerImage is JUSTPG_TEST_IMAGE, else the official image of the major
// version of the local client tools when there are any (so that pg_dump and
// friends are never older than the server, which backup tests need), else
// DefaultImage.
func containerImage() string {
	if img := os.Getenv(EnvImage); img != "" {
		return img
	}
	if major := localMajor(); major != "" {
		return "postgres:" + major + "-alpine"
	}
	return DefaultImage
}

// localMajor is the major version of the local PostgreSQL binaries, or "".
func localMajor() string {
	dir, err := FindBinDir()
	if err != nil {
		return ""
	}
	out, err := exec.Command(filepath.Join(dir, "postgres"), "--version").Output()
	if err != nil {
		return ""
	}
	return majorOf(string(out))
}

// majorOf extracts the major version from "postgres (PostgreSQL) 15.18 (…)".
func majorOf(version string) string {
	fields := strings.Fields(version)
	for i, f := range fields {
		if f == "(PostgreSQL)" && i+1 < len(fields) {
			major, _, _ := strings.Cut(fields[i+1], ".")
			if _, err := strconv.Atoi(major); err == nil {
				return major
			}
		}
	}
	return ""
}

func fromURL(ctx context.Context, u string) (*Server, error) {
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, u)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %s is set but the server does not answer: %w", EnvURL, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var canCreate bool
	if err := conn.QueryRow(cctx, `SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&canCreate); err != nil {
		return nil, fmt.Errorf("pgtest: checking the role of %s: %w", EnvURL, err)
	}
	if !canCreate {
		return nil, fmt.Errorf("pgtest: the role in %s cannot create databases; grant it CREATEDB", EnvURL)
	}
	srv := newServer(&Server{kind: KindURL, adminURL: u})
	dropStale(cctx, conn)
	return srv, nil
}

// staleAfter is how old a test database left on a shared server must be
// before a later run drops it: older than any test run, so never one in use.
const staleAfter = 6 * time.Hour

// dropStale removes test and template databases that a killed process left
// on a server found through the environment (createDatabase marks them with
// a dated comment). Errors are ignored: this is best-effort housekeeping.
func dropStale(ctx context.Context, conn *pgx.Conn) {
	rows, err := conn.Query(ctx, `SELECT datname, shobj_description(oid, 'pg_database')
		FROM pg_database WHERE datname LIKE E'justpg\\_t%' AND NOT datistemplate`)
	if err != nil {
		return
	}
	var stale []string
	for rows.Next() {
		var name string
		var comment *string
		if rows.Scan(&name, &comment) != nil || comment == nil {
			continue
		}
		stamp, ok := strings.CutPrefix(*comment, "justpg pgtest ")
		if t, err := time.Parse(time.RFC3339, stamp); ok && err == nil && time.Since(t) > staleAfter {
			stale = append(stale, name)
		}
	}
	rows.Close()
	for _, name := range stale {
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	}
}
