package files_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/files"
	"github.com/justpg/justpg/internal/pgtest"
)

type httpFixture struct {
	db  *pgtest.DB
	s   *files.Store
	srv *httptest.Server
}

func newHTTP(t *testing.T, cfg files.Config, hc files.HandlerConfig) *httpFixture {
	t.Helper()
	db := newDB(t)
	s := newStore(t, cfg)
	hc.DB = db.Pool
	hc.ErrorLog = func(r *http.Request, err error) { t.Logf("handler error: %v", err) }
	mux := http.NewServeMux()
	mux.Handle("GET /files/{id}", s.DownloadHandler(hc))
	mux.Handle("HEAD /files/{id}", s.DownloadHandler(hc))
	mux.Handle("POST /files", s.UploadHandler(hc))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &httpFixture{db: db, s: s, srv: srv}
}

func (h *httpFixture) get(t *testing.T, id string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	return h.do(t, http.MethodGet, id, hdr)
}

func (h *httpFixture) do(t *testing.T, method, id string, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+"/files/"+id, nil)
	require.NoError(t, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := h.srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

func TestDownloadHandler(t *testing.T) {
	t.Parallel()
	denied := errors.New("not yours")
	h := newHTTP(t, files.Config{ChunkSize: files.MinChunkSize}, files.HandlerConfig{
		AuthorizeDownload: func(r *http.Request, f files.File) error {
			switch f.Owner {
			case "mallory":
				return denied
			case "hidden":
				return files.ErrNotFound
			}
			return nil
		},
	})
	ctx := context.Background()
	const size = 3*files.MinChunkSize + 100
	want := patternBytes(size)
	name := `Résumé "final"; 100%.pdf`
	f, err := h.s.Put(ctx, h.db.Pool, bytes.NewReader(want), files.PutOptions{Name: name, ContentType: "application/pdf"})
	require.NoError(t, err)

	// Full body with the headers.
	resp, body := h.get(t, f.ID, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, want, body)
	assert.Equal(t, f.ETag(), resp.Header.Get("ETag"))
	assert.Equal(t, "application/pdf", resp.Header.Get("Content-Type"))
	assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	assert.Equal(t, "bytes", resp.Header.Get("Accept-Ranges"))
	assert.NotEmpty(t, resp.Header.Get("Last-Modified"))
	disp, params, err := mime.ParseMediaType(resp.Header.Get("Content-Disposition"))
	require.NoError(t, err)
	assert.Equal(t, "attachment", disp)
	assert.Equal(t, name, params["filename"], resp.Header.Get("Content-Disposition"))

	// Single ranges, across chunk boundaries.
	for _, c := range []struct {
		rng        string
		start, end int
	}{
		{"bytes=100-5000", 100, 5001},
		{"bytes=4090-8200", 4090, 8201},
		{"bytes=-10", size - 10, size},
		{fmt.Sprintf("bytes=%d-", size-1), size - 1, size},
	} {
		resp, body = h.get(t, f.ID, map[string]string{"Range": c.rng})
		require.Equal(t, http.StatusPartialContent, resp.StatusCode, c.rng)
		assert.Equal(t, want[c.start:c.end], body, c.rng)
		assert.Equal(t, fmt.Sprintf("bytes %d-%d/%d", c.start, c.end-1, size), resp.Header.Get("Content-Range"))
	}

	// Multi-range: multipart/byteranges.
	resp, body = h.get(t, f.ID, map[string]string{"Range": "bytes=0-9,5000-5009,-5"})
	require.Equal(t, http.StatusPartialContent, resp.StatusCode)
	mt, mp, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	require.NoError(t, err)
	require.Equal(t, "multipart/byteranges", mt)
	mr := multipart.NewReader(bytes.NewReader(body), mp["boundary"])
	wantParts := [][2]int{{0, 10}, {5000, 5010}, {size - 5, size}}
	for i, wp := range wantParts {
		p, err := mr.NextPart()
		require.NoError(t, err, i)
		pb, err := io.ReadAll(p)
		require.NoError(t, err)
		assert.Equal(t, want[wp[0]:wp[1]], pb, i)
		assert.Equal(t, fmt.Sprintf("bytes %d-%d/%d", wp[0], wp[1]-1, size), p.Header.Get("Content-Range"))
		assert.Equal(t, "application/pdf", p.Header.Get("Content-Type"))
	}
	_, err = mr.NextPart()
	require.Equal(t, io.EOF, err)

	// Conditional requests.
	resp, body = h.get(t, f.ID, map[string]string{"If-None-Match": f.ETag()})
	assert.Equal(t, http.StatusNotModified, resp.StatusCode)
	assert.Empty(t, body)
	resp, _ = h.get(t, f.ID, map[string]string{"If-None-Match": `"other", ` + f.ETag()})
	assert.Equal(t, http.StatusNotModified, resp.StatusCode)
	resp, _ = h.get(t, f.ID, map[string]string{"If-Modified-Since": f.UpdatedAt.Add(time.Second).UTC().Format(http.TimeFormat)})
	assert.Equal(t, http.StatusNotModified, resp.StatusCode)
	resp, _ = h.get(t, f.ID, map[string]string{"If-Modified-Since": f.UpdatedAt.Add(-time.Hour).UTC().Format(http.TimeFormat)})
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	resp, body = h.get(t, f.ID, map[string]string{"Range": "bytes=0-9", "If-Range": `"stale"`})
	assert.Equal(t, http.StatusOK, resp.StatusCode, "If-Range with another ETag sends everything")
	assert.Len(t, body, size)
	resp, body = h.get(t, f.ID, map[string]string{"Range": "bytes=0-9", "If-Range": f.ETag()})
	assert.Equal(t, http.StatusPartialContent, resp.StatusCode)
	assert.Equal(t, want[:10], body)
	resp, _ = h.get(t, f.ID, map[string]string{"Range": fmt.Sprintf("bytes=%d-", size+10)})
	assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, resp.StatusCode)

	// HEAD.
	resp, body = h.do(t, http.MethodHead, f.ID, nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, int64(size), resp.ContentLength)
	assert.Empty(t, body)

	// Unknown, malformed, refused, hidden.
	resp, _ = h.get(t, "00000000-0000-0000-0000-000000000000", nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, _ = h.get(t, "nope", nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	fm, err := h.s.Put(ctx, h.db.Pool, strings.NewReader("secret"), files.PutOptions{Name: "s.txt", Owner: "mallory"})
	require.NoError(t, err)
	resp, body = h.get(t, fm.ID, nil)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.NotContains(t, string(body), "secret")
	fh, err := h.s.Put(ctx, h.db.Pool, strings.NewReader("secret"), files.PutOptions{Name: "s.txt", Owner: "hidden"})
	require.NoError(t, err)
	resp, _ = h.get(t, fh.ID, nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)

	// HTML never renders inline on this origin.
	fx, err := h.s.Put(ctx, h.db.Pool, strings.NewReader("<html><script>alert(1)</script></html>"), files.PutOptions{Name: "x.html"})
	require.NoError(t, err)
	resp, _ = h.get(t, fx.ID, nil)
	assert.True(t, strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment"))
	assert.Equal(t, "sandbox", resp.Header.Get("Content-Security-Policy"))
}

func TestDownloadInlineAndEmpty(t *testing.T) {
	t.Parallel()
	h := newHTTP(t, files.Config{}, files.HandlerConfig{Inline: true})
	ctx := context.Background()
	f, err := h.s.Put(ctx, h.db.Pool, strings.NewReader(""), files.PutOptions{Name: "empty.txt", ContentType: "text/plain"})
	require.NoError(t, err)
	resp, body := h.get(t, f.ID, nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Empty(t, body)
	assert.Equal(t, `inline; filename="empty.txt"`, resp.Header.Get("Content-Disposition"))
	assert.Equal(t, f.ETag(), resp.Header.Get("ETag"))
}

type uploadResult struct {
	status int
	body   files.UploadResponse
	raw    string
}

type formFile struct {
	field, name, ct string
	body            io.Reader
}

// streamForm writes a multipart form through a pipe, so neither side holds
// the whole body.
func streamForm(parts []formFile, fields map[string]string) (string, io.Reader) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		for k, v := range fields {
			_ = mw.WriteField(k, v)
		}
		for _, p := range parts {
			hdr := textproto.MIMEHeader{}
			hdr.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, p.field, p.name))
			if p.ct != "" {
				hdr.Set("Content-Type", p.ct)
			}
			w, err := mw.CreatePart(hdr)
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			if _, err := io.Copy(w, p.body); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(mw.Close())
	}()
	return mw.FormDataContentType(), pr
}

func TestUploadHandler(t *testing.T) {
	t.Parallel()
	h := newHTTP(t, files.Config{MaxSize: 1 << 20, AllowedTypes: []string{"image/*", "application/octet-stream", "text/plain"}},
		files.HandlerConfig{
			FormField: "file",
			AuthorizeUpload: func(r *http.Request, o *files.PutOptions) error {
				if r.Header.Get("X-User") == "" {
					return errors.New("who are you")
				}
				o.Owner = r.Header.Get("X-User")
				return nil
			},
		})
	ctx := context.Background()
	post := func(query, ct string, body io.Reader, user string) uploadResult {
		req, err := http.NewRequest(http.MethodPost, h.srv.URL+"/files"+query, body)
		require.NoError(t, err)
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		if user != "" {
			req.Header.Set("X-User", user)
		}
		resp, err := h.srv.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		res := uploadResult{status: resp.StatusCode, raw: string(b)}
		if resp.StatusCode == http.StatusCreated {
			require.NoError(t, json.Unmarshal(b, &res.body))
		}
		return res
	}

	// Raw body.
	res := post("?name=data.bin", "application/octet-stream", bytes.NewReader(patternBytes(300_000)), "alice")
	require.Equal(t, http.StatusCreated, res.status, res.raw)
	require.Len(t, res.body.Files, 1)
	sum := patternSum(300_000)
	assert.Equal(t, hex.EncodeToString(sum[:]), res.body.Files[0].SHA256)
	st, err := h.s.Stat(ctx, h.db.Pool, res.body.Files[0].ID)
	require.NoError(t, err)
	assert.Equal(t, "alice", st.Owner)
	assert.Equal(t, int64(300_000), st.Size)

	// Streaming multipart with two files and a plain field.
	png := append([]byte("\x89PNG\r\n\x1a\n"), patternBytes(200_000)...)
	ct, body := streamForm([]formFile{
		{"file", "a.png", "application/octet-stream", bytes.NewReader(png)},
		{"file", "notes ü.txt", "text/plain", strings.NewReader("hello")},
	}, map[string]string{"title": "holiday"})
	res = post("", ct, body, "bob")
	require.Equal(t, http.StatusCreated, res.status, res.raw)
	require.Len(t, res.body.Files, 2)
	assert.Equal(t, "image/png", res.body.Files[0].ContentType, "octet-stream is sniffed")
	assert.Equal(t, int64(len(png)), res.body.Files[0].Size)
	assert.Equal(t, "notes ü.txt", res.body.Files[1].Name)
	before := counts(t, h.db)

	// Refusals leave nothing behind.
	for _, c := range []struct {
		name   string
		query  string
		ct     string
		body   func() io.Reader
		user   string
		status int
	}{
		{"anonymous", "?name=a.bin", "application/octet-stream", func() io.Reader { return strings.NewReader("x") }, "", http.StatusForbidden},
		{"no name", "", "application/octet-stream", func() io.Reader { return strings.NewReader("x") }, "u", http.StatusBadRequest},
		{"traversal", "?name=..%2Fetc%2Fpasswd", "application/octet-stream", func() io.Reader { return strings.NewReader("x") }, "u", http.StatusBadRequest},
		{"control", "?name=a%0D%0Ab", "application/octet-stream", func() io.Reader { return strings.NewReader("x") }, "u", http.StatusBadRequest},
		{"too large", "?name=a.bin", "application/octet-stream", func() io.Reader { return bytes.NewReader(patternBytes(2 << 20)) }, "u", http.StatusRequestEntityTooLarge},
		{"too large unannounced", "?name=a.bin", "application/octet-stream", func() io.Reader { return io.MultiReader(newPattern(2 << 20)) }, "u", http.StatusRequestEntityTooLarge},
		{"type", "?name=a.html", "text/html", func() io.Reader { return strings.NewReader("<html>") }, "u", http.StatusUnsupportedMediaType},
		{"sniffed type", "?name=a.html", "", func() io.Reader { return strings.NewReader("<html><body>") }, "u", http.StatusUnsupportedMediaType},
		{"multipart path", "", "", nil, "u", http.StatusBadRequest},
		{"multipart no file", "", "", nil, "u", http.StatusBadRequest},
		{"multipart second too large", "", "", nil, "u", http.StatusRequestEntityTooLarge},
	} {
		var body io.Reader
		ct := c.ct
		switch c.name {
		case "multipart path":
			ct, body = streamForm([]formFile{{"file", "dir/evil.txt", "text/plain", strings.NewReader("x")}}, nil)
		case "multipart no file":
			ct, body = streamForm(nil, map[string]string{"a": "b"})
		case "multipart second too large":
			ct, body = streamForm([]formFile{
				{"file", "ok.txt", "text/plain", strings.NewReader("fine")},
				{"file", "big.bin", "application/octet-stream", newPattern(2 << 20)},
			}, nil)
		default:
			body = c.body()
		}
		res := post(c.query, ct, body, c.user)
		assert.Equal(t, c.status, res.status, "%s: %s", c.name, res.raw)
		assert.NotContains(t, res.raw, "SQLSTATE", c.name)
	}
	assert.Equal(t, before, counts(t, h.db), "no refused upload left rows")
}

// rawRequest writes an HTTP request by hand on a TCP connection.
func rawRequest(t *testing.T, srvURL, head string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(srvURL, "http://"))
	require.NoError(t, err)
	_, err = io.WriteString(conn, head)
	require.NoError(t, err)
	return conn
}

func TestUploadLyingContentLengthAndDisconnect(t *testing.T) {
	t.Parallel()
	h := newHTTP(t, files.Config{ChunkSize: 64 << 10}, files.HandlerConfig{})

	// The body is shorter than announced and the client half-closes.
	conn := rawRequest(t, h.srv.URL, "POST /files?name=lie.bin HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 500000\r\n\r\n")
	_, err := io.Copy(conn, newPattern(200_000))
	require.NoError(t, err)
	require.NoError(t, conn.(*net.TCPConn).CloseWrite())
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
		resp.Body.Close()
	}
	conn.Close()

	// The client vanishes mid-upload.
	conn = rawRequest(t, h.srv.URL, "POST /files?name=gone.bin HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 5000000\r\n\r\n")
	_, err = io.Copy(conn, newPattern(300_000))
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond)
	conn.Close()

	// A chunked body that is cut off.
	conn = rawRequest(t, h.srv.URL, "POST /files?name=chunked.bin HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n")
	_, err = io.Copy(conn, newPattern(0x10000))
	require.NoError(t, err)
	conn.Close()

	require.Eventually(t, func() bool {
		return h.db.Pool.Stat().AcquiredConns() == 0
	}, 20*time.Second, 20*time.Millisecond, "every upload ended")
	requireEmpty(t, h.db)
}

func TestDownloadClientDisconnect(t *testing.T) {
	t.Parallel()
	h := newHTTP(t, files.Config{}, files.HandlerConfig{})
	ctx := context.Background()
	const size = 16 << 20
	f, err := h.s.Put(ctx, h.db.Pool, newPattern(size), files.PutOptions{Name: "big.bin"})
	require.NoError(t, err)
	for i := 0; i < 3; i++ {
		resp, err := h.srv.Client().Get(h.srv.URL + "/files/" + f.ID)
		require.NoError(t, err)
		_, err = io.CopyN(io.Discard, resp.Body, 100_000)
		require.NoError(t, err)
		resp.Body.Close() // mid-download
	}
	require.Eventually(t, func() bool {
		return h.db.Pool.Stat().AcquiredConns() == 0
	}, 20*time.Second, 20*time.Millisecond, "the handlers stopped reading")
	// The file is intact and still served completely.
	resp, err := h.srv.Client().Get(h.srv.URL + "/files/" + f.ID)
	require.NoError(t, err)
	defer resp.Body.Close()
	hs := sha256.New()
	n, err := io.Copy(hs, resp.Body)
	require.NoError(t, err)
	require.Equal(t, int64(size), n)
	want := patternSum(size)
	assert.Equal(t, want[:], hs.Sum(nil))
}
