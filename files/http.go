package files

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/justpg/justpg/internal/pgdb"
)

// HandlerConfig configures DownloadHandler and UploadHandler.
type HandlerConfig struct {
	// DB is where files are read and written, usually the pool. Required
	// unless Scope is set.
	DB DB
	// Scope, when set, runs fn with the DB to use for one request: for
	// example a transaction in which app.tenant_id is set for row-level
	// security (fn may return an error to abort it). It replaces DB.
	Scope func(r *http.Request, fn func(db DB) error) error
	// FileID extracts the file id from a download request; nil means
	// r.PathValue("id"), or else the last path segment.
	FileID func(r *http.Request) string
	// AuthorizeDownload, when set, is called before any byte is sent; an
	// error answers 403 (404 when it wraps ErrNotFound, to hide existence).
	// nil allows every download.
	AuthorizeDownload func(r *http.Request, f File) error
	// AuthorizeUpload, when set, is called before a file is stored; it may
	// fill in Owner and Metadata. An error answers 403. nil allows every
	// upload.
	AuthorizeUpload func(r *http.Request, o *PutOptions) error
	// Inline serves files with Content-Disposition "inline" instead of
	// "attachment" (except types that can run script in the browser, such
	// as HTML and SVG, which are always attachments).
	Inline bool
	// CacheControl is sent with downloads; "" means "private, no-cache"
	// (the browser revalidates with If-None-Match and gets a 304).
	CacheControl string
	// FormField is the multipart field that holds files; "" accepts every
	// part that has a file name.
	FormField string
	// MaxFiles caps the files of one multipart upload; 0 means 10.
	MaxFiles int
	// ErrorLog receives unexpected errors; nil discards them.
	ErrorLog func(r *http.Request, err error)
}

func (c *HandlerConfig) scope(r *http.Request, fn func(DB) error) error {
	if c.Scope != nil {
		return c.Scope(r, fn)
	}
	if c.DB == nil {
		return errors.New("files: handler has neither DB nor Scope")
	}
	return fn(c.DB)
}

func (c *HandlerConfig) logErr(r *http.Request, err error) {
	if c.ErrorLog != nil {
		c.ErrorLog(r, err)
	}
}

// scriptable reports whether a browser may run script in a file of this
// media type when it is shown inline: HTML, script, and every XML type
// (RFC 7303: */xml and any +xml suffix, such as SVG, XHTML, RSS or XSLT,
// which can carry script through the XHTML namespace). A type that does not
// parse counts as scriptable.
func scriptable(contentType string) bool {
	base, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return true
	}
	switch base {
	case "text/html", "text/javascript", "application/javascript", "application/ecmascript",
		"text/ecmascript", "text/xsl", "multipart/x-mixed-replace":
		return true
	}
	return strings.HasSuffix(base, "/xml") || strings.HasSuffix(base, "+xml")
}

// DownloadHandler serves files with http.ServeContent: Range and
// multi-range requests, ETag (from the SHA-256), Last-Modified,
// If-None-Match / If-Modified-Since / If-Range, HEAD. It adds
// Content-Disposition with the file name safely encoded, and
// X-Content-Type-Options: nosniff. Chunks are fetched as the response is
// written; a client that goes away cancels the request context, which stops
// the reads.
func (s *Store) DownloadHandler(cfg HandlerConfig) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		id := ""
		if cfg.FileID != nil {
			id = cfg.FileID(r)
		} else if id = r.PathValue("id"); id == "" {
			id = r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
		}
		err := cfg.scope(r, func(db DB) error {
			rd, err := s.Get(r.Context(), db, id)
			if err != nil {
				return err
			}
			f := rd.File()
			if cfg.AuthorizeDownload != nil {
				if err := cfg.AuthorizeDownload(r, f); err != nil {
					return &authError{err}
				}
			}
			h := w.Header()
			h.Set("Content-Type", f.ContentType)
			h.Set("ETag", f.ETag())
			h.Set("X-Content-Type-Options", "nosniff")
			cc := cfg.CacheControl
			if cc == "" {
				cc = "private, no-cache"
			}
			h.Set("Cache-Control", cc)
			disp := "attachment"
			if scriptable(f.ContentType) {
				// Even opened directly, it may not run script on this origin.
				h.Set("Content-Security-Policy", "sandbox")
			} else if cfg.Inline {
				disp = "inline"
			}
			h.Set("Content-Disposition", ContentDisposition(disp, f.Name))
			// ServeContent reports write errors nowhere; a failed chunk
			// read surfaces as a short body, which clients detect from
			// Content-Length.
			http.ServeContent(w, r, "", f.UpdatedAt, &ctxReader{rd: rd, r: r, cfg: &cfg})
			return nil
		})
		writeError(w, r, &cfg, err)
	})
}

// ctxReader logs read errors that ServeContent swallows.
type ctxReader struct {
	rd  *Reader
	r   *http.Request
	cfg *HandlerConfig
}

func (c *ctxReader) Read(p []byte) (int, error) {
	n, err := c.rd.Read(p)
	if err != nil && err != io.EOF && c.r.Context().Err() == nil {
		c.cfg.logErr(c.r, err)
	}
	return n, err
}

func (c *ctxReader) Seek(off int64, whence int) (int64, error) { return c.rd.Seek(off, whence) }

type authError struct{ err error }

func (e *authError) Error() string { return "files: not authorized: " + e.err.Error() }
func (e *authError) Unwrap() error { return e.err }

// writeError answers err with a status that says what went wrong, without
// leaking database details.
func writeError(w http.ResponseWriter, r *http.Request, cfg *HandlerConfig, err error) {
	if err == nil {
		return
	}
	var ae *authError
	var mbe *http.MaxBytesError
	status := http.StatusInternalServerError
	msg := "internal error"
	switch {
	case errors.Is(err, ErrNotFound):
		status, msg = http.StatusNotFound, "file not found"
	case errors.As(err, &ae):
		status, msg = http.StatusForbidden, "forbidden"
	case errors.Is(err, ErrTooLarge), errors.As(err, &mbe):
		status, msg = http.StatusRequestEntityTooLarge, err.Error()
	case errors.Is(err, ErrTypeNotAllowed):
		status, msg = http.StatusUnsupportedMediaType, err.Error()
	case errors.Is(err, ErrInvalidName), errors.Is(err, ErrInvalidInput), errors.Is(err, ErrEmpty),
		errors.Is(err, ErrSizeMismatch), errors.Is(err, ErrChecksumMismatch), errors.Is(err, errBadUpload):
		status, msg = http.StatusBadRequest, err.Error()
	case errors.Is(err, io.ErrUnexpectedEOF):
		status, msg = http.StatusBadRequest, "files: the request body ended early"
	case r.Context().Err() != nil:
		// The client is gone and will not read this; still never answer
		// 200 to a request that failed.
		status, msg = http.StatusBadRequest, "files: request cancelled"
	default:
		cfg.logErr(r, err)
	}
	http.Error(w, msg, status)
}

var errBadUpload = errors.New("files: bad upload")

// UploadResponse is the JSON body of a successful upload (201 Created).
type UploadResponse struct {
	Files []UploadedFile `json:"files"`
}

// UploadedFile describes one stored file in an UploadResponse.
type UploadedFile struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
}

// UploadHandler stores uploads, streaming them to the database without temp
// files or whole-file buffers:
//
//   - multipart/form-data (an HTML form): every part with a file name (in
//     FormField, when set) becomes a file, read with multipart.Reader part
//     by part; all files of one request are stored in one transaction.
//   - any other body: the raw bytes are the file; the name comes from the
//     "name" query parameter, the type from Content-Type (detected when
//     absent or application/octet-stream), and a known Content-Length must
//     match the body exactly.
//
// It answers 201 with an UploadResponse; 400 for bad input (including a
// body shorter than its Content-Length), 403 when AuthorizeUpload refuses,
// 413 over the size limit (at once when Content-Length announces it), 415
// for a type off the allow-list.
func (s *Store) UploadHandler(cfg HandlerConfig) http.Handler {
	maxFiles := cfg.MaxFiles
	if maxFiles <= 0 {
		maxFiles = 10
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			w.Header().Set("Allow", "POST, PUT")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		var out UploadResponse
		err := cfg.scope(r, func(db DB) error {
			return pgdb.InTx(r.Context(), db, func(tx pgx.Tx) error {
				mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
				if mt == "multipart/form-data" {
					return s.uploadMultipart(r, tx, &cfg, maxFiles, &out)
				}
				return s.uploadRaw(r, tx, &cfg, &out)
			})
		})
		if err != nil {
			writeError(w, r, &cfg, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(out)
	})
}

func (s *Store) uploadRaw(r *http.Request, tx pgx.Tx, cfg *HandlerConfig, out *UploadResponse) error {
	o := PutOptions{
		Name:              r.URL.Query().Get("name"),
		ContentType:       r.Header.Get("Content-Type"),
		DetectOctetStream: true,
	}
	if r.ContentLength > 0 {
		o.Size = r.ContentLength
	}
	if cfg.AuthorizeUpload != nil {
		if err := cfg.AuthorizeUpload(r, &o); err != nil {
			return &authError{err}
		}
	}
	return s.putOne(r.Context(), tx, r.Body, o, out)
}

func (s *Store) uploadMultipart(r *http.Request, tx pgx.Tx, cfg *HandlerConfig, maxFiles int, out *UploadResponse) error {
	mr, err := r.MultipartReader()
	if err != nil {
		return fmt.Errorf("%w: %v", errBadUpload, err)
	}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: reading the form: %v", errBadUpload, err)
		}
		name := part.FileName()
		if name == "" || (cfg.FormField != "" && part.FormName() != cfg.FormField) {
			// A non-file field: skip it without keeping it.
			if _, err := io.Copy(io.Discard, io.LimitReader(part, 1<<20)); err != nil {
				return fmt.Errorf("%w: reading the form: %v", errBadUpload, err)
			}
			continue
		}
		if len(out.Files) == maxFiles {
			return fmt.Errorf("%w: more than %d files", errBadUpload, maxFiles)
		}
		o := PutOptions{Name: rawFileName(part), ContentType: part.Header.Get("Content-Type"), DetectOctetStream: true}
		if cfg.AuthorizeUpload != nil {
			if err := cfg.AuthorizeUpload(r, &o); err != nil {
				return &authError{err}
			}
		}
		if err := s.putOne(r.Context(), tx, part, o, out); err != nil {
			return err
		}
	}
	if len(out.Files) == 0 {
		return fmt.Errorf("%w: the form holds no file", errBadUpload)
	}
	return nil
}

// rawFileName returns the filename parameter as the client sent it.
// multipart.Part.FileName strips directories silently; a name with a path
// separator is refused instead, so the caller learns about it.
func rawFileName(p *multipart.Part) string {
	_, params, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
	if err != nil {
		return p.FileName()
	}
	return params["filename"]
}

func (s *Store) putOne(ctx context.Context, tx pgx.Tx, body io.Reader, o PutOptions, out *UploadResponse) error {
	f, err := s.Put(ctx, tx, body, o)
	if err != nil {
		return err
	}
	out.Files = append(out.Files, UploadedFile{ID: f.ID, Name: f.Name, ContentType: f.ContentType, Size: f.Size, SHA256: f.Checksum()})
	return nil
}
