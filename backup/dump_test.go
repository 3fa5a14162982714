package backup_test

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/backup"
	"github.com/justpg/justpg/internal/pgtest"
)

// The manifest's counts come from the dump's own snapshot: rows committed
// while the dump runs are neither in the dump nor in the counts, and the
// drill restores exactly the counted rows.
func TestDumpAndDrillWhileWriting(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	seed(t, db, 20000)

	var drills []backup.DrillReport
	var mu sync.Mutex
	var afterSnapshot atomic.Bool
	m, repo := newManager(t, db, backup.Config{
		OnDrill: func(r backup.DrillReport) { mu.Lock(); drills = append(drills, r); mu.Unlock() },
		Progress: func(p backup.Progress) {
			// The first progress report comes after the snapshot was
			// exported: commit rows the dump must not contain.
			if p.Op == "dump" && afterSnapshot.CompareAndSwap(false, true) {
				_, err := db.Pool.Exec(ctx, `INSERT INTO items (sku, qty) SELECT 'late-' || g, 1 FROM generate_series(1, 100) g`)
				assert.NoError(t, err)
			}
		},
	})

	// Background writers keep inserting, updating and deleting throughout.
	stop := make(chan struct{})
	var writes atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := db.Pool.Exec(ctx, `
					WITH i AS (INSERT INTO items (sku, qty) VALUES ('w', 1) RETURNING id)
					DELETE FROM "odd ""schema"""."Line Items" WHERE id = (SELECT min(id) FROM "odd ""schema"""."Line Items")`)
				var pgErr *pgconn.PgError
				if errors.As(err, &pgErr) && pgErr.Code == "40001" {
					continue // the other writer took that row (JUSTPG_TEST_SESSION's isolation)
				}
				if err != nil {
					t.Error(err)
					return
				}
				writes.Add(1)
			}
		}()
	}
	for writes.Load() < 10 { // writers are running before the dump starts
		time.Sleep(time.Millisecond)
	}
	man, err := m.Dump(ctx)
	close(stop)
	wg.Wait()
	require.NoError(t, err)
	require.True(t, afterSnapshot.Load())

	assert.Equal(t, db.Name, man.Database)
	assert.Equal(t, backup.FormatCustom, man.Format)
	assert.NotEmpty(t, man.ServerVersion)
	assert.NotEmpty(t, man.ToolVersion)
	assert.NotEmpty(t, man.Snapshot)
	assert.Len(t, man.SHA256, 64)
	assert.Positive(t, man.Size)
	assert.False(t, man.Finished.Before(man.Started))
	require.Len(t, man.Tables, 3)
	items := tableRows(man, "public", "items")
	assert.GreaterOrEqual(t, items, int64(20000))
	assert.GreaterOrEqual(t, count(t, db, "items"), items+100, "the 100 late rows are not in the snapshot")
	assert.Equal(t, int64(0), tableRows(man, "public", "empty_table"))
	assert.Positive(t, tableRows(man, `odd "schema"`, "Line Items"))

	st, err := os.Stat(must(repo.LocalPath("logical/" + man.ID + "/dump")))
	require.NoError(t, err)
	assert.Equal(t, man.Size, st.Size())

	rep, err := m.Drill(ctx, "")
	require.NoError(t, err)
	assert.True(t, rep.Passed)
	assert.Equal(t, man.ID, rep.ID)
	assert.Equal(t, 3, rep.Tables)
	assert.Equal(t, man.TotalRows(), rep.Rows, "the restore holds exactly the counted rows")
	assert.Empty(t, rep.Mismatches)
	assert.Positive(t, rep.Restore)
	require.NotEmpty(t, rep.DrillDatabase)
	assert.False(t, drillDatabaseExists(t, db, rep.DrillDatabase), "the drill database was dropped")

	mu.Lock()
	require.Len(t, drills, 1)
	assert.True(t, drills[0].Passed)
	mu.Unlock()
	list, err := m.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.NotNil(t, list[0].LastDrill)
	assert.True(t, list[0].LastDrill.Passed)
	assert.True(t, list[0].Good())
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// A directory-format dump with parallel jobs drills the same way.
func TestDirectoryFormatParallel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	seed(t, db, 5000)
	m, _ := newManager(t, db, backup.Config{Format: backup.FormatDirectory, Jobs: 2, Compression: "gzip:1"})
	man, err := m.Dump(ctx)
	require.NoError(t, err)
	assert.Equal(t, backup.FormatDirectory, man.Format)
	assert.Greater(t, len(man.Files), 2, "toc.dat plus one file per table")
	require.NoError(t, m.Verify(ctx, man.ID))
	rep, err := m.Drill(ctx, man.ID)
	require.NoError(t, err)
	assert.Equal(t, man.TotalRows(), rep.Rows)
}

// Corrupted, truncated and emptied dumps fail the drill loudly (the ones a
// size or header check finds before any restore), and the failure is
// recorded and reported.
func TestCorruptDumpFailsDrill(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	seed(t, db, 3000)
	var failed atomic.Int32
	m, repo := newManager(t, db, backup.Config{OnDrill: func(r backup.DrillReport) {
		if !r.Passed && r.Err != nil {
			failed.Add(1)
		}
	}})

	damage := map[string]func(path string){
		"flipped byte": func(p string) {
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			require.NoError(t, err)
			defer f.Close()
			b := make([]byte, 1)
			_, err = f.ReadAt(b, 4000)
			require.NoError(t, err)
			b[0] ^= 0xff
			_, err = f.WriteAt(b, 4000)
			require.NoError(t, err)
		},
		"truncated": func(p string) {
			st, err := os.Stat(p)
			require.NoError(t, err)
			require.NoError(t, os.Truncate(p, st.Size()/2))
		},
		"empty":   func(p string) { require.NoError(t, os.Truncate(p, 0)) },
		"deleted": func(p string) { require.NoError(t, os.Remove(p)) },
	}
	man, err := m.Dump(ctx)
	require.NoError(t, err)
	path := must(repo.LocalPath("logical/" + man.ID + "/dump"))
	original, err := os.ReadFile(path)
	require.NoError(t, err)
	n := int32(0)
	for name, fn := range damage {
		require.NoError(t, os.WriteFile(path, original, 0o640))
		require.NoError(t, m.Verify(ctx, man.ID))
		fn(path)

		err = m.Verify(ctx, man.ID)
		assert.ErrorIs(t, err, backup.ErrChecksum, name)
		rep, err := m.Drill(ctx, man.ID)
		n++
		require.Error(t, err, name)
		assert.ErrorIs(t, err, backup.ErrDrillFailed, name)
		assert.ErrorIs(t, err, backup.ErrChecksum, name)
		assert.False(t, rep.Passed, name)
		if name == "flipped byte" {
			// Only reading every byte finds this one; that runs alongside
			// the restore, whose database is dropped.
			if rep.DrillDatabase != "" {
				assert.False(t, drillDatabaseExists(t, db, rep.DrillDatabase), name)
			}
		} else {
			assert.Zero(t, rep.Restore, "%s: no restore was attempted", name)
			assert.Empty(t, rep.DrillDatabase, "%s: no drill database was created", name)
		}
		assert.Equal(t, n, failed.Load(), name)
	}
	list, err := m.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.NotNil(t, list[0].LastDrill)
	assert.False(t, list[0].Good(), "a backup whose drill failed is not good")

	// Put right again, the same backup passes.
	require.NoError(t, os.WriteFile(path, original, 0o640))
	rep, err := m.Drill(ctx, man.ID)
	require.NoError(t, err)
	assert.True(t, rep.Passed)
}

// A manifest that does not match the restored data (here: edited counts)
// fails the drill with the mismatching tables named.
func TestDrillDetectsCountMismatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	seed(t, db, 1000)
	m, repo := newManager(t, db, backup.Config{})
	man, err := m.Dump(ctx)
	require.NoError(t, err)
	// Rewrite the manifest with a wrong count, as a buggy or tampered
	// manifest would have.
	path := must(repo.LocalPath("logical/" + man.ID + "/manifest.json"))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.Remove(path))
	b = []byte(replaceOnce(string(b), `"rows": 1000`, `"rows": 999`))
	require.NoError(t, os.WriteFile(path, b, 0o640))

	rep, err := m.Drill(ctx, man.ID)
	require.ErrorIs(t, err, backup.ErrDrillFailed)
	require.Len(t, rep.Mismatches, 1)
	assert.Equal(t, backup.TableMismatch{Schema: "public", Table: "items", Want: 999, Got: 1000}, rep.Mismatches[0])
	assert.Contains(t, err.Error(), "public.items has 1000 rows, want 999")
}

func replaceOnce(s, old, new string) string {
	i := indexOf(s, old)
	if i < 0 {
		panic("not found: " + old)
	}
	return s[:i] + new + s[i+len(old):]
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// A pg_dump killed midway, a cancelled dump, terminated connections, an
// unwritable repository and a full disk each fail the dump, leave no trace
// of it, and leave the earlier backup intact.
func TestDumpFaultsKeepGoodBackups(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	seed(t, db, 30000)
	_, err := db.Pool.Exec(ctx, `ALTER TABLE items ALTER COLUMN note SET STORAGE EXTERNAL`)
	require.NoError(t, err)

	dir := t.TempDir()
	repo, err := backup.NewDirRepository(dir)
	require.NoError(t, err)
	good, _ := newManager(t, db, backup.Config{Repository: repo})
	first, err := good.Dump(ctx)
	require.NoError(t, err)

	t.Run("killed", func(t *testing.T) {
		var killed atomic.Bool
		m, _ := newManager(t, db, backup.Config{Repository: repo, Compression: "0", Progress: func(p backup.Progress) {
			if p.Bytes > 0 && !killed.Load() {
				killed.Store(killPgDump(db.Name))
			}
		}})
		_, err := m.Dump(ctx)
		require.True(t, killed.Load(), "pg_dump was found and killed")
		require.ErrorIs(t, err, backup.ErrDumpFailed)
	})
	t.Run("cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		m, _ := newManager(t, db, backup.Config{Repository: repo, Compression: "0", Progress: func(p backup.Progress) {
			if p.Bytes > 0 {
				cancel()
			}
		}})
		_, err := m.Dump(cctx)
		require.Error(t, err)
		assert.ErrorIs(t, err, context.Canceled)
	})
	t.Run("connections terminated", func(t *testing.T) {
		// pg_terminate_backend on every session of the database, pg_dump's
		// and the snapshot's included, once the dump has started.
		var terminated atomic.Bool
		m, _ := newManager(t, db, backup.Config{Repository: repo, Compression: "0", Progress: func(p backup.Progress) {
			if p.Bytes > 0 && terminated.CompareAndSwap(false, true) {
				db.TerminateBackends(t)
			}
		}})
		man, err := m.Dump(ctx)
		db.Pool.Reset() // drop the terminated connections
		require.True(t, terminated.Load())
		if err == nil {
			// pg_dump may already have received everything: then the
			// backup must be complete and prove itself.
			_, err := m.Drill(ctx, man.ID)
			require.NoError(t, err)
			require.NoError(t, removeAll(ctx, repo, man.ID))
			return
		}
		assert.ErrorIs(t, err, backup.ErrDumpFailed)
	})
	t.Run("unwritable repository", func(t *testing.T) {
		bad := t.TempDir()
		// A file where the repository needs a directory (permissions do not
		// stop root, which the tests may run as).
		require.NoError(t, os.WriteFile(bad+"/logical", nil, 0o600))
		r, err := backup.NewDirRepository(bad)
		require.NoError(t, err)
		m, _ := newManager(t, db, backup.Config{Repository: r})
		_, err = m.Dump(ctx)
		require.Error(t, err)
		assert.ErrorIs(t, err, syscall.ENOTDIR)
		objs, err := r.List(ctx, "logical/")
		require.NoError(t, err)
		assert.Empty(t, objs)
	})
	t.Run("disk full", func(t *testing.T) {
		m, _ := newManager(t, db, backup.Config{Repository: &fullRepo{DirRepository: repo, limit: 256 << 10}, Compression: "0"})
		_, err := m.Dump(ctx)
		require.Error(t, err)
		assert.ErrorIs(t, err, syscall.ENOSPC)
	})

	objs, err := repo.List(ctx, "")
	require.NoError(t, err)
	for _, o := range objs {
		assert.Contains(t, o.Name, first.ID, "only the good backup's files remain: %s", o.Name)
	}
	entries, err := os.ReadDir(dir + "/logical")
	require.NoError(t, err)
	assert.Len(t, entries, 1)
	list, err := good.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.NoError(t, good.Verify(ctx, first.ID))
}

// fullRepo fails writes with ENOSPC after limit bytes, like a full disk.
type fullRepo struct {
	*backup.DirRepository
	limit int64
}

func (f *fullRepo) Put(ctx context.Context, name string, r io.Reader) (int64, error) {
	return f.DirRepository.Put(ctx, name, &enospcReader{r: r, left: f.limit})
}

type enospcReader struct {
	r    io.Reader
	left int64
}

func (e *enospcReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		return 0, &os.PathError{Op: "write", Path: "repository", Err: syscall.ENOSPC}
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	return n, err
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	repo, err := backup.NewDirRepository(t.TempDir())
	require.NoError(t, err)
	for name, cfg := range map[string]backup.Config{
		"no repository": {},
		"bad format":    {Repository: repo, Format: "tar"},
		"bad jobs":      {Repository: repo, Jobs: -1},
		"bad method":    {Repository: repo, Compression: "brotli"},
		"bad level":     {Repository: repo, Compression: "zstd:x"},
		"bad drill url": {Repository: repo, DrillConnString: "host"},
	} {
		_, err := backup.New(db.Pool, cfg)
		assert.ErrorIs(t, err, backup.ErrConfig, name)
	}
	_, err = backup.New(nil, backup.Config{Repository: repo})
	assert.ErrorIs(t, err, backup.ErrConfig)
}

func TestDrillWithoutBackups(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	m, _ := newManager(t, db, backup.Config{})
	rep, err := m.Drill(context.Background(), "")
	require.ErrorIs(t, err, backup.ErrNotFound)
	assert.False(t, rep.Passed)
	_, err = m.Drill(context.Background(), "../../etc")
	assert.ErrorIs(t, err, backup.ErrInvalidName)
	assert.True(t, errors.Is(err, backup.ErrDrillFailed))
}

func removeAll(ctx context.Context, repo *backup.DirRepository, id string) error {
	objs, err := repo.List(ctx, "logical/"+id+"/")
	if err != nil {
		return err
	}
	for _, o := range objs {
		if err := repo.Remove(ctx, o.Name); err != nil {
			return err
		}
	}
	return nil
}
