package files

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5"
)

// Reader reads one file's body. It fetches bytes only when Read needs them,
// one round trip at a time: sequential reads fetch about 1 MiB of whole
// chunks, a read after a seek at least 64 KiB, so memory use stays about
// 1 MiB whatever the file and chunk sizes. It
// implements io.ReadSeeker and io.ReaderAt, as http.ServeContent needs.
//
// Reads run on the DB and under the ctx given to Get: a cancelled ctx fails
// the next Read. With a pool, each fetch borrows a connection only for its
// round trip; bodies are immutable, so reads need no transaction. Read,
// Seek and WriteTo are not safe for concurrent use; ReadAt is (see there).
type Reader struct {
	ctx  context.Context
	db   DB
	s    *Store
	file File

	off    int64
	buf    []byte // holds bytes [bufOff, bufOff+len(buf)) of the body
	bufOff int64
	next   int64  // where a sequential read would continue
	seen   []bool // readChunks: which chunks of the window arrived

	atMu sync.Mutex
	at   *Reader // ReadAt's own reader, so it never touches this one's state
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

// ReadAt implements io.ReaderAt. It reads through a buffer of its own, so
// it neither moves nor disturbs the Read position, and ReadAt calls from
// several goroutines are safe (they take turns on that buffer, so
// consecutive small reads of one region cost one fetch).
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("files: ReadAt: negative offset")
	}
	r.atMu.Lock()
	defer r.atMu.Unlock()
	if r.at == nil {
		r.at = r.s.reader(r.ctx, r.db, r.file)
	}
	r.at.off = off
	n, err := io.ReadFull(r.at, p)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	return n, err
}

// Close releases the chunk buffers. Reading after Close fetches again.
func (r *Reader) Close() error {
	r.buf = nil
	r.atMu.Lock()
	r.at = nil
	r.atMu.Unlock()
	return nil
}

// byteScanner scans a bytea into a reused buffer instead of allocating.
type byteScanner struct{ buf *[]byte }

func (b byteScanner) ScanBytes(v []byte) error {
	*b.buf = append((*b.buf)[:0], v...)
	return nil
}

// chunkPlacer copies the part of a scanned chunk that falls within
// [from, from+len(buf)) of the body to its place in buf. Its *n, the chunk
// number, is scanned first (same row).
type chunkPlacer struct {
	r    *Reader
	buf  []byte
	from int64
	n    *int32
}

func (c chunkPlacer) ScanBytes(v []byte) error {
	cs := int64(c.r.file.chunkSize)
	pos := int64(*c.n) * cs
	if want := min(cs, c.r.file.Size-pos); int64(len(v)) != want {
		return fmt.Errorf("%w: %s chunk %d has %d bytes, want %d", ErrCorrupt, c.r.file.ID, *c.n, len(v), want)
	}
	lo := max(c.from-pos, 0)
	hi := min(c.from+int64(len(c.buf))-pos, int64(len(v)))
	if lo < hi {
		copy(c.buf[pos+lo-c.from:], v[lo:hi])
	}
	return nil
}

// fill loads bytes of the body starting at off: about ioSize bytes (whole
// chunks) when reading sequentially, else at least want bytes (and
// randomReadSize), so that small reads after a seek stay small. One round
// trip either way.
func (r *Reader) fill(off int64, want int) error {
	if err := r.ctx.Err(); err != nil {
		return fmt.Errorf("files: reading %s: %w", r.file.ID, err)
	}
	cs := int64(r.file.chunkSize)
	first := off / cs
	var end int64
	if off == r.next {
		// Sequential: up to ioSize bytes, ending on a chunk boundary (or
		// within one chunk, for chunks larger than that).
		if cs > ioSize {
			end = min(off+ioSize, (first+1)*cs)
		} else {
			end = (off + ioSize) / cs * cs
		}
	} else {
		end = off + int64(min(max(want, randomReadSize), ioSize))
		if cs >= ioSize {
			end = min(end, (first+1)*cs) // one big chunk at a time
		}
	}
	end = min(end, r.file.Size)
	last := (end - 1) / cs
	length := end - off
	r.buf = r.buf[:0]
	var err error
	switch {
	case r.file.Storage == LargeObjects:
		err = r.db.QueryRow(r.ctx, `SELECT lo_get($1, $2, $3)`, r.file.loOID, off, int32(length)).Scan(byteScanner{&r.buf})
	case first == last && (off%cs != 0 || length != min(cs, r.file.Size-first*cs)):
		// Part of one chunk: substring of an uncompressed value reads only
		// the TOAST slices it needs when the chunk is out of line.
		err = r.db.QueryRow(r.ctx, `SELECT substring(data FROM $3 FOR $4) FROM `+r.s.chunks+` WHERE blob_id = $1 AND n = $2`,
			r.file.blobID, int32(first), int32(off%cs+1), int32(length)).Scan(byteScanner{&r.buf})
	default:
		err = r.readChunks(off, end, first, last)
	}
	if err != nil {
		// Nothing of a failed fetch is served: readChunks sizes r.buf
		// before it reads, and r.bufOff still names the previous window.
		r.buf = r.buf[:0]
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %s was deleted while being read", ErrNotFound, r.file.ID)
		}
		return fmt.Errorf("files: reading %s: %w", r.file.ID, err)
	}
	if int64(len(r.buf)) != length {
		got := len(r.buf)
		r.buf = r.buf[:0]
		return fmt.Errorf("%w: %s has %d bytes at offset %d, want %d", ErrCorrupt, r.file.ID, got, off, length)
	}
	r.bufOff = off
	r.next = end
	return nil
}

// readChunks sets r.buf to bytes [off, end) of the body, held by chunks
// first to last, with one query. The rows come in whatever order the plan
// gives and are put in place here: an ORDER BY made the server sort the
// whole window (about 1 MiB of rows) in memory for every fetch, which cost
// it more than reading the rows (see the package docs).
func (r *Reader) readChunks(off, end, first, last int64) error {
	count := int(last - first + 1)
	r.buf = slices.Grow(r.buf[:0], int(end-off))[:end-off]
	if cap(r.seen) < count {
		r.seen = make([]bool, count)
	}
	seen := r.seen[:count]
	clear(seen)
	rows, err := r.db.Query(r.ctx, `SELECT n, data FROM `+r.s.chunks+` WHERE blob_id = $1 AND n BETWEEN $2 AND $3`,
		r.file.blobID, int32(first), int32(last))
	if err != nil {
		return err
	}
	defer rows.Close()
	var n int32
	got := 0
	for rows.Next() {
		if err := rows.Scan(&n, chunkPlacer{r: r, buf: r.buf, from: off, n: &n}); err != nil {
			return err
		}
		i := int64(n) - first
		if i < 0 || i >= int64(count) || seen[i] {
			return fmt.Errorf("%w: %s chunk %d is out of range or repeated", ErrCorrupt, r.file.ID, n)
		}
		seen[i] = true
		got++
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if got == 0 {
		return pgx.ErrNoRows
	}
	if got != count {
		return fmt.Errorf("%w: %s has %d of chunks %d-%d", ErrCorrupt, r.file.ID, got, first, last)
	}
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
