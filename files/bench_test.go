package files_test

import (
	"context"
	"io"
	"testing"

	"github.com/justpg/justpg/files"
)

const benchSize = 8 << 20

// BenchmarkPut streams 8 MiB files into the test server (durability off);
// bench/files compares with the alternatives on a durable server.
func BenchmarkPut(b *testing.B) {
	db := newDB(b)
	s := newStore(b, files.Config{})
	ctx := context.Background()
	b.SetBytes(benchSize)
	for b.Loop() {
		if _, err := s.Put(ctx, db.Pool, newPattern(benchSize), files.PutOptions{Name: "b.bin"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGet streams an 8 MiB file out.
func BenchmarkGet(b *testing.B) {
	db := newDB(b)
	s := newStore(b, files.Config{})
	ctx := context.Background()
	f, err := s.Put(ctx, db.Pool, newPattern(benchSize), files.PutOptions{Name: "b.bin"})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(benchSize)
	for b.Loop() {
		r, err := s.Get(ctx, db.Pool, f.ID)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRangeRead reads 4 KiB at random offsets, as a seeking video
// player or a Range request does.
func BenchmarkRangeRead(b *testing.B) {
	db := newDB(b)
	s := newStore(b, files.Config{})
	ctx := context.Background()
	f, err := s.Put(ctx, db.Pool, newPattern(benchSize), files.PutOptions{Name: "b.bin"})
	if err != nil {
		b.Fatal(err)
	}
	r, err := s.Get(ctx, db.Pool, f.ID)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 4096)
	b.SetBytes(int64(len(buf)))
	off := int64(0)
	for b.Loop() {
		off = (off + 1_234_567) % (benchSize - int64(len(buf)))
		if _, err := r.ReadAt(buf, off); err != nil {
			b.Fatal(err)
		}
	}
}
