package files_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/files"
	"github.com/justpg/justpg/internal/pgdb"
	"github.com/justpg/justpg/internal/pgtest"
)

// gateReader passes n bytes, then signals reached and blocks until release
// is closed.
type gateReader struct {
	r       io.Reader
	n       int64
	read    int64
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gateReader) Read(b []byte) (int, error) {
	if g.read >= g.n {
		g.once.Do(func() { close(g.reached) })
		<-g.release
	}
	if rem := g.n - g.read; rem > 0 && int64(len(b)) > rem {
		b = b[:rem]
	}
	n, err := g.r.Read(b)
	g.read += int64(n)
	return n, err
}

func TestConnectionKilledMidWrite(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	for _, st := range []files.Storage{files.Chunks, files.LargeObjects} {
		s := newStore(t, files.Config{ChunkSize: 64 << 10, Storage: st})
		g := &gateReader{r: newPattern(4 << 20), n: 1 << 20, reached: make(chan struct{}), release: make(chan struct{})}
		done := make(chan error, 1)
		go func() {
			_, err := s.Put(ctx, db.Pool, g, files.PutOptions{Name: "killed.bin"})
			done <- err
		}()
		<-g.reached
		require.Positive(t, db.TerminateBackends(t), st)
		close(g.release)
		select {
		case err := <-done:
			require.Error(t, err, st)
			assert.Contains(t, err.Error(), "files:")
		case <-time.After(30 * time.Second):
			t.Fatal("Put did not notice the killed connection")
		}
		requireEmpty(t, db)

		// The store keeps working on fresh connections.
		f, err := s.Put(ctx, db.Pool, newPattern(300_000), files.PutOptions{Name: "after.bin"})
		require.NoError(t, err, st)
		require.NoError(t, s.Delete(ctx, db.Pool, f.ID))
	}
}

func TestConnectionKilledMidRead(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	s := newStore(t, files.Config{ChunkSize: 64 << 10})
	const size = 4 << 20 // several read-aheads of 1 MiB
	f, err := s.Put(ctx, db.Pool, newPattern(size), files.PutOptions{Name: "r.bin"})
	require.NoError(t, err)

	// In a transaction, the killed connection fails the next read clearly.
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	r, err := s.Get(ctx, tx, f.ID)
	require.NoError(t, err)
	_, err = io.CopyN(io.Discard, r, 100_000)
	require.NoError(t, err)
	db.TerminateBackends(t)
	_, err = io.Copy(io.Discard, r)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "files: reading "+f.ID)
	_ = tx.Rollback(ctx)

	// On a pool, a reader resumes from its position on a new connection.
	r, err = s.Get(ctx, db.Pool, f.ID)
	require.NoError(t, err)
	h := sha256.New()
	_, err = io.CopyN(h, r, 100_000)
	require.NoError(t, err)
	db.TerminateBackends(t)
	for attempt := 0; ; attempt++ {
		_, err = io.Copy(h, r)
		if err == nil || attempt == 10 { // each dead pooled connection fails once
			break
		}
	}
	require.NoError(t, err)
	want := patternSum(size)
	assert.Equal(t, want[:], h.Sum(nil))
}

// TestServerRestartAndLogicalDecoding restarts the server in the middle of
// an upload (nothing remains, the store works afterwards), then shows on
// the same cluster (wal_level = logical) that chunked files appear in
// logical decoding, as logical replication needs, while large objects do not.
func TestServerRestartAndLogicalDecoding(t *testing.T) {
	t.Parallel()
	srv := pgtest.NewCluster(t, pgtest.ClusterOptions{Settings: map[string]string{
		// Decoding reads flushed WAL only: commit synchronously.
		"wal_level": "logical", "max_replication_slots": "4", "synchronous_commit": "on",
	}})
	db := newDBOn(t, srv)
	ctx := context.Background()
	s := newStore(t, files.Config{ChunkSize: 64 << 10})
	g := &gateReader{r: newPattern(2 << 20), n: 1 << 20, reached: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := s.Put(ctx, db.Pool, g, files.PutOptions{Name: "restart.bin"})
		done <- err
	}()
	<-g.reached
	require.NoError(t, srv.Restart(ctx))
	close(g.release)
	require.Error(t, <-done)
	requireEmpty(t, db)

	_, err := db.Pool.Exec(ctx, `SELECT pg_create_logical_replication_slot('files_test', 'test_decoding')`)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = db.Pool.Exec(context.Background(), `SELECT pg_drop_replication_slot('files_test')`) })
	f, err := s.Put(ctx, db.Pool, newPattern(100_000), files.PutOptions{Name: "after.bin"})
	require.NoError(t, err)
	assert.Equal(t, int64(100_000), f.Size)
	lo := newStore(t, files.Config{Storage: files.LargeObjects})
	_, err = lo.Put(ctx, db.Pool, newPattern(100_000), files.PutOptions{Name: "lo.bin"})
	require.NoError(t, err)
	rows, err := db.Pool.Query(ctx, `SELECT data FROM pg_logical_slot_get_changes('files_test', NULL, NULL)`)
	require.NoError(t, err)
	changes, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	count := func(prefix string) int {
		n := 0
		for _, c := range changes {
			if strings.HasPrefix(c, prefix) {
				n++
			}
		}
		return n
	}
	assert.Equal(t, 2, count("table justpg.files_chunks: INSERT:"), "both chunks are decoded")
	assert.Equal(t, 2, count("table justpg.files: INSERT:"))
	assert.Equal(t, 2, count("table justpg.files_blobs: INSERT:"), "both bodies' rows are decoded")
	assert.Equal(t, 1, count("table justpg.files_large_objects: INSERT:"))
	for _, c := range changes {
		assert.NotContains(t, c, "pg_largeobject", "large object data is not decoded")
	}
	_, err = db.Pool.Exec(ctx, `SELECT pg_drop_replication_slot('files_test')`)
	require.NoError(t, err)
}

func TestDedupReferenceCounting(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	s := newStore(t, files.Config{Dedup: true, ChunkSize: files.MinChunkSize})
	content := patternBytes(3*files.MinChunkSize + 5)
	var ids []string
	for i := 0; i < 3; i++ {
		f, err := s.Put(ctx, db.Pool, bytes.NewReader(content), files.PutOptions{Name: fmt.Sprintf("copy%d.bin", i)})
		require.NoError(t, err)
		ids = append(ids, f.ID)
	}
	other, err := s.Put(ctx, db.Pool, strings.NewReader("different"), files.PutOptions{Name: "other.txt"})
	require.NoError(t, err)
	c := counts(t, db)
	assert.Equal(t, 4, c["files"])
	assert.Equal(t, 2, c["files_blobs"], "identical bodies are stored once")
	assert.Equal(t, 4+1, c["files_chunks"])
	assert.Equal(t, 3, refsOf(t, db.Pool, ids[0]))

	require.NoError(t, s.Delete(ctx, db.Pool, ids[0]))
	require.NoError(t, s.Delete(ctx, db.Pool, ids[1]))
	assert.Equal(t, 1, refsOf(t, db.Pool, ids[2]))
	r, err := s.Get(ctx, db.Pool, ids[2])
	require.NoError(t, err)
	got, err := io.ReadAll(r)
	require.NoError(t, err)
	assert.Equal(t, content, got)
	require.NoError(t, s.Delete(ctx, db.Pool, ids[2]))
	require.NoError(t, s.Delete(ctx, db.Pool, other.ID))
	requireEmpty(t, db)
}

func refsOf(t *testing.T, db files.DB, id string) int {
	t.Helper()
	var refs int
	require.NoError(t, db.QueryRow(context.Background(), `SELECT b.refs FROM justpg.files f JOIN justpg.files_blobs b ON b.id = f.blob_id WHERE f.id = $1`, id).Scan(&refs))
	return refs
}

func TestDedupConcurrent(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	s := newStore(t, files.Config{Dedup: true, ChunkSize: 16 << 10})
	const n = 8
	content := patternBytes(100_000)
	// Several rounds of concurrent uploads of the same bytes mixed with
	// deletes of earlier copies: the count always matches the files.
	var live []string
	for round := 0; round < 3; round++ {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var errs []error
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f, err := s.Put(ctx, db.Pool, bytes.NewReader(content), files.PutOptions{Name: "same.bin"})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				live = append(live, f.ID)
			}()
		}
		// Delete half of what exists, concurrently with the uploads.
		mu.Lock()
		victims := append([]string(nil), live[:len(live)/2]...)
		live = live[len(live)/2:]
		mu.Unlock()
		for _, id := range victims {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.Delete(ctx, db.Pool, id); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		require.Empty(t, errs)
		var blobs, refs, filesN int
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(refs), 0), (SELECT count(*) FROM justpg.files) FROM justpg.files_blobs`).Scan(&blobs, &refs, &filesN))
		assert.Equal(t, 1, blobs, "round %d", round)
		assert.Equal(t, len(live), refs)
		assert.Equal(t, len(live), filesN)
	}
	var wg sync.WaitGroup
	for _, id := range live {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, s.Delete(ctx, db.Pool, id))
		}()
	}
	wg.Wait()
	requireEmpty(t, db)
}

func TestLargeObjects(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	s := newStore(t, files.Config{Storage: files.LargeObjects, ChunkSize: 64 << 10})
	for _, size := range []int64{0, 1, 64 << 10, 300_001} {
		want := patternBytes(size)
		f, err := s.Put(ctx, db.Pool, bytes.NewReader(want), files.PutOptions{Name: "lo.bin"})
		require.NoError(t, err)
		assert.Equal(t, files.LargeObjects, f.Storage)
		assert.Equal(t, sha256.Sum256(want), f.SHA256)
		r, err := s.Get(ctx, db.Pool, f.ID)
		require.NoError(t, err)
		got, err := io.ReadAll(r)
		require.NoError(t, err)
		assert.Equal(t, want, got)
		if size > 100 {
			_, err = r.Seek(size-77, io.SeekStart)
			require.NoError(t, err)
			tail, err := io.ReadAll(r)
			require.NoError(t, err)
			assert.Equal(t, want[size-77:], tail)
		}
		c := counts(t, db)
		assert.Equal(t, 1, c["pg_largeobject_metadata"])
		assert.Equal(t, 0, c["files_chunks"])
		require.NoError(t, s.Delete(ctx, db.Pool, f.ID))
		requireEmpty(t, db) // the large object went with the file
	}
	// Both storages live side by side; a Store reads either.
	chunked := newStore(t, files.Config{})
	f, err := chunked.Put(ctx, db.Pool, strings.NewReader("in rows"), files.PutOptions{Name: "a.txt"})
	require.NoError(t, err)
	r, err := s.Get(ctx, db.Pool, f.ID)
	require.NoError(t, err)
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	assert.Equal(t, "in rows", string(b))
}

func TestJanitorCleansOrphans(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	chunked := newStore(t, files.Config{ChunkSize: files.MinChunkSize})
	lo := newStore(t, files.Config{Storage: files.LargeObjects})
	keep, err := chunked.Put(ctx, db.Pool, newPattern(10_000), files.PutOptions{Name: "keep.bin"})
	require.NoError(t, err)
	keepLO, err := lo.Put(ctx, db.Pool, newPattern(10_000), files.PutOptions{Name: "keep-lo.bin"})
	require.NoError(t, err)
	_, err = chunked.Put(ctx, db.Pool, newPattern(20_000), files.PutOptions{Name: "orphan.bin"})
	require.NoError(t, err)
	orphanLO, err := lo.Put(ctx, db.Pool, newPattern(20_000), files.PutOptions{Name: "orphan-lo.bin"})
	require.NoError(t, err)
	_, err = chunked.Put(ctx, db.Pool, newPattern(30_000), files.PutOptions{Name: "orphan-chunks.bin"})
	require.NoError(t, err)
	var foreign uint32
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT lo_create(0)`).Scan(&foreign))

	// Remove rows behind the package's back: triggers off, as a logical
	// replication apply or a careless script would.
	_, err = db.Pool.Exec(ctx, `BEGIN;
		SET LOCAL session_replication_role = replica;
		DELETE FROM justpg.files WHERE name IN ('orphan.bin', 'orphan-lo.bin', 'orphan-chunks.bin');
		DELETE FROM justpg.files_blobs b WHERE (b.lo_oid IS NOT NULL OR b.size = 30000)
			AND NOT EXISTS (SELECT 1 FROM justpg.files f WHERE f.blob_id = b.id);
		COMMIT`)
	require.NoError(t, err)
	before := counts(t, db)
	assert.Equal(t, 2, before["files"])
	assert.Equal(t, 3, before["files_blobs"])
	assert.Equal(t, 3+5+8, before["files_chunks"])
	assert.Equal(t, 3, before["pg_largeobject_metadata"])

	// Young orphan bodies are spared; chunks without a body are not (no
	// upload can still need them: a body and its chunks commit together).
	st, err := chunked.Clean(ctx, db.Pool, files.CleanOptions{})
	require.NoError(t, err)
	assert.Equal(t, files.CleanStats{Chunks: 8}, st, "orphan-chunks.bin's 8 chunks")

	st, err = chunked.Clean(ctx, db.Pool, files.CleanOptions{Grace: time.Microsecond, Batch: 1})
	require.NoError(t, err)
	// orphan.bin's body (its chunks go with it), orphan-lo.bin's large
	// object.
	assert.Equal(t, files.CleanStats{Bodies: 1, LargeObjects: 1}, st)
	after := counts(t, db)
	assert.Equal(t, 2, after["files"])
	assert.Equal(t, 2, after["files_blobs"])
	assert.Equal(t, 3, after["files_chunks"], "only the kept file's chunks remain")
	assert.Equal(t, 1, after["files_large_objects"])
	assert.Equal(t, 2, after["pg_largeobject_metadata"], "the kept and the foreign large object remain")
	var foreignLeft bool
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_largeobject_metadata WHERE oid = $1)`, foreign).Scan(&foreignLeft))
	assert.True(t, foreignLeft)
	_ = orphanLO

	for _, id := range []string{keep.ID, keepLO.ID} {
		r, err := chunked.Get(ctx, db.Pool, id)
		require.NoError(t, err)
		h := sha256.New()
		_, err = io.Copy(h, r)
		require.NoError(t, err)
		want := patternSum(10_000)
		assert.Equal(t, want[:], h.Sum(nil))
	}
	_, err = chunked.Clean(ctx, db.Pool, files.CleanOptions{Grace: -time.Second})
	require.ErrorIs(t, err, files.ErrInvalidInput)

	// TRUNCATE of the bodies takes their chunks along.
	_, err = db.Pool.Exec(ctx, `TRUNCATE justpg.files, justpg.files_blobs`)
	require.NoError(t, err)
	assert.Equal(t, 0, counts(t, db)["files_chunks"])
}

func TestTenantIsolationWithRLS(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	role := tenantRole(t, db)
	tenantA, tenantB := "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
	inTenant := func(tenant string, fn func(tx pgx.Tx)) {
		t.Helper()
		tx, err := db.Pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(ctx) }()
		_, err = tx.Exec(ctx, `SELECT set_config('role', $1, true), set_config('app.tenant_id', $2, true)`, role, tenant)
		require.NoError(t, err)
		fn(tx)
		require.NoError(t, tx.Commit(ctx))
	}
	s := newStore(t, files.Config{Dedup: true, ChunkSize: files.MinChunkSize})
	sLO := newStore(t, files.Config{Storage: files.LargeObjects})
	same := patternBytes(2<<20 + 50_000) // several INSERT batches under RLS
	var fileA, fileB, loA files.File
	inTenant(tenantA, func(tx pgx.Tx) {
		var err error
		fileA, err = s.Put(ctx, tx, bytes.NewReader(same), files.PutOptions{Name: "a.bin", Owner: "u"})
		require.NoError(t, err)
		loA, err = sLO.Put(ctx, tx, strings.NewReader("a's large object"), files.PutOptions{Name: "lo.txt", Owner: "u"})
		require.NoError(t, err)
	})
	inTenant(tenantB, func(tx pgx.Tx) {
		var err error
		fileB, err = s.Put(ctx, tx, bytes.NewReader(same), files.PutOptions{Name: "b.bin", Owner: "u"})
		require.NoError(t, err)
	})
	assert.Equal(t, tenantA, fileA.TenantID)
	assert.Equal(t, tenantB, fileB.TenantID)

	inTenant(tenantA, func(tx pgx.Tx) {
		p, err := s.List(ctx, tx, files.ListOptions{Owner: "u", HasOwner: true})
		require.NoError(t, err)
		require.Len(t, p.Files, 2)
		for _, f := range p.Files {
			assert.Equal(t, tenantA, f.TenantID)
		}
		_, err = s.Get(ctx, tx, fileB.ID)
		require.ErrorIs(t, err, files.ErrNotFound)
		require.ErrorIs(t, s.Delete(ctx, tx, fileB.ID), files.ErrNotFound)
		name := "stolen"
		_, err = s.Update(ctx, tx, fileB.ID, files.Update{Name: &name})
		require.ErrorIs(t, err, files.ErrNotFound)
		r, err := s.Get(ctx, tx, loA.ID)
		require.NoError(t, err)
		b, err := io.ReadAll(r)
		require.NoError(t, err)
		assert.Equal(t, "a's large object", string(b))
	})
	inTenant(tenantB, func(tx pgx.Tx) {
		p, err := s.List(ctx, tx, files.ListOptions{})
		require.NoError(t, err)
		require.Len(t, p.Files, 1)
		assert.Equal(t, fileB.ID, p.Files[0].ID)
		r, err := s.Get(ctx, tx, fileB.ID)
		require.NoError(t, err)
		b, err := io.ReadAll(r)
		require.NoError(t, err)
		assert.Equal(t, same, b)
	})
	// Dedup never crosses tenants: each tenant has its own copy.
	var blobs int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM justpg.files_blobs WHERE sha256 = $1`, fileA.SHA256[:]).Scan(&blobs))
	assert.Equal(t, 2, blobs)
	// Deleting in one tenant leaves the other's bytes alone.
	inTenant(tenantA, func(tx pgx.Tx) {
		require.NoError(t, s.Delete(ctx, tx, fileA.ID))
		require.NoError(t, s.Delete(ctx, tx, loA.ID))
	})
	inTenant(tenantB, func(tx pgx.Tx) {
		r, err := s.Get(ctx, tx, fileB.ID)
		require.NoError(t, err)
		b, err := io.ReadAll(r)
		require.NoError(t, err)
		assert.Equal(t, same, b)
	})
	c := counts(t, db)
	assert.Equal(t, 1, c["files"])
	assert.Equal(t, 0, c["pg_largeobject_metadata"])
	// The deleting tenant's chunks went with its body (the trigger runs
	// under its policies), the other tenant's copy stayed.
	assert.Equal(t, (len(same)+files.MinChunkSize-1)/files.MinChunkSize, c["files_chunks"])

	// Through HTTP, with a Scope that opens the tenant's transaction.
	hc := files.HandlerConfig{Scope: func(r *http.Request, fn func(files.DB) error) error {
		return pgdb.InTx(r.Context(), db.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(r.Context(), `SELECT set_config('role', $1, true), set_config('app.tenant_id', $2, true)`,
				role, r.Header.Get("X-Tenant")); err != nil {
				return err
			}
			return fn(tx)
		})
	}}
	mux := http.NewServeMux()
	mux.Handle("GET /files/{id}", s.DownloadHandler(hc))
	mux.Handle("POST /files", s.UploadHandler(hc))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/files?name=a.txt", strings.NewReader("tenant a via http"))
	req.Header.Set("X-Tenant", tenantA)
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	var up files.UploadResponse
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&up))
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	for tenant, want := range map[string]int{tenantA: http.StatusOK, tenantB: http.StatusNotFound} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/files/"+up.Files[0].ID, nil)
		req.Header.Set("X-Tenant", tenant)
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, want, resp.StatusCode, tenant)
		if want == http.StatusOK {
			assert.Equal(t, "tenant a via http", string(body))
		}
	}
}

// TestClientVanishesMidWrite cuts the client's socket in the middle of an
// upload, as a crashed or killed application process would: the server
// rolls the transaction back and nothing remains.
func TestClientVanishesMidWrite(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	s := newStore(t, files.Config{ChunkSize: 64 << 10})
	cfg, err := pgx.ParseConfig(db.URL)
	require.NoError(t, err)
	pgtest.ApplyExecMode(t, cfg)
	pgtest.ApplySession(t, cfg)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	g := &gateReader{r: newPattern(4 << 20), n: 1 << 20, reached: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := s.Put(ctx, conn, g, files.PutOptions{Name: "crash.bin"})
		done <- err
	}()
	<-g.reached
	var inTx int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL`).Scan(&inTx))
	assert.Equal(t, 1, inTx, "the upload's transaction is open")
	require.NoError(t, conn.PgConn().Conn().Close()) // the process "dies"
	close(g.release)
	require.Error(t, <-done)
	require.Eventually(t, func() bool {
		var n int
		_ = db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL`).Scan(&n)
		return n == 0
	}, 20*time.Second, 20*time.Millisecond, "the server ended the orphaned transaction")
	requireEmpty(t, db)
}

// tenantRole creates a role that the test's transactions switch to, with
// row-level security on files' tables keeping it to the rows of the tenant
// in app.tenant_id, and returns its name. It is dropped when the test ends.
func tenantRole(t *testing.T, db *pgtest.DB) string {
	t.Helper()
	ctx := context.Background()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	role := "files_tenant_" + hex.EncodeToString(b)
	_, err := db.Pool.Exec(ctx, fmt.Sprintf(`CREATE ROLE %[1]s NOLOGIN;
		GRANT USAGE ON SCHEMA justpg TO %[1]s;
		GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA justpg TO %[1]s;
		GRANT USAGE ON ALL SEQUENCES IN SCHEMA justpg TO %[1]s`, role))
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = db.Pool.Exec(context.Background(), fmt.Sprintf(`DROP OWNED BY %[1]s; DROP ROLE %[1]s`, role))
	})
	for _, tbl := range []string{"files", "files_blobs", "files_chunks", "files_large_objects"} {
		_, err := db.Pool.Exec(ctx, fmt.Sprintf(`ALTER TABLE justpg.%[1]s ENABLE ROW LEVEL SECURITY;
			CREATE POLICY tenant ON justpg.%[1]s
			USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid))`, tbl))
		require.NoError(t, err)
	}
	return role
}
