package files_test

import (
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/files"
	"github.com/justpg/justpg/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func newDB(t testing.TB) *pgtest.DB {
	t.Helper()
	return pgtest.NewDB(t, pgtest.WithSetup("files", func(ctx context.Context, pool *pgxpool.Pool) error {
		return files.Migrate(ctx, pool)
	}))
}

func newStore(t testing.TB, cfg files.Config) *files.Store {
	t.Helper()
	s, err := files.New(cfg)
	require.NoError(t, err)
	return s
}

// pattern is a deterministic, fast, non-repeating-per-chunk byte source: a
// pseudo-random block of prime length, repeated.
var patternBlock = func() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 65521)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}()

type patternReader struct {
	off, n int64
}

func newPattern(n int64) *patternReader { return &patternReader{n: n} }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	if rem := p.n - p.off; int64(len(b)) > rem {
		b = b[:rem]
	}
	total := 0
	for len(b) > 0 {
		i := int(p.off % int64(len(patternBlock)))
		c := copy(b, patternBlock[i:])
		b = b[c:]
		p.off += int64(c)
		total += c
	}
	return total, nil
}

func patternBytes(n int64) []byte {
	b, _ := io.ReadAll(newPattern(n))
	return b
}

func patternSum(n int64) [32]byte {
	h := sha256.New()
	_, _ = io.Copy(h, newPattern(n))
	var s [32]byte
	h.Sum(s[:0])
	return s
}

// counts returns the rows of every files table, to prove nothing is left.
func counts(t *testing.T, db *pgtest.DB) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, tbl := range []string{"files", "files_blobs", "files_chunks", "files_large_objects"} {
		var n int
		require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM justpg.`+tbl).Scan(&n))
		out[tbl] = n
	}
	var n int
	require.NoError(t, db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_largeobject_metadata`).Scan(&n))
	out["pg_largeobject_metadata"] = n
	return out
}

func requireEmpty(t *testing.T, db *pgtest.DB) {
	t.Helper()
	require.Equal(t, map[string]int{"files": 0, "files_blobs": 0, "files_chunks": 0, "files_large_objects": 0, "pg_largeobject_metadata": 0}, counts(t, db))
}

// failingReader returns n bytes of pattern, then err.
type failingReader struct {
	r   io.Reader
	err error
}

func (f *failingReader) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

func failAfter(n int64, err error) io.Reader {
	return &failingReader{r: newPattern(n), err: err}
}

func newDBOn(t *testing.T, srv *pgtest.Server) *pgtest.DB {
	t.Helper()
	return pgtest.NewDB(t, pgtest.OnServer(srv), pgtest.WithSetup("files", func(ctx context.Context, pool *pgxpool.Pool) error {
		return files.Migrate(ctx, pool)
	}))
}
