package pgtest

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// PgBouncerOptions configures StartPgBouncer.
type PgBouncerOptions struct {
	// Database is the database on the server that clients reach through
	// PgBouncer, under the same name; required.
	Database string
	// User and Password are what PgBouncer logs in to the server with; every
	// client connection, whatever user it names, runs as User. Empty User
	// means the server's admin user.
	User, Password string
	// PoolMode is "transaction" (the default), "session" or "statement".
	PoolMode string
	// PoolSize is the number of server connections PgBouncer keeps for the
	// database; 0 means 4.
	PoolSize int
}

// PgBouncer is a PgBouncer process in front of a test server.
type PgBouncer struct {
	// Port is the loopback port PgBouncer listens on.
	Port int
	db   string
	cmd  *exec.Cmd
	done chan struct{}
}

// URL connects to the database through PgBouncer.
func (b *PgBouncer) URL() string {
	return fmt.Sprintf("postgres://pgbouncer_client@127.0.0.1:%d/%s?sslmode=disable", b.Port, url.PathEscape(b.db))
}

// FindPgBouncer returns the path of the pgbouncer binary (on PATH, or
// /usr/sbin/pgbouncer where the Debian package puts it).
func FindPgBouncer() (string, error) {
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/pgbouncer", "/usr/local/bin/pgbouncer", "/usr/local/sbin/pgbouncer"} {
		if isExec(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("pgtest: no pgbouncer binary on PATH or in /usr/sbin (Debian/Ubuntu: apt-get install pgbouncer)")
}

// StartPgBouncer starts PgBouncer on a free loopback port in front of srv,
// serving opts.Database, and stops it in tb.Cleanup. Clients authenticate
// with any user and no password (auth_type=any); PgBouncer logs in to the
// server as opts.User. As root it runs as the postgres system user. The test
// is skipped, with the reason, when the pgbouncer binary is missing.
func StartPgBouncer(tb testing.TB, srv *Server, opts PgBouncerOptions) *PgBouncer {
	tb.Helper()
	bin, err := FindPgBouncer()
	if err != nil {
		tb.Skip(err.Error())
	}
	if opts.Database == "" || strings.Trim(opts.Database, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") != "" {
		tb.Fatalf("pgtest: StartPgBouncer needs a database name of letters, digits and underscores, got %q", opts.Database)
	}
	if opts.PoolMode == "" {
		opts.PoolMode = "transaction"
	}
	if opts.PoolSize == 0 {
		opts.PoolSize = 4
	}
	sc, err := pgconn.ParseConfig(srv.AdminURL())
	if err != nil {
		tb.Fatal(err)
	}
	if opts.User == "" {
		opts.User, opts.Password = sc.User, sc.Password
	}
	owner, err := pgOwner()
	if err != nil {
		tb.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "justpg-pgbouncer-")
	if err != nil {
		tb.Fatal(err)
	}
	b := &PgBouncer{db: opts.Database, done: make(chan struct{})}
	tb.Cleanup(func() {
		b.stop()
		_ = os.RemoveAll(dir)
	})

	host := sc.Host
	if strings.HasPrefix(host, "/") {
		host = "127.0.0.1"
	}
	conn := fmt.Sprintf("host=%s port=%d dbname=%s user=%s", host, sc.Port, connValue(opts.Database), connValue(opts.User))
	if opts.Password != "" {
		conn += " password=" + connValue(opts.Password)
	}
	for attempt := 0; ; attempt++ {
		if b.Port, err = freePort(); err != nil {
			tb.Fatal(err)
		}
		ini := strings.Join([]string{
			"[databases]",
			opts.Database + " = " + conn,
			"[pgbouncer]",
			"listen_addr = 127.0.0.1",
			"listen_port = " + strconv.Itoa(b.Port),
			"unix_socket_dir =",
			"auth_type = any",
			"pool_mode = " + opts.PoolMode,
			"default_pool_size = " + strconv.Itoa(opts.PoolSize),
			"max_client_conn = 500",
			"ignore_startup_parameters = extra_float_digits",
			"logfile = " + filepath.Join(dir, "pgbouncer.log"),
			"pidfile = " + filepath.Join(dir, "pgbouncer.pid"),
			"",
		}, "\n")
		iniPath := filepath.Join(dir, "pgbouncer.ini")
		if err := os.WriteFile(iniPath, []byte(ini), 0o600); err != nil {
			tb.Fatal(err)
		}
		if owner != nil {
			for _, p := range []string{dir, iniPath} {
				if err := os.Chown(p, int(owner.Uid), int(owner.Gid)); err != nil {
					tb.Fatal(err)
				}
			}
		}
		cmd := exec.Command(bin, iniPath)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: owner, Pdeathsig: syscall.SIGKILL, Setpgid: true}
		if err := spawn(cmd); err != nil {
			tb.Fatalf("pgtest: starting pgbouncer: %v", err)
		}
		b.cmd, b.done = cmd, make(chan struct{})
		done := b.done
		go func() { _ = cmd.Wait(); close(done) }()
		if err = b.waitReady(); err == nil {
			return b
		}
		b.stop()
		if attempt >= 3 {
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			tb.Fatalf("pgtest: pgbouncer did not start: %v\n%s", err, log)
		}
	}
}

func (b *PgBouncer) waitReady() error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-b.done:
			return fmt.Errorf("pgbouncer exited")
		default:
		}
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(b.Port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("pgbouncer did not listen on port %d within 15s", b.Port)
}

func (b *PgBouncer) stop() {
	if b.cmd != nil && b.cmd.Process != nil {
		_ = b.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-b.done:
		case <-time.After(10 * time.Second):
			_ = b.cmd.Process.Kill()
			<-b.done
		}
		b.cmd = nil
	}
}

// connValue quotes a value for a libpq-style connection string.
func connValue(v string) string {
	if v != "" && !strings.ContainsAny(v, ` '\=`) {
		return v
	}
	return quoteConnValue(v)
}
