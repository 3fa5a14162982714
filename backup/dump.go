package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrDumpFailed is wrapped when pg_dump fails or is killed; nothing of the
// unfinished backup is kept.
var ErrDumpFailed = errors.New("backup: pg_dump failed")

// Dump takes a logical backup of the pool's database with pg_dump and
// stores it in the repository with its manifest.
//
// It opens a REPEATABLE READ transaction, exports its snapshot, and runs
// pg_dump --snapshot while counting every table's rows in that same
// transaction, so the manifest's counts are exactly what the dump holds
// even while the application keeps writing. The dump streams from pg_dump
// through a SHA-256 hasher into the repository (never whole in memory); the
// manifest is written last, so a failed or killed dump leaves no backup
// behind and touches none of the existing ones.
func (m *Manager) Dump(ctx context.Context) (*Manifest, error) {
	started := time.Now().UTC()
	id := newID(started)
	conn, err := m.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer conn.Release()
	version, major, err := serverVersion(ctx, conn)
	if err != nil {
		return nil, err
	}
	tool, err := m.tool(ctx, "pg_dump", major)
	if err != nil {
		return nil, err
	}
	compressArg, compression, err := compressFlag(m.cfg.Compression, tool)
	if err != nil {
		return nil, err
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var snapshot, dbname string
	// Row security off: counting (like pg_dump) must see every row or fail,
	// never silently count fewer. No timeouts, as pg_dump sets for itself:
	// counting a large table may take longer than a statement_timeout the
	// role has, and the transaction idles while pg_dump finishes.
	if err := tx.QueryRow(ctx, `SELECT set_config('row_security', 'off', true), `+noTimeoutsSQL+`, pg_export_snapshot(), current_database()`).
		Scan(new(string), nil, nil, nil, &snapshot, &dbname); err != nil {
		return nil, fmt.Errorf("backup: exporting a snapshot: %w", err)
	}
	tables, err := listTables(ctx, tx)
	if err != nil {
		return nil, err
	}
	man := &Manifest{ID: id, Database: dbname, Format: m.cfg.Format, Compression: compression,
		ServerVersion: version, ToolVersion: tool.Version, Snapshot: snapshot, Started: started}
	m.log.InfoContext(ctx, "backup: dump started", "id", id, "database", dbname, "format", m.cfg.Format, "tables", len(tables))

	args := []string{"--no-password", "--snapshot=" + snapshot, "--format=" + string(m.cfg.Format)}
	if compressArg != "" {
		args = append(args, "--compress="+compressArg)
	}
	// Count in the snapshot's transaction while pg_dump runs; the
	// transaction (and so the snapshot) stays open until both are done.
	var (
		wg       sync.WaitGroup
		countErr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		countErr = countRows(ctx, tx, tables)
	}()
	var files []File
	var dumpErr error
	if m.cfg.Format == FormatDirectory {
		files, dumpErr = m.dumpDirectory(ctx, tool, args, id)
	} else {
		files, dumpErr = m.dumpCustom(ctx, tool, args, id)
	}
	wg.Wait()
	if countErr != nil {
		// A failed count aborts the snapshot's transaction, which may be
		// what made pg_dump fail too: report the cause.
		dumpErr = fmt.Errorf("backup: counting rows: %w", countErr)
	}
	if dumpErr != nil {
		m.removeBackup(context.WithoutCancel(ctx), id)
		m.log.ErrorContext(ctx, "backup: dump failed", "id", id, "err", dumpErr)
		return nil, dumpErr
	}
	_ = tx.Rollback(ctx)
	man.Files = files
	man.Tables = tables
	for _, f := range files {
		man.Size += f.Size
	}
	man.SHA256 = backupDigest(m.cfg.Format, files)
	man.Finished = time.Now().UTC()
	if err := putJSON(ctx, m.cfg.Repository, logicalPrefix+id+"/manifest.json", man); err != nil {
		m.removeBackup(context.WithoutCancel(ctx), id)
		return nil, fmt.Errorf("backup: writing manifest: %w", err)
	}
	m.log.InfoContext(ctx, "backup: dump finished", "id", id, "bytes", man.Size, "rows", man.TotalRows(),
		"duration", man.Finished.Sub(started))
	return man, nil
}

// backupDigest is the manifest's SHA256: the dump file's digest (custom)
// or the digest of the sorted "digest  name" lines (directory).
func backupDigest(format Format, files []File) string {
	if format != FormatDirectory && len(files) == 1 {
		return files[0].SHA256
	}
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s  %s\n", f.SHA256, f.Name)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// compressFlag turns Config.Compression into pg_dump's --compress value for
// this pg_dump version (15 and older take only a gzip level).
func compressFlag(c string, t Tool) (arg, label string, err error) {
	if c == "" {
		if t.Major >= 16 {
			return "zstd", "zstd", nil
		}
		return "", "gzip", nil
	}
	if t.Major >= 16 {
		return c, c, nil
	}
	method, level, hasLevel := strings.Cut(c, ":")
	switch method {
	case "none":
		return "0", "none", nil
	case "gzip":
		if hasLevel {
			return level, c, nil
		}
		return "", "gzip", nil
	case "lz4", "zstd":
		return "", "", &ToolError{Tool: "pg_dump", Need: 16, Found: []Tool{t}, Err: fmt.Errorf("%w: compression %s needs pg_dump 16", ErrToolTooOld, method)}
	default: // a bare level
		return c, "gzip:" + c, nil
	}
}

// listTables returns the tables whose data pg_dump dumps: ordinary tables
// (including partitions) outside the system schemas that do not belong to
// an extension, sorted by schema and name.
func listTables(ctx context.Context, db DB) ([]TableCount, error) {
	rows, err := db.Query(ctx, `
		SELECT n.nspname, c.relname
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND c.relpersistence <> 't'
		  AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE E'pg\\_%'
		  AND NOT EXISTS (SELECT 1 FROM pg_depend d
		                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
		ORDER BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("backup: listing tables: %w", err)
	}
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (TableCount, error) {
		var t TableCount
		err := r.Scan(&t.Schema, &t.Table)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("backup: listing tables: %w", err)
	}
	return tables, nil
}

// countRows fills in exact row counts in one round trip.
func countRows(ctx context.Context, db DB, tables []TableCount) error {
	if len(tables) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, t := range tables {
		b.Queue(`SELECT count(*) FROM ` + pgx.Identifier{t.Schema, t.Table}.Sanitize())
	}
	br := db.SendBatch(ctx, b)
	for i := range tables {
		if err := br.QueryRow().Scan(&tables[i].Rows); err != nil {
			_ = br.Close()
			return fmt.Errorf("%s.%s: %w", tables[i].Schema, tables[i].Table, err)
		}
	}
	return br.Close()
}

// dumpCustom streams pg_dump's output through the hasher into the
// repository.
func (m *Manager) dumpCustom(ctx context.Context, tool Tool, args []string, id string) ([]File, error) {
	env, cleanup, err := m.conn.env()
	if err != nil {
		return nil, err
	}
	defer cleanup()
	cmd := exec.CommandContext(ctx, tool.Path, append(args, "--dbname="+m.conn.String())...)
	cmd.Env = env
	cmd.WaitDelay = 10 * time.Second
	stderr := &tailBuffer{max: 16 << 10}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: starting %s: %w", ErrDumpFailed, tool.Path, err)
	}
	h := sha256.New()
	src := &cmdReader{r: stdout, cmd: cmd, stderr: stderr}
	pr := &progressReader{r: src, fn: func(n int64) { m.progress("dump", id, n) }}
	n, err := m.cfg.Repository.Put(ctx, logicalPrefix+id+"/dump", io.TeeReader(pr, h))
	if !src.done {
		// The repository failed (disk full, unwritable): stop pg_dump.
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: pg_dump wrote nothing", ErrDumpFailed)
	}
	return []File{{Name: "dump", Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}}, nil
}

// dumpDirectory runs a parallel directory-format pg_dump into a staging
// directory, then stores every file with its digest.
func (m *Manager) dumpDirectory(ctx context.Context, tool Tool, args []string, id string) ([]File, error) {
	stage, err := os.MkdirTemp(m.cfg.TempDir, "justpg-dump-")
	if err != nil {
		return nil, fmt.Errorf("backup: staging directory: %w", err)
	}
	defer os.RemoveAll(stage)
	out := filepath.Join(stage, "d")
	env, cleanup, err := m.conn.env()
	if err != nil {
		return nil, err
	}
	defer cleanup()
	args = append(args, "--jobs="+strconv.Itoa(m.cfg.Jobs), "--file="+out, "--dbname="+m.conn.String())
	cmd := exec.CommandContext(ctx, tool.Path, args...)
	cmd.Env = env
	cmd.WaitDelay = 10 * time.Second
	stderr := &tailBuffer{max: 16 << 10}
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%w: %w: %s", ErrDumpFailed, err, stderr.String())
	}
	var names []string
	err = filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(out, p)
			names = append(names, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("backup: reading the dump: %w", err)
	}
	sort.Strings(names)
	var files []File
	var total int64
	for _, name := range names {
		f, err := os.Open(filepath.Join(out, filepath.FromSlash(name)))
		if err != nil {
			return nil, fmt.Errorf("backup: %w", err)
		}
		h := sha256.New()
		base := total
		pr := &progressReader{r: f, fn: func(n int64) { m.progress("dump", id, base+n) }}
		n, err := m.cfg.Repository.Put(ctx, logicalPrefix+id+"/dump.d/"+name, io.TeeReader(pr, h))
		f.Close()
		if err != nil {
			return nil, err
		}
		total += n
		files = append(files, File{Name: "dump.d/" + name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: pg_dump wrote no files", ErrDumpFailed)
	}
	return files, nil
}

// removeBackup deletes every object of backup id, manifest first so that a
// half-removed backup is never listed.
func (m *Manager) removeBackup(ctx context.Context, id string) {
	_ = removeBackupObjects(ctx, m.cfg.Repository, id)
}

func removeBackupObjects(ctx context.Context, repo Repository, id string) error {
	return removeObjects(ctx, repo, logicalPrefix+id+"/")
}

// cmdReader reads a command's stdout and, at the end, reports the
// command's failure instead of a clean EOF, so a killed pg_dump never
// yields a "complete" file.
type cmdReader struct {
	r      io.Reader
	cmd    *exec.Cmd
	stderr *tailBuffer
	done   bool
}

func (c *cmdReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF {
		c.done = true
		if werr := c.cmd.Wait(); werr != nil {
			return n, fmt.Errorf("%w: %w: %s", ErrDumpFailed, werr, c.stderr.String())
		}
	}
	return n, err
}

// tailBuffer keeps the last max bytes written to it (a command's stderr).
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = t.b[len(t.b)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}
