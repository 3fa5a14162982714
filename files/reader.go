package files

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
)

// Reader reads one file's body. It fetches bytes only when Read needs them,
// one round trip at a time: sequential reads fetch up to the end of the
// current chunk, a read after a seek at least 64 KiB, so memory use is at
// most one chunk whatever the file size. It implements io.ReadSeeker and io.ReaderAt,
// as http.ServeContent needs.
//
// Reads run on the DB and under the ctx given to Get: a cancelled ctx fails
// the next Read. With a pool, each fetch borrows a connection only for its
// round trip; bodies are immutable, so reads need no transaction. A Reader
// is not safe for concurrent use.
type Reader struct {
	ctx  context.Context
	db   DB
	s    *Store
	file File

	off    int64
	buf    []byte // holds bytes [bufOff, bufOff+len(buf)) of the body
	bufOff int64
	next   int64 // where a sequential read would continue
}

// randomReadSize is the least a read after a seek fetches; sequential reads
// fetch up to the end of the chunk.
const randomReadSize = 64 << 10

// Get returns the file's metadata and a Reader positioned at its start.
func (s *Store) Get(ctx context.Context, db DB, id string) (*Reader, error) {
	f, err := s.Stat(ctx, db, id)
	if err != nil {
		return nil, err
	}
	return s.reader(ctx, db, f), nil
}

func (s *Store) reader(ctx context.Context, db DB, f File) *Reader {
	return &Reader{ctx: ctx, db: db, s: s, file: f}
}

// File returns the metadata of the file being read.
func (r *Reader) File() File { return r.file }

// Size returns the body length.
func (r *Reader) Size() int64 { return r.file.Size }

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.off >= r.file.Size {
		return 0, io.EOF
	}
	if r.off < r.bufOff || r.off >= r.bufOff+int64(len(r.buf)) {
		if err := r.fill(r.off, len(p)); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.buf[r.off-r.bufOff:])
	r.off += int64(n)
	return n, nil
}

// Seek implements io.Seeker. Seeking is free: nothing is fetched until the
// next Read.
func (r *Reader) Seek(offset int64, whence int) (int64, error) {
	var abs int64
	switch whence {
	case io.SeekStart:
		abs = offset
	case io.SeekCurrent:
		abs = r.off + offset
	case io.SeekEnd:
		abs = r.file.Size + offset
	default:
		return 0, errors.New("files: Seek: invalid whence")
	}
	if abs < 0 {
		return 0, errors.New("files: Seek: negative position")
	}
	r.off = abs
	return abs, nil
}

// ReadAt implements io.ReaderAt. It does not move the Read position but
// shares the chunk buffer, so it is not safe concurrently with Read.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("files: ReadAt: negative offset")
	}
	saved := r.off
	defer func() { r.off = saved }()
	r.off = off
	n, err := io.ReadFull(r, p)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	return n, err
}

// Close releases the chunk buffer. Reading after Close fetches again.
func (r *Reader) Close() error {
	r.buf = nil
	return nil
}

// byteScanner scans a bytea into a reused buffer instead of allocating.
type byteScanner struct{ buf *[]byte }

func (b byteScanner) ScanBytes(v []byte) error {
	*b.buf = append((*b.buf)[:0], v...)
	return nil
}

// fill loads bytes of the chunk holding off, starting at off: up to the
// chunk's end when reading sequentially, else at least want bytes (and
// randomReadSize), so that small reads after a seek stay small.
func (r *Reader) fill(off int64, want int) error {
	if err := r.ctx.Err(); err != nil {
		return fmt.Errorf("files: reading %s: %w", r.file.ID, err)
	}
	cs := int64(r.file.chunkSize)
	n := off / cs
	start := off % cs
	length := min(cs-start, r.file.Size-off)
	if off != r.next {
		length = min(length, int64(max(want, randomReadSize)))
	}
	var err error
	if r.file.Storage == LargeObjects {
		err = r.db.QueryRow(r.ctx, `SELECT lo_get($1, $2, $3)`, r.file.loOID, off, int32(length)).Scan(byteScanner{&r.buf})
	} else if start == 0 && length == cs {
		err = r.db.QueryRow(r.ctx, `SELECT data FROM `+r.s.chunks+` WHERE blob_id = $1 AND n = $2`,
			r.file.blobID, int32(n)).Scan(byteScanner{&r.buf})
	} else {
		// substring of an uncompressed external value reads only the TOAST
		// slices it needs.
		err = r.db.QueryRow(r.ctx, `SELECT substring(data FROM $3 FOR $4) FROM `+r.s.chunks+` WHERE blob_id = $1 AND n = $2`,
			r.file.blobID, int32(n), int32(start+1), int32(length)).Scan(byteScanner{&r.buf})
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: %s was deleted while being read", ErrNotFound, r.file.ID)
	}
	if err != nil {
		r.buf = r.buf[:0]
		return fmt.Errorf("files: reading %s: %w", r.file.ID, err)
	}
	if int64(len(r.buf)) != length {
		got := len(r.buf)
		r.buf = r.buf[:0]
		return fmt.Errorf("%w: %s chunk %d has %d bytes at offset %d, want %d", ErrCorrupt, r.file.ID, n, got, start, length)
	}
	r.bufOff = off
	r.next = off + length
	return nil
}

// WriteTo implements io.WriterTo, so io.Copy streams chunk by chunk without
// an intermediate buffer.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for r.off < r.file.Size {
		if r.off < r.bufOff || r.off >= r.bufOff+int64(len(r.buf)) {
			if err := r.fill(r.off, 0); err != nil {
				return total, err
			}
		}
		n, err := w.Write(r.buf[r.off-r.bufOff:])
		r.off += int64(n)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
