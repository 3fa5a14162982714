package files_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/files"
)

func TestRoundTripSizes(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	const cs = files.MinChunkSize
	small := newStore(t, files.Config{ChunkSize: cs})
	def := newStore(t, files.Config{})
	cases := []struct {
		s    *files.Store
		size int64
	}{
		{small, 0}, {small, 1}, {small, 511}, {small, 512}, {small, 513},
		{small, cs - 1}, {small, cs}, {small, cs + 1}, {small, 3*cs + 17},
		{def, files.DefaultChunkSize - 1}, {def, files.DefaultChunkSize}, {def, 5*files.DefaultChunkSize + 3},
		{def, 3<<20 + 5}, // several reads of 1 MiB, not on chunk boundaries
	}
	for _, c := range cases {
		f, err := c.s.Put(ctx, db.Pool, newPattern(c.size), files.PutOptions{Name: fmt.Sprintf("f%d.bin", c.size)})
		require.NoError(t, err, c.size)
		sum := patternSum(c.size)
		assert.Equal(t, c.size, f.Size)
		assert.Equal(t, sum, f.SHA256)
		assert.Equal(t, files.Chunks, f.Storage)

		r, err := c.s.Get(ctx, db.Pool, f.ID)
		require.NoError(t, err)
		assert.Equal(t, f.ID, r.File().ID)
		h := sha256.New()
		n, err := io.Copy(h, r)
		require.NoError(t, err)
		assert.Equal(t, c.size, n)
		assert.Equal(t, sum[:], h.Sum(nil), "size %d", c.size)

		// Read (not WriteTo) with an odd buffer size gives the same bytes.
		_, err = r.Seek(0, io.SeekStart)
		require.NoError(t, err)
		got, err := io.ReadAll(struct{ io.Reader }{r})
		require.NoError(t, err)
		assert.Equal(t, sha256.Sum256(got), sum)
	}
	var chunks int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM justpg.files_chunks c JOIN justpg.files_blobs b ON b.id = c.blob_id
		WHERE b.size = $1`, 3*cs+17).Scan(&chunks))
	assert.Equal(t, 4, chunks, "a body is stored as ceil(size/chunk) rows")
}

// TestDefaultChunksStayInline checks the storage layout the package's
// upload speed rests on: default-size chunks, even stamped with a tenant,
// are stored in the table row, not in TOAST, one chunk per row.
func TestDefaultChunksStayInline(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	s := newStore(t, files.Config{})
	const size = 20*files.DefaultChunkSize + 1
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, `SELECT set_config('app.tenant_id', gen_random_uuid()::text, true)`)
	require.NoError(t, err)
	f, err := s.Put(ctx, tx, newPattern(size), files.PutOptions{Name: "inline.bin"})
	require.NoError(t, err)
	require.NotEmpty(t, f.TenantID)
	require.NoError(t, tx.Commit(ctx))

	var chunks, stored int64
	var tenants int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*), sum(pg_column_size(data)), count(DISTINCT tenant_id)
		FROM justpg.files_chunks`).Scan(&chunks, &stored, &tenants))
	assert.EqualValues(t, 21, chunks)
	assert.Equal(t, 1, tenants)
	// pg_column_size is the stored size: nothing was compressed.
	assert.GreaterOrEqual(t, stored, int64(size))
	var toastPages int64
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT pg_relation_size(reltoastrelid) / 8192
		FROM pg_class WHERE oid = 'justpg.files_chunks'::regclass`).Scan(&toastPages))
	assert.Zero(t, toastPages, "default chunks went to TOAST")

	r, err := s.Get(ctx, db.Pool, f.ID)
	require.NoError(t, err)
	h := sha256.New()
	_, err = io.Copy(h, r)
	require.NoError(t, err)
	want := patternSum(size)
	assert.Equal(t, want[:], h.Sum(nil))
}

func TestContentTypeDetectionAndMetadata(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	s := newStore(t, files.Config{})
	png := append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 100)...)
	f, err := s.Put(ctx, db.Pool, bytes.NewReader(png), files.PutOptions{
		Name: "avatar.png", Owner: "user-1", Metadata: []byte(`{"width": 10}`),
	})
	require.NoError(t, err)
	assert.Equal(t, "image/png", f.ContentType)
	assert.Equal(t, "user-1", f.Owner)
	assert.JSONEq(t, `{"width": 10}`, string(f.Metadata))
	assert.Len(t, f.ETag(), 2+7+64)

	f2, err := s.Put(ctx, db.Pool, strings.NewReader("hello"), files.PutOptions{Name: "a.txt", ContentType: "text/plain; charset=UTF-8"})
	require.NoError(t, err)
	assert.Equal(t, "text/plain; charset=UTF-8", f2.ContentType)
	f3, err := s.Put(ctx, db.Pool, strings.NewReader("hello"), files.PutOptions{Name: "b.txt", ContentType: "application/octet-stream", DetectOctetStream: true})
	require.NoError(t, err)
	assert.Equal(t, "text/plain; charset=utf-8", f3.ContentType)

	st, err := s.Stat(ctx, db.Pool, f.ID)
	require.NoError(t, err)
	assert.Equal(t, f.SHA256, st.SHA256)
	assert.Equal(t, f.CreatedAt, st.CreatedAt)
}

func TestSeekAndReadAt(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	s := newStore(t, files.Config{ChunkSize: files.MinChunkSize})
	const size = 10*files.MinChunkSize + 123
	want := patternBytes(size)
	f, err := s.Put(ctx, db.Pool, bytes.NewReader(want), files.PutOptions{Name: "seek.bin"})
	require.NoError(t, err)
	r, err := s.Get(ctx, db.Pool, f.ID)
	require.NoError(t, err)

	rnd := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 200; i++ {
		off := rnd.Int64N(size + 10)
		n := rnd.IntN(3 * files.MinChunkSize)
		pos, err := r.Seek(off, io.SeekStart)
		require.NoError(t, err)
		require.Equal(t, off, pos)
		buf := make([]byte, n)
		got, err := io.ReadFull(r, buf)
		end := min(off+int64(n), size)
		if off >= size {
			end = off
		}
		require.Equal(t, int(end-off), got)
		require.Equal(t, want[off:end], buf[:got])
		if int64(n) > end-off {
			require.Error(t, err)
		}
		// ReadAt agrees and keeps the position.
		buf2 := make([]byte, n)
		got2, _ := r.ReadAt(buf2, off)
		require.Equal(t, buf[:got], buf2[:got2])
	}
	end, err := r.Seek(-10, io.SeekEnd)
	require.NoError(t, err)
	assert.Equal(t, int64(size-10), end)
	rest, err := io.ReadAll(r)
	require.NoError(t, err)
	assert.Equal(t, want[size-10:], rest)
	_, err = r.Seek(-1, io.SeekStart)
	assert.Error(t, err)
}

func TestPutRejectsBadInput(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	s := newStore(t, files.Config{MaxSize: 10000, AllowedTypes: []string{"image/*", "text/plain"}, RejectEmpty: true})
	text := func() io.Reader { return strings.NewReader("just some text") }
	cases := []struct {
		name string
		r    io.Reader
		o    files.PutOptions
		want error
	}{
		{"empty name", text(), files.PutOptions{}, files.ErrInvalidName},
		{"slash", text(), files.PutOptions{Name: "a/b.txt"}, files.ErrInvalidName},
		{"backslash", text(), files.PutOptions{Name: `..\b.txt`}, files.ErrInvalidName},
		{"dotdot", text(), files.PutOptions{Name: ".."}, files.ErrInvalidName},
		{"dot", text(), files.PutOptions{Name: "."}, files.ErrInvalidName},
		{"newline", text(), files.PutOptions{Name: "a\nb.txt"}, files.ErrInvalidName},
		{"nul", text(), files.PutOptions{Name: "a\x00b.txt"}, files.ErrInvalidName},
		{"c1", text(), files.PutOptions{Name: "a\u0085b.txt"}, files.ErrInvalidName},
		{"bidi", text(), files.PutOptions{Name: "invoice\u202Etxt.exe"}, files.ErrInvalidName},
		{"long", text(), files.PutOptions{Name: strings.Repeat("a", files.MaxNameLen+1)}, files.ErrInvalidName},
		{"bad utf8", text(), files.PutOptions{Name: "a\xffb"}, files.ErrInvalidName},
		{"spaces", text(), files.PutOptions{Name: "   "}, files.ErrInvalidName},
		{"too large", newPattern(10001), files.PutOptions{Name: "big.txt", ContentType: "text/plain"}, files.ErrTooLarge},
		{"announced too large", text(), files.PutOptions{Name: "a.txt", Size: 20000}, files.ErrTooLarge},
		{"option limit", newPattern(101), files.PutOptions{Name: "a.png", ContentType: "image/png", MaxSize: 100}, files.ErrTooLarge},
		{"empty", strings.NewReader(""), files.PutOptions{Name: "a.txt", ContentType: "text/plain"}, files.ErrEmpty},
		{"detected type not allowed", strings.NewReader("<html><body>x</body></html>"), files.PutOptions{Name: "a.txt"}, files.ErrTypeNotAllowed},
		{"given type not allowed", text(), files.PutOptions{Name: "a.pdf", ContentType: "application/pdf"}, files.ErrTypeNotAllowed},
		{"bad type", text(), files.PutOptions{Name: "a.txt", ContentType: "not a type"}, files.ErrInvalidInput},
		{"metadata not object", text(), files.PutOptions{Name: "a.txt", Metadata: []byte(`[1]`)}, files.ErrInvalidInput},
		{"metadata invalid", text(), files.PutOptions{Name: "a.txt", Metadata: []byte(`{`)}, files.ErrInvalidInput},
		{"owner control", text(), files.PutOptions{Name: "a.txt", Owner: "a\tb"}, files.ErrInvalidInput},
		{"size mismatch (short)", text(), files.PutOptions{Name: "a.txt", Size: 15}, files.ErrSizeMismatch},
		{"size mismatch (long)", text(), files.PutOptions{Name: "a.txt", Size: 13}, files.ErrSizeMismatch},
		{"checksum mismatch", text(), files.PutOptions{Name: "a.txt", SHA256: make([]byte, 32)}, files.ErrChecksumMismatch},
		{"checksum length", text(), files.PutOptions{Name: "a.txt", SHA256: []byte{1}}, files.ErrInvalidInput},
	}
	for _, c := range cases {
		_, err := s.Put(ctx, db.Pool, c.r, c.o)
		require.ErrorIs(t, err, c.want, c.name)
		require.True(t, strings.HasPrefix(err.Error(), "files: "), "%s: %v", c.name, err)
	}
	var se *files.SizeError
	_, err := s.Put(ctx, db.Pool, newPattern(10001), files.PutOptions{Name: "big.txt", ContentType: "text/plain"})
	require.ErrorAs(t, err, &se)
	assert.Equal(t, int64(10000), se.Limit)
	requireEmpty(t, db)

	// The accepted forms work.
	sum := sha256.Sum256([]byte("just some text"))
	f, err := s.Put(ctx, db.Pool, text(), files.PutOptions{Name: "ok ü.txt", Size: 14, SHA256: sum[:]})
	require.NoError(t, err)
	assert.Equal(t, "text/plain; charset=utf-8", f.ContentType)
}

func TestInterruptedUploadsLeaveNothing(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	for _, st := range []files.Storage{files.Chunks, files.LargeObjects} {
		s := newStore(t, files.Config{ChunkSize: files.MinChunkSize, MaxSize: 1 << 20, Storage: st})
		boom := errors.New("boom")
		_, err := s.Put(ctx, db.Pool, failAfter(5*files.MinChunkSize+7, boom), files.PutOptions{Name: "x.bin"})
		require.ErrorIs(t, err, boom, st)

		_, err = s.Put(ctx, db.Pool, newPattern(2<<20), files.PutOptions{Name: "x.bin"})
		require.ErrorIs(t, err, files.ErrTooLarge, st)

		cctx, cancel := context.WithCancel(ctx)
		r := &cancelAfter{r: newPattern(1 << 20), n: 3 * files.MinChunkSize, cancel: cancel}
		_, err = s.Put(cctx, db.Pool, r, files.PutOptions{Name: "x.bin"})
		require.ErrorIs(t, err, context.Canceled, st)
		requireEmpty(t, db)
	}
}

// cancelAfter cancels a context once n bytes have been read.
type cancelAfter struct {
	r      io.Reader
	n      int64
	read   int64
	cancel func()
}

func (c *cancelAfter) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.read += int64(n)
	if c.read >= c.n {
		c.cancel()
	}
	return n, err
}

func TestPutInCallerTransaction(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	s := newStore(t, files.Config{})

	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	f, err := s.Put(ctx, tx, strings.NewReader("draft"), files.PutOptions{Name: "draft.txt"})
	require.NoError(t, err)
	_, err = s.Stat(ctx, db.Pool, f.ID)
	require.ErrorIs(t, err, files.ErrNotFound, "not visible before commit")
	r, err := s.Get(ctx, tx, f.ID)
	require.NoError(t, err)
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	assert.Equal(t, "draft", string(b))
	require.NoError(t, tx.Rollback(ctx))
	requireEmpty(t, db)

	// A failing Put inside a transaction rolls back only its savepoint.
	tx, err = db.Pool.Begin(ctx)
	require.NoError(t, err)
	f, err = s.Put(ctx, tx, strings.NewReader("kept"), files.PutOptions{Name: "kept.txt"})
	require.NoError(t, err)
	_, err = s.Put(ctx, tx, failAfter(100, io.ErrClosedPipe), files.PutOptions{Name: "lost.txt"})
	require.ErrorIs(t, err, io.ErrClosedPipe)
	require.NoError(t, tx.Commit(ctx))
	page, err := s.List(ctx, db.Pool, files.ListOptions{})
	require.NoError(t, err)
	require.Len(t, page.Files, 1)
	assert.Equal(t, f.ID, page.Files[0].ID)
	c := counts(t, db)
	assert.Equal(t, 1, c["files_blobs"])
	assert.Equal(t, 1, c["files_chunks"])
}

func TestListUpdateDelete(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	s := newStore(t, files.Config{})
	var ids []string
	for i := 0; i < 25; i++ {
		owner := "alice"
		if i%2 == 1 {
			owner = "bob"
		}
		name := fmt.Sprintf("reports/%02d.txt", i)
		if i >= 20 {
			name = fmt.Sprintf("photos/%02d.txt", i)
		}
		f, err := s.Put(ctx, db.Pool, strings.NewReader(name), files.PutOptions{Name: strings.ReplaceAll(name, "/", "_"), Owner: owner})
		require.NoError(t, err)
		ids = append(ids, f.ID)
	}
	// Keyset pagination over everything.
	var all []string
	cursor := ""
	pages := 0
	for {
		p, err := s.List(ctx, db.Pool, files.ListOptions{Limit: 4, After: cursor})
		require.NoError(t, err)
		pages++
		for _, f := range p.Files {
			all = append(all, f.Name)
		}
		if p.Next == "" {
			break
		}
		cursor = p.Next
	}
	assert.Len(t, all, 25)
	assert.Equal(t, 7, pages)
	assert.IsNonDecreasing(t, all)

	p, err := s.List(ctx, db.Pool, files.ListOptions{Prefix: "reports_"})
	require.NoError(t, err)
	assert.Len(t, p.Files, 20)
	p, err = s.List(ctx, db.Pool, files.ListOptions{Prefix: "reports_1", Owner: "bob", HasOwner: true})
	require.NoError(t, err)
	assert.Len(t, p.Files, 5) // 11 13 15 17 19
	for _, f := range p.Files {
		assert.Equal(t, "bob", f.Owner)
	}
	p, err = s.List(ctx, db.Pool, files.ListOptions{Owner: "nobody", HasOwner: true})
	require.NoError(t, err)
	assert.Empty(t, p.Files)
	_, err = s.List(ctx, db.Pool, files.ListOptions{After: "garbage!"})
	require.ErrorIs(t, err, files.ErrInvalidInput)
	_, err = s.List(ctx, db.Pool, files.ListOptions{Limit: files.MaxListLimit + 1})
	require.ErrorIs(t, err, files.ErrInvalidInput)

	// Update.
	newName, ct := "renamed.txt", "text/markdown"
	f, err := s.Update(ctx, db.Pool, ids[0], files.Update{Name: &newName, ContentType: &ct, Metadata: []byte(`{"k":"v"}`)})
	require.NoError(t, err)
	assert.Equal(t, newName, f.Name)
	assert.Equal(t, ct, f.ContentType)
	assert.JSONEq(t, `{"k":"v"}`, string(f.Metadata))
	assert.True(t, !f.UpdatedAt.Before(f.CreatedAt))
	bad := "../x"
	_, err = s.Update(ctx, db.Pool, ids[0], files.Update{Name: &bad})
	require.ErrorIs(t, err, files.ErrInvalidName)
	_, err = s.Update(ctx, db.Pool, "00000000-0000-0000-0000-000000000000", files.Update{Name: &newName})
	require.ErrorIs(t, err, files.ErrNotFound)

	// Delete.
	for _, id := range ids {
		require.NoError(t, s.Delete(ctx, db.Pool, id))
	}
	require.ErrorIs(t, s.Delete(ctx, db.Pool, ids[0]), files.ErrNotFound)
	require.ErrorIs(t, s.Delete(ctx, db.Pool, "not-a-uuid"), files.ErrNotFound)
	_, err = s.Get(ctx, db.Pool, ids[0])
	require.ErrorIs(t, err, files.ErrNotFound)
	requireEmpty(t, db)
}

func TestConcurrentUploads(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	s := newStore(t, files.Config{ChunkSize: 64 << 10})
	var wg sync.WaitGroup
	ids := make([]string, 8)
	errs := make([]error, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := s.Put(ctx, db.Pool, newPattern(int64(300_000+i*1000)), files.PutOptions{Name: fmt.Sprintf("c%d", i)})
			ids[i], errs[i] = f.ID, err
		}()
	}
	wg.Wait()
	for i, id := range ids {
		require.NoError(t, errs[i])
		r, err := s.Get(ctx, db.Pool, id)
		require.NoError(t, err)
		h := sha256.New()
		_, err = io.Copy(h, r)
		require.NoError(t, err)
		want := patternSum(int64(300_000 + i*1000))
		assert.Equal(t, want[:], h.Sum(nil))
	}
}

func TestReadAfterDeleteAndCancel(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	s := newStore(t, files.Config{ChunkSize: files.MinChunkSize})
	// Larger than one read-ahead (1 MiB), so that the seek below needs a
	// fetch.
	f, err := s.Put(ctx, db.Pool, newPattern(3<<20), files.PutOptions{Name: "gone.bin"})
	require.NoError(t, err)
	r, err := s.Get(ctx, db.Pool, f.ID)
	require.NoError(t, err)
	buf := make([]byte, 10)
	_, err = io.ReadFull(r, buf)
	require.NoError(t, err)
	require.NoError(t, s.Delete(ctx, db.Pool, f.ID))
	_, err = r.Seek(2<<20, io.SeekStart)
	require.NoError(t, err)
	_, err = r.Read(buf)
	require.ErrorIs(t, err, files.ErrNotFound)

	// A failed fetch leaves nothing to serve: after a large window, a
	// small one elsewhere and a fetch that finds the file gone, reading
	// inside the small window's range again fails instead of returning
	// the large window's leftover bytes.
	f, err = s.Put(ctx, db.Pool, newPattern(3<<20), files.PutOptions{Name: "gone2.bin"})
	require.NoError(t, err)
	r, err = s.Get(ctx, db.Pool, f.ID)
	require.NoError(t, err)
	_, err = io.ReadFull(r, make([]byte, 1<<20))
	require.NoError(t, err)
	_, err = r.Seek(2<<20, io.SeekStart)
	require.NoError(t, err)
	_, err = io.ReadFull(r, buf)
	require.NoError(t, err)
	require.NoError(t, s.Delete(ctx, db.Pool, f.ID))
	for err == nil {
		_, err = r.Read(buf)
	}
	require.ErrorIs(t, err, files.ErrNotFound)
	_, err = r.ReadAt(buf, 2<<20+100<<10)
	require.ErrorIs(t, err, files.ErrNotFound)

	f, err = s.Put(ctx, db.Pool, newPattern(3*files.MinChunkSize), files.PutOptions{Name: "c.bin"})
	require.NoError(t, err)
	cctx, cancel := context.WithCancel(ctx)
	r, err = s.Get(cctx, db.Pool, f.ID)
	require.NoError(t, err)
	cancel()
	_, err = r.Read(buf)
	require.ErrorIs(t, err, context.Canceled)
}

func TestIndexesServeHotQueries(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `
		INSERT INTO justpg.files_blobs (chunk_size, sha256, size, refs) VALUES (1024, sha256(''), 0, 5000);
		INSERT INTO justpg.files (owner, name, content_type, size, sha256, blob_id)
		SELECT 'owner' || (i % 50), 'name' || i, 'text/plain', 0, sha256(''), (SELECT id FROM justpg.files_blobs)
		FROM generate_series(1, 5000) i;
		ANALYZE justpg.files; ANALYZE justpg.files_blobs;`)
	require.NoError(t, err)
	s := newStore(t, files.Config{})
	for _, c := range []struct {
		o   files.ListOptions
		idx string
	}{
		{files.ListOptions{Owner: "owner7", HasOwner: true, Limit: 10}, "files_owner_name"},
		{files.ListOptions{Prefix: "name12", Limit: 10}, "files_name"},
		{files.ListOptions{Limit: 10}, "files_name"},
	} {
		sql, args, err := files.ListQuery(s, c.o)
		require.NoError(t, err)
		rows, err := db.Pool.Query(ctx, "EXPLAIN "+sql, args...)
		require.NoError(t, err)
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		plan := strings.Join(lines, "\n")
		assert.Contains(t, plan, c.idx, plan)
	}
	explain := func(sql string) string {
		rows, err := db.Pool.Query(ctx, "EXPLAIN "+sql)
		require.NoError(t, err)
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return strings.Join(lines, "\n")
	}
	_, err = db.Pool.Exec(ctx, `
		INSERT INTO justpg.files_blobs (chunk_size, sha256, size, dedup)
		SELECT 1024, sha256(i::text::bytea), i, true FROM generate_series(1, 5000) i;
		ANALYZE justpg.files_blobs`)
	require.NoError(t, err)
	// Reading a chunk, finding an identical body, and what deletes and the
	// janitor look up.
	assert.Contains(t, explain(`SELECT data FROM justpg.files_chunks WHERE blob_id = 1 AND n = 2`), "files_chunks_pkey")
	// A read window: through the primary key and without a Sort node (the
	// Reader puts rows in place itself).
	window := explain(`SELECT n, data FROM justpg.files_chunks WHERE blob_id = 1 AND n BETWEEN 0 AND 130`)
	assert.Contains(t, window, "files_chunks_pkey")
	assert.NotContains(t, window, "Sort")
	assert.Contains(t, explain(`UPDATE justpg.files_blobs SET refs = refs + 1 WHERE sha256 = sha256('7') AND size = 7 AND dedup AND id <> 0
		AND tenant_id IS NOT DISTINCT FROM NULL`), "files_blobs_dedup_key")
	assert.Contains(t, explain(`SELECT 1 FROM justpg.files WHERE blob_id = 3`), "files_blob_id")
	assert.Contains(t, explain(`SELECT 1 FROM justpg.files WHERE id = '0f8fad5b-d9cb-469f-a165-70867728950e'`), "files_pkey")
}

// TestStreamingReads reads a file of several 1 MiB read windows on a pool
// and in a transaction: whole-file copies (WriteTo), small reads, seeks back
// and forth in the middle of a stream, a file deleted and a context
// cancelled in the middle of a stream.
func TestStreamingReads(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	s := newStore(t, files.Config{})
	const size = 5<<20 + 12345 // five windows of about 1 MiB and a bit
	want := patternBytes(size)
	f, err := s.Put(ctx, db.Pool, bytes.NewReader(want), files.PutOptions{Name: "stream.bin"})
	require.NoError(t, err)

	// io.Copy (WriteTo) and small Reads, on a pool and in a transaction.
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	for _, on := range []files.DB{db.Pool, tx} {
		r, err := s.Get(ctx, on, f.ID)
		require.NoError(t, err)
		var out bytes.Buffer
		n, err := io.Copy(&out, r)
		require.NoError(t, err)
		require.Equal(t, int64(size), n)
		require.True(t, bytes.Equal(want, out.Bytes()))
		require.NoError(t, r.Close())

		r, err = s.Get(ctx, on, f.ID)
		require.NoError(t, err)
		out.Reset()
		_, err = io.CopyBuffer(&out, struct{ io.Reader }{r}, make([]byte, 1000))
		require.NoError(t, err)
		require.True(t, bytes.Equal(want, out.Bytes()))
	}

	// Seeks while streaming: back into the current window, into the next
	// one, beyond it, then streaming on from there.
	r, err := s.Get(ctx, db.Pool, f.ID)
	require.NoError(t, err)
	defer r.Close()
	buf := make([]byte, 300_000)
	check := func(off int64) {
		t.Helper()
		_, err := r.Seek(off, io.SeekStart)
		require.NoError(t, err)
		n, err := io.ReadFull(r, buf)
		end := min(off+int64(len(buf)), size)
		if err != nil {
			require.ErrorIs(t, err, io.ErrUnexpectedEOF)
		}
		require.Equal(t, int(end-off), n)
		require.True(t, bytes.Equal(want[off:end], buf[:n]), "bytes at %d", off)
	}
	for _, off := range []int64{0, 300_000, 600_000, 900_000, 1_200_000, 1_000_000, 2_500_000, 100, 2_800_000, 3_100_000, 3_400_000, size - 1000, 4_000_000, 4_300_000} {
		check(off)
	}

	// Deleted in the middle of a stream: the next window is gone.
	r2, err := s.Get(ctx, db.Pool, f.ID)
	require.NoError(t, err)
	_, err = io.CopyN(io.Discard, r2, 2<<20)
	require.NoError(t, err)
	cctx, cancel := context.WithCancel(ctx)
	r3, err := s.Get(cctx, db.Pool, f.ID)
	require.NoError(t, err)
	_, err = io.CopyN(io.Discard, r3, 2<<20)
	require.NoError(t, err)
	require.NoError(t, s.Delete(ctx, db.Pool, f.ID))
	_, err = io.Copy(io.Discard, r2)
	require.ErrorIs(t, err, files.ErrNotFound)
	require.NoError(t, r2.Close())

	// Cancelled in the middle of a stream.
	cancel()
	_, err = io.Copy(io.Discard, r3)
	require.ErrorIs(t, err, context.Canceled)
	require.NoError(t, r3.Close())
}

// TestCorruptChunksDetected damages stored chunks behind the package's back:
// a missing chunk and a short one fail the read with ErrCorrupt instead of
// returning wrong bytes.
func TestCorruptChunksDetected(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	s := newStore(t, files.Config{ChunkSize: files.MinChunkSize})
	const size = 40 * files.MinChunkSize
	for _, damage := range []string{
		`DELETE FROM justpg.files_chunks WHERE blob_id = $1 AND n = 7`,
		`UPDATE justpg.files_chunks SET data = substring(data FROM 1 FOR 100) WHERE blob_id = $1 AND n = 9`,
		`UPDATE justpg.files_chunks SET data = data || '\x00'::bytea WHERE blob_id = $1 AND n = 39`,
	} {
		f, err := s.Put(ctx, db.Pool, newPattern(size), files.PutOptions{Name: "c.bin"})
		require.NoError(t, err)
		var blob int64
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT blob_id FROM justpg.files WHERE id = $1`, f.ID).Scan(&blob))
		_, err = db.Pool.Exec(ctx, damage, blob)
		require.NoError(t, err)
		r, err := s.Get(ctx, db.Pool, f.ID)
		require.NoError(t, err)
		_, err = io.Copy(io.Discard, r)
		require.ErrorIs(t, err, files.ErrCorrupt, damage)
	}
}
