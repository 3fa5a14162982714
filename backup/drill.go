package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Drill errors.
var (
	// ErrChecksum is wrapped when a backup file is missing, has another
	// size or another SHA-256 than its manifest says (changed, truncated or
	// corrupted after it was written).
	ErrChecksum = errors.New("backup: checksum mismatch")
	// ErrDrillFailed is wrapped by every failed drill.
	ErrDrillFailed = errors.New("backup: restore drill failed")
)

// DrillReport is the outcome of one restore drill.
type DrillReport struct {
	ID       string // the backup drilled
	Database string // the database it was taken from
	Passed   bool
	// Err says why the drill failed (wraps ErrChecksum, ErrDrillFailed, a
	// *ToolError…); nil when it passed.
	Err     error
	Started time.Time
	// Verify is the time spent checking the files' SHA-256.
	Verify time.Duration
	// Restore is the time pg_restore took: the recovery time objective
	// this backup actually achieves.
	Restore time.Duration
	// Tables and Rows are what the restored database held.
	Tables int
	Rows   int64
	// Mismatches lists the tables whose restored contents differ from the
	// manifest.
	Mismatches []TableMismatch
	// DrillDatabase is the temporary database the backup was restored into
	// and dropped afterwards; empty when the drill failed before restoring.
	DrillDatabase string
}

// TableMismatch is a table whose restored row count differs from the
// manifest (Want -1: not in the manifest; Got -1: not restored).
type TableMismatch struct {
	Schema, Table string
	Want, Got     int64
}

// String describes the mismatch for a log line.
func (t TableMismatch) String() string {
	switch {
	case t.Got < 0:
		return fmt.Sprintf("%s.%s missing (want %d rows)", t.Schema, t.Table, t.Want)
	case t.Want < 0:
		return fmt.Sprintf("%s.%s not in the manifest (%d rows)", t.Schema, t.Table, t.Got)
	default:
		return fmt.Sprintf("%s.%s has %d rows, want %d", t.Schema, t.Table, t.Got, t.Want)
	}
}

// List returns the finished backups of the pool's database, oldest first.
func (m *Manager) List(ctx context.Context) ([]Backup, error) {
	all, err := listBackups(ctx, m.cfg.Repository)
	if err != nil {
		return nil, err
	}
	db := m.conn.database()
	out := all[:0]
	for _, b := range all {
		if b.Database == db {
			out = append(out, b)
		}
	}
	return out, nil
}

// Manifest reads the manifest of backup id.
func (m *Manager) Manifest(ctx context.Context, id string) (*Manifest, error) {
	return readManifest(ctx, m.cfg.Repository, id)
}

func readManifest(ctx context.Context, repo Repository, id string) (*Manifest, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	var man Manifest
	if err := getJSON(ctx, repo, logicalPrefix+id+"/manifest.json", &man); err != nil {
		return nil, err
	}
	if man.ID != id {
		return nil, fmt.Errorf("%w: manifest of %s names backup %q", ErrChecksum, id, man.ID)
	}
	return &man, nil
}

// Verify checks that every file of backup id is present with the size and
// SHA-256 its manifest records, and that a custom-format dump starts like
// one. It reads the whole backup once.
func (m *Manager) Verify(ctx context.Context, id string) error {
	man, err := m.Manifest(ctx, id)
	if err != nil {
		return err
	}
	return m.verify(ctx, man)
}

// VerifyBackup checks backup id in repo like Manager.Verify, without a
// database connection.
func VerifyBackup(ctx context.Context, repo Repository, id string) (*Manifest, error) {
	man, err := readManifest(ctx, repo, id)
	if err != nil {
		return nil, err
	}
	return man, verifyFiles(ctx, repo, man, nil)
}

func (m *Manager) verify(ctx context.Context, man *Manifest) error {
	return verifyFiles(ctx, m.cfg.Repository, man, func(n int64) { m.progress("verify", man.ID, n) })
}

func verifyFiles(ctx context.Context, repo Repository, man *Manifest, progress func(int64)) error {
	if len(man.Files) == 0 || man.Size <= 0 {
		return fmt.Errorf("%w: backup %s lists no data", ErrChecksum, man.ID)
	}
	var done int64
	for _, f := range man.Files {
		if err := ValidateName(f.Name); err != nil {
			return fmt.Errorf("%w: backup %s: %w", ErrChecksum, man.ID, err)
		}
		name := logicalPrefix + man.ID + "/" + f.Name
		r, err := repo.Open(ctx, name)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%w: %s is missing", ErrChecksum, name)
		}
		if err != nil {
			return err
		}
		h := sha256.New()
		var head [5]byte
		base := done
		pr := &progressReader{r: ctxReader{ctx, r}}
		if progress != nil {
			pr.fn = func(n int64) { progress(base + n) }
		}
		hn, _ := io.ReadFull(pr, head[:])
		h.Write(head[:hn])
		n, err := io.Copy(h, pr)
		r.Close()
		n += int64(hn)
		done += n
		if err != nil {
			return fmt.Errorf("backup: reading %s: %w", name, err)
		}
		if n != f.Size {
			return fmt.Errorf("%w: %s has %d bytes, the manifest says %d (truncated or changed after writing)", ErrChecksum, name, n, f.Size)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != f.SHA256 {
			return fmt.Errorf("%w: %s has SHA-256 %s, the manifest says %s (changed after writing)", ErrChecksum, name, got, f.SHA256)
		}
		if (f.Name == "dump" || f.Name == "dump.d/toc.dat") && string(head[:hn]) != "PGDMP" {
			return fmt.Errorf("%w: %s is not a pg_dump archive", ErrChecksum, name)
		}
	}
	if got := backupDigest(man.Format, man.Files); got != man.SHA256 {
		return fmt.Errorf("%w: backup %s digest %s, the manifest says %s", ErrChecksum, man.ID, got, man.SHA256)
	}
	return nil
}

// Drill proves backup id (the newest backup of the pool's database when id
// is empty) by restoring it: it verifies every file's checksum, restores
// into a temporary database with pg_restore, compares the tables and their
// exact row counts with the manifest, measures the restore time, drops the
// temporary database, records the outcome next to the backup and calls
// Config.OnDrill. A failed drill returns the report and an error wrapping
// ErrDrillFailed.
func (m *Manager) Drill(ctx context.Context, id string) (*DrillReport, error) {
	rep := &DrillReport{ID: id, Started: time.Now().UTC()}
	err := m.drill(ctx, id, rep)
	if err != nil {
		rep.Err = err
		if !errors.Is(err, ErrDrillFailed) {
			err = fmt.Errorf("%w: %w", ErrDrillFailed, err)
			rep.Err = err
		}
	}
	rep.Passed = err == nil
	if rep.ID != "" && ValidateID(rep.ID) == nil {
		rec := DrillRecord{At: rep.Started, Passed: rep.Passed, Restore: rep.Restore}
		if err != nil {
			rec.Error = err.Error()
		}
		name := logicalPrefix + rep.ID + "/drill-" + rep.Started.Format("20060102T150405.000000000Z") + ".json"
		if _, serr := m.cfg.Repository.Stat(ctx, logicalPrefix+rep.ID+"/manifest.json"); serr == nil {
			if perr := putJSON(context.WithoutCancel(ctx), m.cfg.Repository, name, rec); perr != nil {
				m.log.ErrorContext(ctx, "backup: recording drill", "id", rep.ID, "err", perr)
			}
		}
	}
	if rep.Passed {
		m.log.InfoContext(ctx, "backup: drill passed", "id", rep.ID, "restore", rep.Restore, "tables", rep.Tables, "rows", rep.Rows)
	} else {
		m.log.ErrorContext(ctx, "backup: drill FAILED", "id", rep.ID, "err", rep.Err)
	}
	if m.cfg.OnDrill != nil {
		m.cfg.OnDrill(*rep)
	}
	return rep, err
}

func (m *Manager) drill(ctx context.Context, id string, rep *DrillReport) error {
	if id == "" {
		list, err := m.List(ctx)
		if err != nil {
			return err
		}
		if len(list) == 0 {
			return fmt.Errorf("%w: no backup of database %q in the repository", ErrNotFound, m.conn.database())
		}
		id = list[len(list)-1].ID
		rep.ID = id
	}
	man, err := m.Manifest(ctx, id)
	if err != nil {
		return err
	}
	rep.Database = man.Database
	t0 := time.Now()
	if err := m.verify(ctx, man); err != nil {
		return err
	}
	rep.Verify = time.Since(t0)

	// Where to restore: the drill server, or the pool's.
	target, pgxCfg := m.conn, m.pool.Config().ConnConfig.Copy()
	if m.cfg.DrillConnString != "" {
		if target, err = newConninfo(m.cfg.DrillConnString); err != nil {
			return err
		}
		if pgxCfg, err = pgx.ParseConfig(m.cfg.DrillConnString); err != nil {
			return fmt.Errorf("backup: DrillConnString: %w", err)
		}
	}
	admin, err := pgx.ConnectConfig(ctx, pgxCfg)
	if err != nil {
		return fmt.Errorf("backup: connecting to the drill server: %w", err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	_, major, err := serverVersion(ctx, admin)
	if err != nil {
		return err
	}
	// pg_restore must read the archive version of the pg_dump that wrote
	// it and speak to the drill server: at least both major versions.
	if _, dumpMajor, err := ParseToolVersion("(PostgreSQL) " + man.ToolVersion); err == nil && dumpMajor > major {
		major = dumpMajor
	}
	tool, err := m.tool(ctx, "pg_restore", major)
	if err != nil {
		return err
	}
	tmpDB := "justpg_drill_" + randomHex(6)
	rep.DrillDatabase = tmpDB
	qdb := pgx.Identifier{tmpDB}.Sanitize()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+qdb+" TEMPLATE template0"); err != nil {
		return fmt.Errorf("backup: creating the drill database (the role needs CREATEDB): %w", err)
	}
	defer func() {
		if _, err := admin.Exec(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+qdb+" WITH (FORCE)"); err != nil {
			m.log.ErrorContext(ctx, "backup: dropping the drill database", "database", tmpDB, "err", err)
		}
	}()
	dst := target.withDB(tmpDB)

	t1 := time.Now()
	if err := m.restore(ctx, tool, man, dst); err != nil {
		return err
	}
	rep.Restore = time.Since(t1)

	dbCfg := pgxCfg.Copy()
	dbCfg.Database = tmpDB
	conn, err := pgx.ConnectConfig(ctx, dbCfg)
	if err != nil {
		return fmt.Errorf("backup: connecting to the drill database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	got, err := listTables(ctx, conn)
	if err != nil {
		return err
	}
	if err := countRows(ctx, conn, got); err != nil {
		return fmt.Errorf("backup: counting restored rows: %w", err)
	}
	rep.Tables = len(got)
	for _, t := range got {
		rep.Rows += t.Rows
	}
	rep.Mismatches = compareCounts(man.Tables, got)
	if len(rep.Mismatches) > 0 {
		parts := make([]string, 0, 3)
		for i, mm := range rep.Mismatches {
			if i == 3 {
				parts = append(parts, fmt.Sprintf("and %d more", len(rep.Mismatches)-3))
				break
			}
			parts = append(parts, mm.String())
		}
		return fmt.Errorf("%w: restored tables differ from the manifest: %s", ErrDrillFailed, strings.Join(parts, "; "))
	}
	return nil
}

func compareCounts(want, got []TableCount) []TableMismatch {
	key := func(t TableCount) string { return t.Schema + "\x00" + t.Table }
	g := map[string]TableCount{}
	for _, t := range got {
		g[key(t)] = t
	}
	var out []TableMismatch
	for _, w := range want {
		t, ok := g[key(w)]
		switch {
		case !ok:
			out = append(out, TableMismatch{Schema: w.Schema, Table: w.Table, Want: w.Rows, Got: -1})
		case t.Rows != w.Rows:
			out = append(out, TableMismatch{Schema: w.Schema, Table: w.Table, Want: w.Rows, Got: t.Rows})
		}
		delete(g, key(w))
	}
	for _, t := range got {
		if _, extra := g[key(t)]; extra {
			out = append(out, TableMismatch{Schema: t.Schema, Table: t.Table, Want: -1, Got: t.Rows})
		}
	}
	return out
}

// restore runs pg_restore of man into the database dst. Local files are
// given to pg_restore directly (parallel jobs possible); otherwise a custom
// dump is streamed to its stdin and a directory dump copied to TempDir.
func (m *Manager) restore(ctx context.Context, tool Tool, man *Manifest, dst conninfo) error {
	env, cleanup, err := dst.env()
	if err != nil {
		return err
	}
	defer cleanup()
	args := []string{"--no-password", "--exit-on-error", "--dbname=" + dst.String()}
	var stdin io.Reader
	prefix := logicalPrefix + man.ID + "/"
	local, isLocal := m.cfg.Repository.(LocalRepository)
	switch {
	case man.Format == FormatDirectory && isLocal:
		p, err := local.LocalPath(prefix + "dump.d")
		if err != nil {
			return err
		}
		args = append(args, "--jobs="+strconv.Itoa(m.cfg.Jobs), p)
	case man.Format == FormatDirectory:
		stage, err := os.MkdirTemp(m.cfg.TempDir, "justpg-drill-")
		if err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		defer os.RemoveAll(stage)
		for _, f := range man.Files {
			if err := copyOut(ctx, m.cfg.Repository, prefix+f.Name, filepath.Join(stage, filepath.FromSlash(f.Name))); err != nil {
				return err
			}
		}
		args = append(args, "--jobs="+strconv.Itoa(m.cfg.Jobs), filepath.Join(stage, "dump.d"))
	case isLocal:
		p, err := local.LocalPath(prefix + "dump")
		if err != nil {
			return err
		}
		args = append(args, "--jobs="+strconv.Itoa(m.cfg.Jobs), p)
	default:
		r, err := m.cfg.Repository.Open(ctx, prefix+"dump")
		if err != nil {
			return err
		}
		defer r.Close()
		stdin = &progressReader{r: r, fn: func(n int64) { m.progress("restore", man.ID, n) }}
	}
	cmd := exec.CommandContext(ctx, tool.Path, args...)
	cmd.Env = env
	cmd.Stdin = stdin
	cmd.WaitDelay = 10 * time.Second
	stderr := &tailBuffer{max: 16 << 10}
	cmd.Stderr = stderr
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%w: pg_restore: %w: %s", ErrDrillFailed, err, stderr.String())
	}
	return nil
}

// copyOut copies object name to the local file dst.
func copyOut(ctx context.Context, repo Repository, name, dst string) error {
	r, err := repo.Open(ctx, name)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if _, err := io.Copy(f, ctxReader{ctx, r}); err != nil {
		f.Close()
		return fmt.Errorf("backup: copying %s: %w", path.Base(name), err)
	}
	return f.Close()
}
