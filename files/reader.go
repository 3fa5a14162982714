package files

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Reader reads one file's body. It fetches bytes only when Read needs them,
// one round trip at a time: sequential reads fetch about 1 MiB of whole
// chunks, a read after a seek at least 64 KiB, so memory use stays a few
// MiB whatever the file and chunk sizes. It implements io.ReadSeeker,
// io.ReaderAt and io.WriterTo, as http.ServeContent and io.Copy use them.
//
// Reads run on the DB and under the ctx given to Get: a cancelled ctx fails
// the next Read. With a pool, each fetch borrows a connection only for its
// round trip; bodies are immutable, so reads need no transaction. Once a
// Reader on a pool streams (a second sequential window), it fetches the next
// window on another pooled connection while the caller consumes the current
// one, so the database and the caller work at the same time; a Reader on a
// connection or transaction fetches one window at a time. A Reader is not
// safe for concurrent use.
type Reader struct {
	ctx  context.Context
	db   DB
	s    *Store
	file File

	off    int64
	buf    []byte // holds bytes [bufOff, bufOff+len(buf)) of the body
	bufOff int64
	next   int64 // where a sequential read would continue

	pooled bool     // db is a pool: a prefetch may run on another connection
	pf     *pending // the fetch running ahead, if any
	spare  []byte   // a window buffer to reuse
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
	_, pooled := db.(*pgxpool.Pool)
	return &Reader{ctx: ctx, db: db, s: s, file: f, pooled: pooled}
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

// Close releases the buffers, after waiting for a fetch running ahead.
// Reading after Close fetches again.
func (r *Reader) Close() error {
	if r.pf != nil {
		<-r.pf.done
		r.pf = nil
	}
	r.buf, r.spare = nil, nil
	r.bufOff, r.next = 0, 0
	return nil
}

// byteScanner scans a bytea into a reused buffer instead of allocating.
type byteScanner struct{ buf *[]byte }

func (b byteScanner) ScanBytes(v []byte) error {
	*b.buf = append((*b.buf)[:0], v...)
	return nil
}

// chunkAppender appends the part of each scanned chunk that falls within
// [from, to) of the body to buf; pos is the body offset of the chunk.
type chunkAppender struct {
	buf      *[]byte
	pos      *int64
	from, to int64
}

func (c chunkAppender) ScanBytes(v []byte) error {
	lo := max(c.from-*c.pos, 0)
	hi := min(c.to-*c.pos, int64(len(v)))
	if lo < hi {
		*c.buf = append(*c.buf, v[lo:hi]...)
	}
	return nil
}

// fill loads bytes of the body starting at off: about ioSize bytes (whole
// chunks) when reading sequentially, else at least want bytes (and
// randomReadSize), so that small reads after a seek stay small. One round
// trip either way, unless a prefetch already holds the bytes.
func (r *Reader) fill(off int64, want int) error {
	if err := r.ctx.Err(); err != nil {
		return fmt.Errorf("files: reading %s: %w", r.file.ID, err)
	}
	seq := off == r.next
	// Reading on from the end of the previous fetch (not the first read):
	// a stream, worth fetching ahead.
	stream := seq && off > 0 && r.bufOff+int64(len(r.buf)) == off
	end := r.window(off, want, seq)
	if pf := r.pf; pf != nil {
		// Wait for it even when the reader moved elsewhere, so that no
		// query outlives the reader's use.
		r.pf = nil
		<-pf.done
		if pf.off == off && pf.end == end && pf.err == nil {
			r.spare, r.buf = r.buf[:0], pf.buf
			r.bufOff, r.next = off, end
			r.prefetch(stream)
			return nil
		}
		// Not what is needed, or it failed: fetch below (which reports the
		// error if it persists) and keep the buffer.
		r.spare = pf.buf[:0]
	}
	buf, err := r.fetch(off, end, r.buf[:0])
	if err != nil {
		r.buf = buf[:0]
		return err
	}
	r.buf, r.bufOff, r.next = buf, off, end
	r.prefetch(stream)
	return nil
}

// window returns the end of the bytes a fill at off fetches.
func (r *Reader) window(off int64, want int, seq bool) int64 {
	cs := int64(r.file.chunkSize)
	first := off / cs
	var end int64
	if seq {
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
	return min(end, r.file.Size)
}

// pending is a fetch of bytes [off, end) running ahead of the reader.
type pending struct {
	off, end int64
	buf      []byte
	err      error
	done     chan struct{}
}

// prefetch starts fetching the next sequential window in the background
// while the caller consumes the current one, when the reader streams and
// its DB is a pool (each fetch then runs on a connection of its own; a
// single connection or transaction cannot run two queries at once). At most
// one fetch runs ahead, so a Reader holds at most three windows.
func (r *Reader) prefetch(stream bool) {
	if !stream || !r.pooled || r.next >= r.file.Size {
		return
	}
	pf := &pending{off: r.next, end: r.window(r.next, 0, true), buf: r.spare[:0], done: make(chan struct{})}
	r.spare = nil
	r.pf = pf
	go func() {
		defer close(pf.done)
		pf.buf, pf.err = r.fetch(pf.off, pf.end, pf.buf)
	}()
}

// fetch appends bytes [off, end) of the body to buf with one query. It uses
// only fields that never change after Get, so prefetch may run it
// concurrently with the reader.
func (r *Reader) fetch(off, end int64, buf []byte) ([]byte, error) {
	cs := int64(r.file.chunkSize)
	first, last := off/cs, (end-1)/cs
	length := end - off
	var err error
	switch {
	case r.file.Storage == LargeObjects:
		err = r.db.QueryRow(r.ctx, `SELECT lo_get($1, $2, $3)`, r.file.loOID, off, int32(length)).Scan(byteScanner{&buf})
	case first == last && (off%cs != 0 || length != min(cs, r.file.Size-first*cs)):
		// Part of one chunk: substring of an uncompressed value reads only
		// the TOAST slices it needs when the chunk is out of line.
		err = r.db.QueryRow(r.ctx, `SELECT substring(data FROM $3 FOR $4) FROM `+r.s.chunks+` WHERE blob_id = $1 AND n = $2`,
			r.file.blobID, int32(first), int32(off%cs+1), int32(length)).Scan(byteScanner{&buf})
	default:
		buf, err = r.readChunks(buf, off, end, first, last)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return buf, fmt.Errorf("%w: %s was deleted while being read", ErrNotFound, r.file.ID)
	}
	if err != nil {
		return buf, fmt.Errorf("files: reading %s: %w", r.file.ID, err)
	}
	if int64(len(buf)) != length {
		return buf, fmt.Errorf("%w: %s has %d bytes at offset %d, want %d", ErrCorrupt, r.file.ID, len(buf), off, length)
	}
	return buf, nil
}

// readChunks appends bytes [off, end) of the body, held by chunks first to
// last, to buf with one query.
func (r *Reader) readChunks(buf []byte, off, end, first, last int64) ([]byte, error) {
	cs := int64(r.file.chunkSize)
	rows, err := r.db.Query(r.ctx, `SELECT n, data FROM `+r.s.chunks+` WHERE blob_id = $1 AND n BETWEEN $2 AND $3 ORDER BY n`,
		r.file.blobID, int32(first), int32(last))
	if err != nil {
		return buf, err
	}
	defer rows.Close()
	want := first
	var n int32
	var pos int64
	for rows.Next() {
		pos = want * cs // checked against n below
		if err := rows.Scan(&n, chunkAppender{buf: &buf, pos: &pos, from: off, to: end}); err != nil {
			return buf, err
		}
		if int64(n) != want {
			return buf, fmt.Errorf("%w: %s chunk %d is missing", ErrCorrupt, r.file.ID, want)
		}
		want++
	}
	if err := rows.Err(); err != nil {
		return buf, err
	}
	if want == first {
		return buf, pgx.ErrNoRows
	}
	return buf, nil
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
