package backup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// BaseBackupOptions configures BaseBackup.
type BaseBackupOptions struct {
	// ConnString connects as a role with the REPLICATION attribute (or a
	// superuser); pg_hba.conf must allow it replication connections.
	ConnString string
	// Dir is the target directory; it must not exist or be empty.
	Dir string
	// BinDir is where pg_basebackup lives; empty: found like pg_dump.
	BinDir string
	// Spread makes the starting checkpoint a spread one (gentler on a busy
	// server, slower to start); default a fast checkpoint.
	Spread bool
	// MaxRate limits the transfer rate, in pg_basebackup's syntax ("32M");
	// empty: unlimited.
	MaxRate string
	// Compress gzips the tar files (StoreBaseBackup only).
	Compress bool
	// TempDir stages the tar files before StoreBaseBackup stores them; it
	// needs room for one base backup. Default os.TempDir().
	TempDir string

	tar bool // tar format (StoreBaseBackup)
}

// BaseBackupInfo describes a finished base backup.
type BaseBackupInfo struct {
	Dir           string    // the base backup directory
	ServerVersion string    // server_version of the backed-up cluster
	ToolVersion   string    // pg_basebackup's version
	Started       time.Time // when pg_basebackup started
	Finished      time.Time // when it finished
	Size          int64     // bytes on disk
}

// BaseBackup takes a physical backup of the whole cluster with
// pg_basebackup in plain format, with the WAL needed to make it consistent
// streamed alongside (-X stream) and a backup_manifest with SHA-256
// checksums that VerifyBaseBackup checks. Combined with WAL archiving it is
// the starting point of point-in-time recovery.
func BaseBackup(ctx context.Context, opts BaseBackupOptions) (*BaseBackupInfo, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("%w: BaseBackupOptions.Dir is empty", ErrConfig)
	}
	if entries, err := os.ReadDir(opts.Dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("%w: base backup directory %s is not empty", ErrConfig, opts.Dir)
	}
	ci, err := newConninfo(opts.ConnString)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.Connect(ctx, opts.ConnString)
	if err != nil {
		return nil, fmt.Errorf("backup: connecting: %w", err)
	}
	version, major, err := serverVersion(ctx, conn)
	conn.Close(context.WithoutCancel(ctx))
	if err != nil {
		return nil, err
	}
	tool, err := FindTool(ctx, opts.BinDir, "pg_basebackup", major)
	if err != nil {
		return nil, err
	}
	checkpoint := "fast"
	if opts.Spread {
		checkpoint = "spread"
	}
	format := "--format=plain"
	if opts.tar {
		format = "--format=tar"
	}
	args := []string{"--pgdata=" + opts.Dir, format, "--wal-method=stream", "--checkpoint=" + checkpoint,
		"--manifest-checksums=SHA256", "--no-password", "--dbname=" + ci.String()}
	if opts.tar && opts.Compress {
		args = append(args, "--gzip")
	}
	if opts.MaxRate != "" {
		args = append(args, "--max-rate="+opts.MaxRate)
	}
	env, cleanup, err := ci.env()
	if err != nil {
		return nil, err
	}
	defer cleanup()
	info := &BaseBackupInfo{Dir: opts.Dir, ServerVersion: version, ToolVersion: tool.Version, Started: time.Now().UTC()}
	cmd := exec.CommandContext(ctx, tool.Path, args...)
	cmd.Env = env
	cmd.WaitDelay = 10 * time.Second
	stderr := &tailBuffer{max: 16 << 10}
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		_ = os.RemoveAll(opts.Dir) // an unfinished base backup is useless
		return nil, fmt.Errorf("backup: pg_basebackup: %w: %s", err, stderr.String())
	}
	info.Finished = time.Now().UTC()
	_ = filepath.WalkDir(opts.Dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				info.Size += fi.Size()
			}
		}
		return nil
	})
	return info, nil
}

// VerifyBaseBackup checks a plain-format base backup against its
// backup_manifest with pg_verifybackup: every file's checksum and the WAL
// needed for consistency. A failure wraps ErrChecksum and quotes the tool.
func VerifyBaseBackup(ctx context.Context, binDir, dir string) error {
	tool, err := FindTool(ctx, binDir, "pg_verifybackup", 0)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, tool.Path, "--quiet", dir)
	out := &tailBuffer{max: 16 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("%w: pg_verifybackup %s: %s", ErrChecksum, dir, out.String())
		}
		return fmt.Errorf("backup: pg_verifybackup: %w", err)
	}
	return nil
}

// backupStartTime reads START TIME from a base backup's backup_label. ok is
// false when it cannot be read unambiguously.
func backupStartTime(dir string) (t time.Time, ok bool) {
	f, err := os.Open(filepath.Join(dir, "backup_label"))
	if err != nil {
		return time.Time{}, false
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 64<<10))
	for sc.Scan() {
		v, found := strings.CutPrefix(sc.Text(), "START TIME: ")
		if !found {
			continue
		}
		// Written in the server's log_timezone; only zones without
		// ambiguity are trusted.
		for _, layout := range []string{"2006-01-02 15:04:05 MST", "2006-01-02 15:04:05 -07"} {
			if t, err := time.Parse(layout, v); err == nil {
				name, off := t.Zone()
				if layout == "2006-01-02 15:04:05 MST" && name != "UTC" && name != "GMT" && off == 0 {
					return time.Time{}, false
				}
				return t, true
			}
		}
	}
	return time.Time{}, false
}
