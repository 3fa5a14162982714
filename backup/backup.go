package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/internal/pgdb"
)

// DB runs statements: a *pgxpool.Pool, *pgxpool.Conn, *pgx.Conn or pgx.Tx.
type DB = pgdb.DB

// Config configures a Manager. The zero value of every field but Repository
// is a sane default.
type Config struct {
	// Repository is where backups are written. Required.
	Repository Repository
	// BinDir is the directory of pg_dump and pg_restore. Empty: PATH and the
	// usual installation directories, preferring the server's version.
	BinDir string
	// Format of new dumps; default FormatCustom.
	Format Format
	// Jobs is the number of parallel jobs of directory-format dumps and of
	// restores from local files; default 1.
	Jobs int
	// Compression is passed to pg_dump --compress: "zstd", "zstd:3", "gzip",
	// "gzip:9", "lz4", "none" or a level "0".."9". Empty: zstd when pg_dump
	// is 16 or newer, else pg_dump's default (gzip).
	Compression string
	// TempDir holds directory-format dumps while they are written and drill
	// copies of non-local repositories; default os.TempDir().
	TempDir string
	// DrillConnString points drills at another server (a role that may
	// create databases). Empty: the pool's server, with the pool's
	// credentials (the role needs CREATEDB).
	DrillConnString string
	// OnDrill is called with the outcome of every drill, passed or failed:
	// wire it to alerting.
	OnDrill func(DrillReport)
	// Progress, if set, is called as bytes are written and restored, at
	// most a few times a second.
	Progress func(Progress)
	// Logger receives one line per dump, drill and prune; default discards.
	Logger *slog.Logger
}

// Progress is a progress report of a running operation.
type Progress struct {
	Op    string // "dump", "verify" or "restore"
	ID    string // backup ID
	Bytes int64  // bytes processed so far
}

// Manager takes, lists, drills and prunes the logical backups of the
// database its pool is connected to.
type Manager struct {
	pool *pgxpool.Pool
	cfg  Config
	conn conninfo // the pool's database
	log  *slog.Logger

	toolMu sync.Mutex
	tools  map[string]Tool
}

// ErrConfig is wrapped by configuration errors from New.
var ErrConfig = errors.New("backup: invalid configuration")

// New returns a Manager for the database pool is connected to.
func New(pool *pgxpool.Pool, cfg Config) (*Manager, error) {
	if pool == nil {
		return nil, fmt.Errorf("%w: nil pool", ErrConfig)
	}
	if cfg.Repository == nil {
		return nil, fmt.Errorf("%w: Repository is required", ErrConfig)
	}
	switch cfg.Format {
	case "":
		cfg.Format = FormatCustom
	case FormatCustom, FormatDirectory:
	default:
		return nil, fmt.Errorf("%w: unknown format %q (use %q or %q)", ErrConfig, cfg.Format, FormatCustom, FormatDirectory)
	}
	if cfg.Jobs < 0 || cfg.Jobs > 128 {
		return nil, fmt.Errorf("%w: Jobs %d out of range 0..128", ErrConfig, cfg.Jobs)
	}
	if cfg.Jobs == 0 {
		cfg.Jobs = 1
	}
	if err := validateCompression(cfg.Compression); err != nil {
		return nil, err
	}
	if cfg.TempDir == "" {
		cfg.TempDir = os.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ci, err := newConninfo(pool.Config().ConnString())
	if err != nil {
		return nil, err
	}
	if ci.database() == "" {
		ci = ci.withDB(pool.Config().ConnConfig.Database)
	}
	if cfg.DrillConnString != "" {
		if _, err := newConninfo(cfg.DrillConnString); err != nil {
			return nil, fmt.Errorf("%w: DrillConnString: %w", ErrConfig, err)
		}
	}
	return &Manager{pool: pool, cfg: cfg, conn: ci, log: cfg.Logger, tools: map[string]Tool{}}, nil
}

// ValidateCompression checks a Config.Compression value.
func validateCompression(c string) error {
	if c == "" || c == "none" {
		return nil
	}
	method, level, hasLevel := strings.Cut(c, ":")
	switch method {
	case "gzip", "lz4", "zstd":
	case "0", "1", "2", "3", "4", "5", "6", "7", "8", "9":
		if hasLevel {
			return fmt.Errorf("%w: compression %q", ErrConfig, c)
		}
		return nil
	default:
		return fmt.Errorf("%w: compression %q (use zstd, gzip, lz4, none, with an optional :level)", ErrConfig, c)
	}
	if hasLevel {
		if level == "" || len(level) > 2 || strings.Trim(level, "0123456789") != "" {
			return fmt.Errorf("%w: compression level in %q", ErrConfig, c)
		}
	}
	return nil
}

// tool finds (once) a client program at least as new as the server.
func (m *Manager) tool(ctx context.Context, name string, serverMajor int) (Tool, error) {
	key := fmt.Sprintf("%s/%d", name, serverMajor)
	m.toolMu.Lock()
	t, ok := m.tools[key]
	m.toolMu.Unlock()
	if ok {
		return t, nil
	}
	t, err := FindTool(ctx, m.cfg.BinDir, name, serverMajor)
	if err != nil {
		return Tool{}, err
	}
	m.toolMu.Lock()
	m.tools[key] = t
	m.toolMu.Unlock()
	return t, nil
}

// serverVersion returns the server's version string and major version.
func serverVersion(ctx context.Context, db DB) (string, int, error) {
	var v string
	var num int
	if err := db.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('server_version_num')::int`).Scan(&v, &num); err != nil {
		return "", 0, fmt.Errorf("backup: reading the server version: %w", err)
	}
	return v, num / 10000, nil
}

func (m *Manager) progress(op, id string, n int64) {
	if m.cfg.Progress != nil {
		m.cfg.Progress(Progress{Op: op, ID: id, Bytes: n})
	}
}

// progressReader reports bytes read through it, at most every 200ms.
type progressReader struct {
	r    interface{ Read([]byte) (int, error) }
	n    int64
	last time.Time
	fn   func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if p.fn != nil && (err != nil || time.Since(p.last) > 200*time.Millisecond) {
		p.last = time.Now()
		p.fn(p.n)
	}
	return n, err
}
