package pgtest

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// errNoBinaries is wrapped when no PostgreSQL server binaries can be found.
var errNoBinaries = errors.New("no PostgreSQL server binaries (initdb, postgres) found")

// FindBinDir returns the directory holding initdb and postgres: the one of
// initdb on PATH, else the newest /usr/lib/postgresql/<ver>/bin. The
// JUSTPG_PG_BINDIR variable overrides both.
func FindBinDir() (string, error) {
	if d := os.Getenv("JUSTPG_PG_BINDIR"); d != "" {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
		return "", fmt.Errorf("%w in JUSTPG_PG_BINDIR=%s", errNoBinaries, d)
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			d := filepath.Dir(real)
			if isExec(filepath.Join(d, "postgres")) {
				return d, nil
			}
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", errNoBinaries
}

func versionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// ClusterOptions configures a local throwaway cluster.
type ClusterOptions struct {
	// Settings are extra server settings passed as -c name=value, e.g.
	// wal_level or archive_mode. They override the defaults.
	Settings map[string]string
	// Durable keeps fsync, synchronous_commit and full_page_writes on. By
	// default they are off: a throwaway cluster trades durability for speed.
	Durable bool
}

// localCluster is a PostgreSQL cluster run from the local server binaries in
// a temporary directory.
type localCluster struct {
	binDir  string
	root    string // temporary directory holding data/ and the socket
	dataDir string
	port    int
	owner   *syscall.Credential // set when running as root
	opts    ClusterOptions
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// pgOwner returns the credential that runs the server binaries: nil for a
// normal user, the "postgres" system user when running as root (PostgreSQL
// refuses to run as root).
func pgOwner() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL must run as another user, and there is no %q system user (install the PostgreSQL server package, which creates it): %w", "postgres", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

func (c *localCluster) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.binDir, name), args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "TZ=UTC")
	if c.owner != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.owner}
		cmd.Dir = c.root
	}
	return cmd
}

func (c *localCluster) chown(path string) error {
	if c.owner == nil {
		return nil
	}
	return filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(c.owner.Uid), int(c.owner.Gid))
	})
}

var initdbArgs = []string{"-U", "postgres", "--auth=trust", "-E", "UTF8", "--lc-collate=C", "--lc-ctype=C.UTF-8", "--no-sync"}

// startLocal initialises (from the per-machine cache when possible) and
// starts a cluster.
func startLocal(ctx context.Context, opts ClusterOptions) (*localCluster, error) {
	binDir, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	owner, err := pgOwner()
	if err != nil {
		return nil, err
	}
	root, err := os.MkdirTemp("", "justpg-pg-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	c := &localCluster{binDir: binDir, root: root, dataDir: filepath.Join(root, "data"), owner: owner, opts: opts,
		logPath: filepath.Join(root, "postgres.log")}
	fail := func(err error) (*localCluster, error) {
		c.stop(context.Background())
		_ = os.RemoveAll(root)
		return nil, err
	}
	if err := os.Chmod(root, 0o700); err != nil {
		return fail(err)
	}
	if err := c.chown(root); err != nil {
		return fail(fmt.Errorf("pgtest: giving %s to the postgres user: %w", root, err))
	}
	if err := c.initData(); err != nil {
		return fail(err)
	}
	watchdog(root)
	for attempt := 0; ; attempt++ {
		if c.port, err = freePort(); err != nil {
			return fail(err)
		}
		err = c.start(ctx)
		if err == nil {
			return c, nil
		}
		// Another process may have taken the port between our probe and the
		// server's bind; try a few other ports before giving up.
		if attempt >= 3 || !strings.Contains(err.Error(), "in use") {
			return fail(err)
		}
	}
}

// initData lays out the data directory: a copy of the cached initialised
// cluster for this server version when there is one, else a fresh initdb
// whose result is cached for the next process.
func (c *localCluster) initData() error {
	cache := c.cachePath()
	if cache != "" {
		if _, err := os.Stat(filepath.Join(cache, "PG_VERSION")); err == nil {
			if err := copyTree(cache, c.dataDir); err == nil {
				return c.chown(c.dataDir)
			}
			_ = os.RemoveAll(c.dataDir)
		}
	}
	cmd := c.command("initdb", append([]string{"-D", c.dataDir}, initdbArgs...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgtest: initdb failed: %w\n%s", err, out)
	}
	if cache != "" {
		// Publish the cache atomically: copy to a private name, then rename.
		// A concurrent process that loses the rename race simply discards
		// its copy.
		_ = os.MkdirAll(filepath.Dir(cache), 0o755)
		tmp := fmt.Sprintf("%s.tmp-%d", cache, os.Getpid())
		if err := copyTree(c.dataDir, tmp); err == nil {
			if os.Rename(tmp, cache) != nil {
				_ = os.RemoveAll(tmp)
			}
		} else {
			_ = os.RemoveAll(tmp)
		}
	}
	return nil
}

// cachePath is where the initialised cluster of this server version is
// cached, or "" when there is no usable cache directory.
func (c *localCluster) cachePath() string {
	if os.Getenv("JUSTPG_PG_NOCACHE") != "" {
		return ""
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	out, err := exec.Command(filepath.Join(c.binDir, "postgres"), "--version").Output()
	if err != nil {
		return ""
	}
	h := sha256.Sum256([]byte(string(out) + c.binDir + strings.Join(initdbArgs, " ")))
	return filepath.Join(dir, "justpg", "pgdata-"+hex.EncodeToString(h[:8]))
}

// copyTree copies a directory of regular files and directories.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(target, info.Mode().Perm()|0o700)
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (c *localCluster) settings() map[string]string {
	s := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"port":                    strconv.Itoa(c.port),
		"unix_socket_directories": c.root,
		"max_connections":         "300",
		"shared_buffers":          "128MB",
		"max_wal_size":            "2GB",
		"fsync":                   "off",
		"synchronous_commit":      "off",
		"full_page_writes":        "off",
		"timezone":                "UTC",
		"log_min_messages":        "warning",
		"log_line_prefix":         "%m [%p] %d ",
	}
	if c.opts.Durable {
		delete(s, "fsync")
		delete(s, "synchronous_commit")
		delete(s, "full_page_writes")
	}
	for k, v := range c.opts.Settings {
		s[k] = v
	}
	return s
}

// start runs the postmaster as a child of this process and waits until it
// accepts connections. The child gets SIGQUIT (immediate shutdown) if this
// process dies, however it dies.
func (c *localCluster) start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	args := []string{"-D", c.dataDir}
	keys := make([]string, 0)
	set := c.settings()
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-c", k+"="+set[k])
	}
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer logf.Close()
	start := c.command("postgres", args...)
	start.Stdout, start.Stderr = logf, logf
	if start.SysProcAttr == nil {
		start.SysProcAttr = &syscall.SysProcAttr{}
	}
	start.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	start.SysProcAttr.Setpgid = true
	if err := spawn(start); err != nil {
		return fmt.Errorf("pgtest: starting postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = start.Wait(); close(exited) }()
	c.cmd, c.exited = start, exited

	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := pgx.Connect(ctx, c.url("postgres"))
		if err == nil {
			_ = conn.Close(ctx)
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("pgtest: postgres exited during start-up: %s", c.logTail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgtest: postgres did not accept connections within 60s: %s", c.logTail())
		}
	}
}

// stop shuts the server down (fast mode: disconnect clients, checkpoint).
func (c *localCluster) stop(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.exited:
	case <-ctx.Done():
		_ = c.cmd.Process.Signal(syscall.SIGQUIT)
		<-c.exited
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Signal(syscall.SIGQUIT)
		<-c.exited
	}
	c.cmd = nil
}

func (c *localCluster) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

func (c *localCluster) logTail() string {
	f, err := os.Open(c.logPath)
	if err != nil {
		return "(no log)"
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 20 {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// spawn starts commands from one OS thread that never exits: Pdeathsig fires
// when the thread that forked the child exits, not the process, so starting
// from an arbitrary goroutine's thread could kill the server early.
var (
	spawnOnce sync.Once
	spawnReqs chan spawnReq
)

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnReqs = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for r := range spawnReqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	r := spawnReq{cmd: cmd, done: make(chan error, 1)}
	spawnReqs <- r
	return <-r.done
}

// watchdog starts a detached shell that removes dir once this process has
// exited and the server in it has stopped: the clean-up that still happens
// after a panic, a failed test binary or a kill.
func watchdog(dir string) {
	script := `p=$1; d=$2
while [ -d /proc/$p ]; do sleep 0.5; done
if [ -f "$d/data/postmaster.pid" ]; then
  pm=$(head -n 1 "$d/data/postmaster.pid")
  [ -n "$pm" ] && kill -QUIT "$pm" 2>/dev/null
  i=0; while [ -n "$pm" ] && [ -d /proc/$pm ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
fi
rm -rf "$d"`
	cmd := exec.Command("/bin/sh", "-c", script, "justpg-watchdog", strconv.Itoa(os.Getpid()), dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if cmd.Start() == nil {
		_ = cmd.Process.Release()
	}
}
