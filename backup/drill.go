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
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	// this backup actually achieves. The checksums are verified and the
	// tables loaded so far counted while it runs.
	Restore time.Duration
	// Count is the time spent after pg_restore finished, counting the
	// tables not counted yet and comparing with the manifest.
	Count time.Duration
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
	return readStoredManifest(ctx, repo, logicalPrefix, id, "backup", func(m *Manifest) string { return m.ID })
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
	// Cheap checks first (every file present with its size, a pg_dump
	// header): a truncated, emptied or missing dump fails before anything
	// is restored. The full SHA-256 check reads every byte; it runs
	// alongside the restore below and decides the outcome.
	if err := precheckFiles(ctx, m.cfg.Repository, man); err != nil {
		return err
	}

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
	noTimeouts(pgxCfg)
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
	// Databases left behind by drills that crashed long ago go first.
	if dropped, err := sweepDrills(ctx, admin, DefaultDrillMaxAge, time.Now()); err != nil {
		m.log.WarnContext(ctx, "backup: sweeping stale drill databases", "err", err)
	} else if len(dropped) > 0 {
		m.log.InfoContext(ctx, "backup: dropped stale drill databases", "databases", dropped)
	}
	tmpDB := drillDatabaseName(time.Now())
	rep.DrillDatabase = tmpDB
	qdb := pgx.Identifier{tmpDB}.Sanitize()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+qdb+" TEMPLATE template0"); err != nil {
		rep.DrillDatabase = ""
		return fmt.Errorf("backup: creating the drill database (the role needs CREATEDB): %w", err)
	}
	var conns []*pgx.Conn
	defer func() {
		for _, c := range conns {
			c.Close(context.WithoutCancel(ctx))
		}
		if _, err := admin.Exec(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+qdb+" WITH (FORCE)"); err != nil {
			m.log.ErrorContext(ctx, "backup: dropping the drill database", "database", tmpDB, "err", err)
		}
	}()
	// The counting connections are opened at once and held until the end:
	// a drill database with a session is never taken for a stale one
	// (SweepDrills drops without FORCE).
	dbCfg := pgxCfg.Copy()
	dbCfg.Database = tmpDB
	// Counting, like the dump's, must see every row or fail, never count
	// fewer (restored tables keep their FORCE ROW LEVEL SECURITY).
	dbCfg.RuntimeParams["row_security"] = "off"
	for range countConns + 1 {
		c, err := pgx.ConnectConfig(ctx, dbCfg)
		if err != nil {
			return fmt.Errorf("backup: connecting to the drill database: %w", err)
		}
		conns = append(conns, c)
	}
	dst := target.withDB(tmpDB)

	// Verify the checksums while restoring; a mismatch cancels the
	// restore and is what the drill reports.
	rctx, cancelRestore := context.WithCancelCause(ctx)
	defer cancelRestore(nil)
	verified := make(chan error, 1)
	go func() {
		t0 := time.Now()
		err := m.verify(rctx, man)
		rep.Verify = time.Since(t0)
		if err != nil {
			cancelRestore(err)
		}
		verified <- err
	}()
	// Count every table as soon as pg_restore has loaded it, while it
	// loads the next ones and builds indexes.
	cnt := newCounter(rctx, conns[1:], man.Tables)
	t1 := time.Now()
	restoreErr := m.restore(rctx, tool, man, dst, cnt.loaded)
	rep.Restore = time.Since(t1)
	verr := <-verified
	if verr != nil {
		cnt.abort()
		return verr
	}
	if restoreErr != nil {
		cnt.abort()
		return restoreErr
	}
	t2 := time.Now()
	got, err := listTables(ctx, conns[0])
	if err != nil {
		cnt.abort()
		return err
	}
	if err := cnt.finish(conns[0], got); err != nil {
		return fmt.Errorf("backup: counting restored rows: %w", err)
	}
	rep.Count = time.Since(t2)
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

// countConns is how many connections count restored tables at once (the
// drill holds one more, to list the restored tables).
const countConns = 2

// precheckFiles checks that every file of man exists with its recorded
// size and that the dump starts like a pg_dump archive, without reading
// the files.
func precheckFiles(ctx context.Context, repo Repository, man *Manifest) error {
	if len(man.Files) == 0 || man.Size <= 0 {
		return fmt.Errorf("%w: backup %s lists no data", ErrChecksum, man.ID)
	}
	for _, f := range man.Files {
		if err := ValidateName(f.Name); err != nil {
			return fmt.Errorf("%w: backup %s: %w", ErrChecksum, man.ID, err)
		}
		name := logicalPrefix + man.ID + "/" + f.Name
		st, err := repo.Stat(ctx, name)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%w: %s is missing", ErrChecksum, name)
		}
		if err != nil {
			return err
		}
		if st.Size != f.Size {
			return fmt.Errorf("%w: %s has %d bytes, the manifest says %d (truncated or changed after writing)", ErrChecksum, name, st.Size, f.Size)
		}
		if f.Name == "dump" || f.Name == "dump.d/toc.dat" {
			r, err := repo.Open(ctx, name)
			if err != nil {
				return err
			}
			var head [5]byte
			n, _ := io.ReadFull(r, head[:])
			r.Close()
			if string(head[:n]) != "PGDMP" {
				return fmt.Errorf("%w: %s is not a pg_dump archive", ErrChecksum, name)
			}
		}
	}
	return nil
}

// counter counts restored tables on a few connections, each table as soon
// as pg_restore reports it loaded. Counts taken early that disagree with
// the manifest are taken again at the end (a report may come before the
// load committed); only the final counts are compared.
type counter struct {
	ctx    context.Context
	cancel context.CancelFunc
	queue  chan *TableCount
	// stopped is set once restoring is over: loaded queues nothing more.
	stopped bool
	// counted is the number of counts finished (their Rows may be read
	// once it is seen).
	counted atomic.Int64
	wg      sync.WaitGroup
	mu      sync.Mutex
	err     error
	early   map[string]*TableCount // key: schema\x00table
	want    map[string]int64
	// byLabel maps pg_restore's "schema.table" (and, for parallel
	// restores, bare table names) to manifest tables; ambiguous labels
	// map to nothing.
	byLabel map[string]*TableCount
	byName  map[string]*TableCount
}

func tableKey(schema, table string) string { return schema + "\x00" + table }

func newCounter(ctx context.Context, conns []*pgx.Conn, tables []TableCount) *counter {
	ctx, cancel := context.WithCancel(ctx)
	c := &counter{ctx: ctx, cancel: cancel, queue: make(chan *TableCount, len(tables)+1),
		early: map[string]*TableCount{}, want: map[string]int64{},
		byLabel: map[string]*TableCount{}, byName: map[string]*TableCount{}}
	labels, names := map[string]int{}, map[string]int{}
	for _, t := range tables {
		labels[t.Schema+"."+t.Table]++
		names[t.Table]++
		c.want[tableKey(t.Schema, t.Table)] = t.Rows
	}
	for _, t := range tables {
		tc := &TableCount{Schema: t.Schema, Table: t.Table, Rows: -1}
		if labels[t.Schema+"."+t.Table] == 1 {
			c.byLabel[t.Schema+"."+t.Table] = tc
		}
		if names[t.Table] == 1 {
			c.byName[t.Table] = tc
		}
	}
	for _, conn := range conns {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			for t := range c.queue {
				if c.ctx.Err() != nil {
					continue
				}
				if err := countTable(c.ctx, conn, t); err != nil {
					c.fail(err)
				}
				c.counted.Add(1)
			}
		}()
	}
	return c
}

func countTable(ctx context.Context, db DB, t *TableCount) error {
	if err := db.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{t.Schema, t.Table}.Sanitize()).Scan(&t.Rows); err != nil {
		return fmt.Errorf("%s.%s: %w", t.Schema, t.Table, err)
	}
	return nil
}

func (c *counter) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	c.cancel()
}

// loaded queues the table pg_restore just finished loading: label is
// "schema.table" (single restore) or the bare table name (parallel). It
// never blocks: each table is queued at most once.
func (c *counter) loaded(label string, bare bool) {
	m := c.byLabel
	if bare {
		m = c.byName
	}
	t := m[label]
	if t == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	k := tableKey(t.Schema, t.Table)
	if _, dup := c.early[k]; dup || c.stopped {
		return
	}
	c.early[k] = t
	c.queue <- t
}

// abort stops counting and waits for the counting goroutines; call it
// instead of finish.
func (c *counter) abort() {
	c.cancel()
	c.mu.Lock()
	c.stopped = true
	close(c.queue)
	c.mu.Unlock()
	c.wg.Wait()
}

// finish counts the restored tables got (listed on conn, which it also uses
// for recounts) that were not counted early, waits,
// recounts early counts that disagree with the manifest, and fills in
// got's Rows.
func (c *counter) finish(conn *pgx.Conn, got []TableCount) error {
	c.mu.Lock()
	c.stopped = true
	early := c.early
	var late []*TableCount
	for i := range got {
		if _, ok := early[tableKey(got[i].Schema, got[i].Table)]; !ok {
			late = append(late, &got[i])
		}
	}
	c.mu.Unlock()
	for _, t := range late {
		c.queue <- t // the counting goroutines drain the queue
	}
	close(c.queue)
	c.wg.Wait()
	defer c.cancel()
	if c.err != nil {
		return c.err
	}
	if err := c.ctx.Err(); err != nil {
		return err
	}
	for i := range got {
		t, ok := early[tableKey(got[i].Schema, got[i].Table)]
		if !ok {
			continue
		}
		if t.Rows != c.want[tableKey(t.Schema, t.Table)] {
			// Counted too early? Count again now that pg_restore is done.
			if err := countTable(c.ctx, conn, t); err != nil {
				return err
			}
		}
		got[i].Rows = t.Rows
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
//
// loaded, if not nil, is called as each table's data has been loaded, with
// "schema.table" (bare false) or, in a parallel restore, the bare table
// name (bare true). It must not block.
func (m *Manager) restore(ctx context.Context, tool Tool, man *Manifest, dst conninfo, loaded func(label string, bare bool)) error {
	env, cleanup, err := dst.env()
	if err != nil {
		return err
	}
	defer cleanup()
	args := []string{"--no-password", "--exit-on-error", "--dbname=" + dst.String()}
	if loaded != nil {
		args = append(args, "--verbose")
	}
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
	if loaded != nil {
		cmd.Stderr = &restoreLog{tail: stderr, loaded: loaded, parallel: slices.ContainsFunc(args, func(a string) bool {
			return strings.HasPrefix(a, "--jobs=") && a != "--jobs=1"
		})}
	}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Run(); err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			err = cause
		}
		return fmt.Errorf("%w: pg_restore: %w: %s", ErrDrillFailed, err, stderr.String())
	}
	return nil
}

// restoreLog reads pg_restore --verbose output line by line. It reports
// each table whose data is loaded: in a single-job restore, the table of a
// "processing data for table" line once the next entry starts (pg_restore
// logs each entry before working on it, and a table's COPY has ended
// before the next one); in a parallel restore, the table of a "finished
// item N TABLE DATA name" line. Routine progress lines are dropped, the
// rest (warnings, errors and their context) go to tail.
type restoreLog struct {
	tail     *tailBuffer
	loaded   func(label string, bare bool)
	parallel bool
	partial  []byte
	pending  string // single-job: the table being loaded
}

func (r *restoreLog) Write(p []byte) (int, error) {
	r.partial = append(r.partial, p...)
	for {
		i := bytes.IndexByte(r.partial, '\n')
		if i < 0 {
			break
		}
		r.line(string(r.partial[:i]))
		r.partial = r.partial[i+1:]
	}
	if len(r.partial) > 64<<10 { // a runaway line: keep its end only
		_, _ = r.tail.Write(r.partial)
		r.partial = r.partial[:0]
	}
	return len(p), nil
}

func (r *restoreLog) line(l string) {
	msg, isMsg := strings.CutPrefix(l, "pg_restore: ")
	if isMsg && !r.parallel && !strings.HasPrefix(msg, "warning: ") {
		if r.pending != "" {
			r.loaded(r.pending, false)
			r.pending = ""
		}
		if t, ok := strings.CutPrefix(msg, `processing data for table "`); ok && strings.HasSuffix(t, `"`) {
			r.pending = strings.TrimSuffix(t, `"`)
			return
		}
	}
	if isMsg && r.parallel {
		if rest, ok := strings.CutPrefix(msg, "finished item "); ok {
			if _, name, ok := strings.Cut(rest, " TABLE DATA "); ok {
				r.loaded(name, true)
			}
			return
		}
	}
	if isMsg && (strings.HasPrefix(msg, "creating ") || strings.HasPrefix(msg, "executing ") ||
		strings.HasPrefix(msg, "processing ") || strings.HasPrefix(msg, "launching item ") ||
		strings.HasPrefix(msg, "connecting to database") || strings.HasPrefix(msg, "entering ") ||
		strings.HasPrefix(msg, "finished main") || strings.HasPrefix(msg, "finished item ")) {
		return
	}
	_, _ = r.tail.Write([]byte(l + "\n"))
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
