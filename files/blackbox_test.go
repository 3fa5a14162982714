package files_test

import (
	"bytes"
	"context"
	"fmt"
	"github.com/justpg/justpg/internal/pgtest"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/files"
)

// TestBlackboxHTTP runs the download and reader cases on one store (chunks
// of MinChunkSize, inline downloads).
func TestBlackboxHTTP(t *testing.T) {
	t.Parallel()
	h := newHTTP(t, files.Config{ChunkSize: files.MinChunkSize}, files.HandlerConfig{Inline: true})
	t.Run("DispositionOddNames", func(t *testing.T) { bbDispositionOddNames(t, h) })
	t.Run("RangeEdgeCases", func(t *testing.T) { bbRangeEdgeCases(t, h) })
	t.Run("DownloadBadIDs", func(t *testing.T) { bbDownloadBadIDs(t, h) })
	t.Run("ReaderEdges", func(t *testing.T) { bbReaderEdges(t, h) })
}

// TestBlackboxLeavesNothing runs the cases that end with every table empty
// on one database, one after the other.
func TestBlackboxLeavesNothing(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	t.Run("ConcurrentDelete", func(t *testing.T) { bbConcurrentDelete(t, db) })
	t.Run("UploadScopeAbortStoresNothing", func(t *testing.T) { bbUploadScopeAbortStoresNothing(t, db) })
}

// Names with quotes, semicolons, percent signs, unicode and look-alike
// header syntax come back exactly from Content-Disposition, and the header
// never splits.
func bbDispositionOddNames(t *testing.T, h *httpFixture) {
	ctx := context.Background()
	for _, name := range []string{
		`a"b.txt`, `x; filename="evil.html"`, `100%.txt`, `日本語 ファイル.txt`, "emoji 🎉.txt",
		`'quoted'`, `back` + "`" + `tick`, `a=b,c.txt`, "  spaced  ", "tab\u00a0nbsp.txt",
		"=?UTF-8?B?ZXZpbC5odG1s?=", "filename*=UTF-8''evil.html",
	} {
		f, err := h.s.Put(ctx, h.db.Pool, strings.NewReader("hello"), files.PutOptions{Name: name, ContentType: "text/plain"})
		require.NoError(t, err, "%q", name)
		resp, body := h.get(t, f.ID, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "hello", string(body))
		cd := resp.Header.Values("Content-Disposition")
		require.Len(t, cd, 1, "%q", name)
		disp, params, err := mime.ParseMediaType(cd[0])
		require.NoError(t, err, "%q -> %s", name, cd[0])
		assert.Equal(t, "inline", disp)
		assert.Equal(t, name, params["filename"], "%q -> %s", name, cd[0])
	}
	// Names no header can carry are refused, not cleaned.
	for _, name := range []string{"a\nb.txt", "a\r\nX-Evil: 1", "a\x00b", "dir/x.txt", `..\x.txt`} {
		_, err := h.s.Put(ctx, h.db.Pool, strings.NewReader("x"), files.PutOptions{Name: name})
		require.ErrorIs(t, err, files.ErrInvalidName, "%q", name)
	}
}

// Ranges a careful client might send: suffix, open-ended, overlapping,
// malformed and unsatisfiable ones, with HEAD.
func bbRangeEdgeCases(t *testing.T, h *httpFixture) {
	ctx := context.Background()
	const size = 2*files.MinChunkSize + 7
	want := patternBytes(size)
	f, err := h.s.Put(ctx, h.db.Pool, bytes.NewReader(want), files.PutOptions{Name: "r.bin", ContentType: "application/octet-stream"})
	require.NoError(t, err)

	for _, c := range []struct {
		rng        string
		start, end int
	}{
		{"bytes=-1", size - 1, size},
		{"bytes=-100000", 0, size},
		{fmt.Sprintf("bytes=%d-", size-1), size - 1, size},
		{fmt.Sprintf("bytes=%d-%d", files.MinChunkSize-1, files.MinChunkSize), files.MinChunkSize - 1, files.MinChunkSize + 1},
		{"bytes=0-99999999", 0, size},
	} {
		resp, body := h.get(t, f.ID, map[string]string{"Range": c.rng})
		require.Equal(t, http.StatusPartialContent, resp.StatusCode, c.rng)
		assert.Equal(t, want[c.start:c.end], body, c.rng)
	}
	for _, rng := range []string{"bytes=abc", "bytes=5-2", "bytes=--1", "items=0-1"} {
		resp, body := h.get(t, f.ID, map[string]string{"Range": rng})
		if resp.StatusCode == http.StatusOK {
			assert.Equal(t, want, body, rng)
		} else {
			assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, resp.StatusCode, rng)
		}
	}
	// HEAD: the headers of GET, no body.
	resp, body := h.do(t, http.MethodHead, f.ID, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Empty(t, body)
	assert.Equal(t, fmt.Sprint(size), resp.Header.Get("Content-Length"))
	assert.Equal(t, f.ETag(), resp.Header.Get("ETag"))
	// Weak comparison for If-None-Match (RFC 9110 13.1.2).
	resp, _ = h.get(t, f.ID, map[string]string{"If-None-Match": "W/" + f.ETag()})
	assert.Equal(t, http.StatusNotModified, resp.StatusCode)
	resp, _ = h.get(t, f.ID, map[string]string{"If-None-Match": "*"})
	assert.Equal(t, http.StatusNotModified, resp.StatusCode)
}

// Ids that are not files answer 404, never 500.
func bbDownloadBadIDs(t *testing.T, h *httpFixture) {
	for _, id := range []string{"not-a-uuid", "00000000-0000-0000-0000-000000000000", "%00", "%27%3B%20DROP%20TABLE%20x", strings.Repeat("a", 5000)} {
		resp, _ := h.get(t, id, nil)
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, "%q", id)
	}
}

// Delete twice and concurrently: one success, the rest ErrNotFound; with
// de-duplication the shared body survives until its last file goes.
func bbConcurrentDelete(t *testing.T, db *pgtest.DB) {
	s := newStore(t, files.Config{Dedup: true})
	ctx := context.Background()
	a, err := s.Put(ctx, db.Pool, strings.NewReader("same bytes"), files.PutOptions{Name: "a"})
	require.NoError(t, err)
	b, err := s.Put(ctx, db.Pool, strings.NewReader("same bytes"), files.PutOptions{Name: "b"})
	require.NoError(t, err)
	errs := make([]error, 6)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() { errs[i] = s.Delete(ctx, db.Pool, a.ID) })
	}
	wg.Wait()
	pgtest.OneWinner(t, errs, files.ErrNotFound)
	rd, err := s.Get(ctx, db.Pool, b.ID)
	require.NoError(t, err)
	got, err := io.ReadAll(rd)
	require.NoError(t, err)
	assert.Equal(t, "same bytes", string(got))
	require.NoError(t, s.Delete(ctx, db.Pool, b.ID))
	requireEmpty(t, db)
}

// Close twice, read after Close, Seek beyond the end, zero-length reads.
func bbReaderEdges(t *testing.T, h *httpFixture) {
	db, s := h.db, h.s
	ctx := context.Background()
	want := patternBytes(3 * files.MinChunkSize)
	f, err := s.Put(ctx, db.Pool, bytes.NewReader(want), files.PutOptions{Name: "e.bin"})
	require.NoError(t, err)
	rd, err := s.Get(ctx, db.Pool, f.ID)
	require.NoError(t, err)
	require.NoError(t, rd.Close())
	require.NoError(t, rd.Close())
	got, err := io.ReadAll(rd)
	require.NoError(t, err)
	assert.Equal(t, want, got)
	pos, err := rd.Seek(100, io.SeekEnd)
	require.NoError(t, err)
	assert.Equal(t, int64(len(want)+100), pos)
	n, err := rd.Read(make([]byte, 10))
	assert.Equal(t, 0, n)
	assert.ErrorIs(t, err, io.EOF)
	n, err = rd.ReadAt(make([]byte, 10), int64(len(want))-4)
	assert.Equal(t, 4, n)
	assert.ErrorIs(t, err, io.EOF)
	n, err = rd.ReadAt(nil, 5)
	assert.Equal(t, 0, n)
	assert.NoError(t, err)
	_, err = rd.Seek(-1, io.SeekStart)
	assert.Error(t, err)
}

// An upload handler PUT of a raw body in a caller-scoped transaction that
// aborts stores nothing.
func bbUploadScopeAbortStoresNothing(t *testing.T, db *pgtest.DB) {
	s := newStore(t, files.Config{})
	abort := fmt.Errorf("abort")
	h := s.UploadHandler(files.HandlerConfig{Scope: func(r *http.Request, fn func(files.DB) error) error {
		tx, err := db.Pool.Begin(r.Context())
		if err != nil {
			return err
		}
		defer tx.Rollback(context.Background())
		if err := fn(tx); err != nil {
			return err
		}
		return abort // the application changes its mind after the upload
	}})
	req, _ := http.NewRequest(http.MethodPost, "/files?name=x.txt", strings.NewReader("payload"))
	req.Header.Set("Content-Type", "text/plain")
	rec := newRecorder()
	h.ServeHTTP(rec, req)
	assert.Equal(t, http.StatusInternalServerError, rec.code)
	requireEmpty(t, db)
}

type recorder struct {
	hdr  http.Header
	code int
	body bytes.Buffer
}

func newRecorder() *recorder                    { return &recorder{hdr: http.Header{}} }
func (r *recorder) Header() http.Header         { return r.hdr }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(code int)        { r.code = code }
