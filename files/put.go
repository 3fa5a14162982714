package files

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/justpg/justpg/internal/pgdb"
)

// PutOptions describes a file being stored.
type PutOptions struct {
	// Name is the file name (required); see ValidateName.
	Name string
	// ContentType is the media type; "" (or "application/octet-stream"
	// when DetectOctetStream is set) means detect it from the first 512
	// bytes with http.DetectContentType.
	ContentType string
	// DetectOctetStream treats a ContentType of "application/octet-stream"
	// as unknown, as browsers send it for anything they do not recognise.
	DetectOctetStream bool
	// Owner is a free-form owner (user id, tenant-local account…) used by
	// List; "" means none.
	Owner string
	// Metadata is a custom JSON object stored with the file.
	Metadata json.RawMessage
	// MaxSize lowers the Store's maximum size for this file when > 0.
	MaxSize int64
	// Size, when > 0, is the announced length (e.g. Content-Length): a body
	// of another length fails with ErrSizeMismatch.
	Size int64
	// SHA256, when not nil, is the announced checksum (32 bytes): a body
	// with another hash fails with ErrChecksumMismatch.
	SHA256 []byte
}

// Put streams r into the store and returns the new file. It reads r once,
// chunk by chunk, computing size and SHA-256 on the way, so memory use does
// not depend on the file size.
//
// Put runs in one transaction: a transaction of its own when db is a pool or
// connection, a savepoint when db is a pgx.Tx (the file then becomes visible
// when the caller commits). On any failure (an error from r, a cancelled
// ctx, a limit, a lost connection) nothing of the file remains.
func (s *Store) Put(ctx context.Context, db DB, r io.Reader, o PutOptions) (File, error) {
	if err := ValidateName(o.Name); err != nil {
		return File{}, err
	}
	if err := validateOwner(o.Owner); err != nil {
		return File{}, err
	}
	meta, err := normalizeMetadata(o.Metadata)
	if err != nil {
		return File{}, err
	}
	if o.SHA256 != nil && len(o.SHA256) != sha256.Size {
		return File{}, fmt.Errorf("%w: expected SHA-256 has %d bytes, want 32", ErrInvalidInput, len(o.SHA256))
	}
	if o.Size < 0 || o.MaxSize < 0 {
		return File{}, fmt.Errorf("%w: negative size", ErrInvalidInput)
	}
	limit := s.cfg.MaxSize
	if o.MaxSize > 0 && (limit < 0 || o.MaxSize < limit) {
		limit = o.MaxSize
	}
	if o.Size > 0 && limit >= 0 && o.Size > limit {
		return File{}, &SizeError{Limit: limit, Size: o.Size}
	}

	// Sniff before writing anything, so that a disallowed type costs nothing.
	head := make([]byte, 512)
	n, err := io.ReadFull(r, head)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return File{}, fmt.Errorf("files: reading %q: %w", o.Name, err)
	}
	head = head[:n]
	ct := o.ContentType
	if ct == "" || (o.DetectOctetStream && ct == "application/octet-stream") {
		ct = http.DetectContentType(head)
	}
	ct, base, err := normalizeContentType(ct)
	if err != nil {
		return File{}, err
	}
	if !s.allowed(base) {
		return File{}, fmt.Errorf("%w: %s", ErrTypeNotAllowed, base)
	}
	if n == 0 && s.cfg.RejectEmpty {
		return File{}, ErrEmpty
	}

	src := &countingReader{r: io.MultiReader(bytes.NewReader(head), r), h: sha256.New(), limit: limit}
	var f File
	err = pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		var blobID int64
		var rls bool
		if err := tx.QueryRow(ctx, `INSERT INTO `+s.blobs+` (storage, chunk_size) VALUES ($1, $2)
			RETURNING id, row_security_active($3::text::regclass)`,
			string(s.cfg.Storage), s.blobChunkSize(), s.chunks).Scan(&blobID, &rls); err != nil {
			return fmt.Errorf("files: creating body: %w", err)
		}
		var err error
		switch {
		case s.cfg.Storage == LargeObjects:
			err = s.writeLargeObject(ctx, tx, blobID, src)
		case rls:
			// PostgreSQL refuses COPY FROM into a table under row-level
			// security; insert chunk by chunk instead.
			err = s.insertChunks(ctx, tx, blobID, src)
		default:
			err = s.writeChunks(ctx, tx, blobID, src)
		}
		if err != nil {
			return err
		}
		if err := src.check(o); err != nil {
			return err
		}
		var sum [32]byte
		src.h.Sum(sum[:0])
		if blobID, err = s.finishBlob(ctx, tx, blobID, sum[:], src.n); err != nil {
			return err
		}
		f, err = scanFile(tx.QueryRow(ctx, `WITH f AS (
				INSERT INTO `+s.files+` AS f (owner, name, content_type, size, sha256, metadata, blob_id)
				VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *)
			SELECT `+fileColumns+` FROM f JOIN `+s.blobs+` b ON b.id = f.blob_id`,
			o.Owner, o.Name, ct, src.n, sum[:], meta, blobID))
		if err != nil {
			return fmt.Errorf("files: recording %q: %w", o.Name, err)
		}
		return nil
	})
	if err != nil {
		if src.err != nil && !errors.Is(err, src.err) {
			// pgx reports an aborted COPY with its own error; give the cause.
			err = fmt.Errorf("%w (%v)", src.err, err)
		}
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("files: storing %q: %w (%v)", o.Name, ctx.Err(), err)
		}
		return File{}, err
	}
	return f, nil
}

// SizeError reports a body over the size limit; errors.Is(err, ErrTooLarge).
type SizeError struct {
	Limit int64 // the limit in bytes
	Size  int64 // the announced size, or -1 when the body ran over while streaming
}

func (e *SizeError) Error() string {
	if e.Size < 0 {
		return fmt.Sprintf("files: file too large: more than %d bytes", e.Limit)
	}
	return fmt.Sprintf("files: file too large: %d bytes, more than %d", e.Size, e.Limit)
}

// Is makes errors.Is(err, ErrTooLarge) hold.
func (e *SizeError) Is(target error) bool { return target == ErrTooLarge }

// countingReader hashes and counts what it reads and enforces the limit. Its
// error, if any, is kept so that Put can report the cause of an aborted COPY.
type countingReader struct {
	r     io.Reader
	h     hash.Hash
	n     int64
	limit int64
	err   error
}

// fill reads up to len(buf) bytes; it returns 0, nil at the end.
func (c *countingReader) fill(buf []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := io.ReadFull(c.r, buf)
	if n > 0 {
		c.h.Write(buf[:n])
		c.n += int64(n)
		if c.limit >= 0 && c.n > c.limit {
			c.err = &SizeError{Limit: c.limit, Size: -1}
			return 0, c.err
		}
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = nil
	}
	if err != nil {
		c.err = fmt.Errorf("files: reading the body: %w", err)
		return 0, c.err
	}
	return n, nil
}

func (c *countingReader) check(o PutOptions) error {
	if o.Size > 0 && c.n != o.Size {
		return fmt.Errorf("%w: read %d bytes, announced %d", ErrSizeMismatch, c.n, o.Size)
	}
	if o.SHA256 != nil {
		if got := c.h.Sum(nil); !bytes.Equal(got, o.SHA256) {
			return fmt.Errorf("%w: got %s, announced %s", ErrChecksumMismatch, hex.EncodeToString(got), hex.EncodeToString(o.SHA256))
		}
	}
	return nil
}

// chunkSource feeds COPY one chunk at a time, reusing one buffer (pgx
// encodes each row before asking for the next).
type chunkSource struct {
	src    *countingReader
	blobID int64
	buf    []byte
	n      int
	idx    int32
	err    error
	done   bool
}

func (c *chunkSource) Next() bool {
	if c.done {
		return false
	}
	n, err := c.src.fill(c.buf)
	if err != nil {
		c.err, c.done = err, true
		return false
	}
	if n == 0 {
		c.done = true
		return false
	}
	if c.n > 0 {
		c.idx++
	}
	c.n = n
	if n < len(c.buf) {
		c.done = true // a short chunk is the last one; its row is still sent
	}
	return true
}

func (c *chunkSource) Values() ([]any, error) {
	return []any{c.blobID, c.idx, c.buf[:c.n]}, nil
}

func (c *chunkSource) Err() error { return c.err }

func (s *Store) writeChunks(ctx context.Context, tx pgx.Tx, blobID int64, src *countingReader) error {
	cs := &chunkSource{src: src, blobID: blobID, buf: make([]byte, s.cfg.ChunkSize)}
	if _, err := tx.CopyFrom(ctx, s.chunkT, []string{"blob_id", "n", "data"}, cs); err != nil {
		if cs.err != nil {
			return cs.err
		}
		return fmt.Errorf("files: writing chunks: %w", err)
	}
	return nil
}

// insertChunks is writeChunks for tables under row-level security, where
// PostgreSQL refuses COPY FROM: one INSERT per ioSize bytes of chunks, passed
// as one bytea array.
func (s *Store) insertChunks(ctx context.Context, tx pgx.Tx, blobID int64, src *countingReader) error {
	cs := s.cfg.ChunkSize
	per := max(1, ioSize/cs)
	buf := make([]byte, per*cs)
	batch := make([][]byte, 0, per)
	first := int32(0)
	for done := false; !done; {
		batch = batch[:0]
		for len(batch) < per {
			b := buf[len(batch)*cs : (len(batch)+1)*cs]
			got, err := src.fill(b)
			if err != nil {
				return err
			}
			if got > 0 {
				batch = append(batch, b[:got])
			}
			if got < cs {
				done = true
				break
			}
		}
		if len(batch) == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+s.chunks+` (blob_id, n, data)
			SELECT $1, $2 + i::integer - 1, d FROM pg_catalog.unnest($3::bytea[]) WITH ORDINALITY AS u (d, i)`,
			blobID, first, batch); err != nil {
			return fmt.Errorf("files: writing chunks: %w", err)
		}
		first += int32(len(batch))
	}
	return nil
}

func (s *Store) writeLargeObject(ctx context.Context, tx pgx.Tx, blobID int64, src *countingReader) error {
	var oid uint32
	if err := tx.QueryRow(ctx, `WITH lo AS (INSERT INTO `+s.los+` (oid) VALUES (lo_create(0)) RETURNING oid)
		UPDATE `+s.blobs+` b SET lo_oid = lo.oid FROM lo WHERE b.id = $1 RETURNING b.lo_oid`, blobID).Scan(&oid); err != nil {
		return fmt.Errorf("files: creating large object: %w", err)
	}
	buf := make([]byte, s.blobChunkSize())
	var off int64
	for {
		n, err := src.fill(buf)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `SELECT lo_put($1, $2, $3)`, oid, off, buf[:n]); err != nil {
			return fmt.Errorf("files: writing large object: %w", err)
		}
		off += int64(n)
		if n < len(buf) {
			return nil
		}
	}
}

// ioSize is how many bytes one round trip moves at most: the batch of chunks
// an INSERT under row-level security or a read fetches, and the least piece
// of a large object.
const ioSize = 1 << 20

// blobChunkSize is the chunk size new bodies record: the row size for
// chunks, the piece lo_put and lo_get move for large objects.
func (s *Store) blobChunkSize() int {
	if s.cfg.Storage == LargeObjects {
		return max(s.cfg.ChunkSize, ioSize)
	}
	return s.cfg.ChunkSize
}

// finishBlob records size and checksum of a written body. With Dedup it
// looks for an identical body of the same tenant first: when there is one,
// its reference count goes up, the new copy is dropped and its id returned.
func (s *Store) finishBlob(ctx context.Context, tx pgx.Tx, blobID int64, sum []byte, size int64) (int64, error) {
	if !s.cfg.Dedup {
		if _, err := tx.Exec(ctx, `UPDATE `+s.blobs+` SET sha256 = $2, size = $3 WHERE id = $1`, blobID, sum, size); err != nil {
			return 0, fmt.Errorf("files: recording body: %w", err)
		}
		return blobID, nil
	}
	for attempt := 0; ; attempt++ {
		var existing int64
		err := tx.QueryRow(ctx, `UPDATE `+s.blobs+` SET refs = refs + 1
			WHERE sha256 = $1 AND size = $2 AND dedup AND id <> $3
			  AND tenant_id IS NOT DISTINCT FROM NULLIF(current_setting('app.tenant_id', true), '')::uuid
			RETURNING id`, sum, size, blobID).Scan(&existing)
		switch {
		case err == nil:
			if _, err := tx.Exec(ctx, `DELETE FROM `+s.blobs+` WHERE id = $1`, blobID); err != nil {
				return 0, fmt.Errorf("files: dropping duplicate body: %w", err)
			}
			return existing, nil
		case !errors.Is(err, pgx.ErrNoRows):
			return 0, fmt.Errorf("files: looking for an identical body: %w", err)
		}
		// None yet: claim the hash for this body. A concurrent upload of the
		// same bytes may claim it first; then the unique index refuses ours
		// and the next round finds theirs.
		err = pgdb.InTx(ctx, tx, func(sp pgx.Tx) error {
			_, err := sp.Exec(ctx, `UPDATE `+s.blobs+` SET sha256 = $2, size = $3, dedup = true WHERE id = $1`, blobID, sum, size)
			return err
		})
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" && attempt < 5 {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("files: recording body: %w", err)
		}
		return blobID, nil
	}
}
