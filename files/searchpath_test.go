package files_test

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/files"
	"github.com/justpg/justpg/internal/pgtest"
)

// Sessions whose search_path holds only the application's own schema, or
// nothing: Put, Get, List, Delete (whose triggers release and remove the
// bodies, chunks and large objects) and Clean work in both storages.
func TestFilesWithUnusualSearchPath(t *testing.T) {
	t.Parallel()
	for _, sp := range []string{"app", "''", "pg_catalog"} {
		t.Run(sp, func(t *testing.T) {
			t.Parallel()
			db := pgtest.NewDB(t, pgtest.WithSetup("files", func(ctx context.Context, pool *pgxpool.Pool) error {
				return files.Migrate(ctx, pool)
			}), pgtest.WithPoolConfig(func(c *pgxpool.Config) {
				c.ConnConfig.RuntimeParams["search_path"] = sp
			}))
			ctx := context.Background()
			_, err := db.Pool.Exec(ctx, `CREATE SCHEMA app`)
			require.NoError(t, err)
			body := bytes.Repeat([]byte("0123456789abcdef"), 2000) // 32000 bytes: several chunks
			for _, st := range []files.Storage{files.Chunks, files.LargeObjects} {
				s := newStore(t, files.Config{Storage: st, Dedup: true, ChunkSize: 8000})
				a, err := s.Put(ctx, db.Pool, bytes.NewReader(body), files.PutOptions{Name: "a.bin", Owner: "u1"})
				require.NoError(t, err, st)
				b, err := s.Put(ctx, db.Pool, bytes.NewReader(body), files.PutOptions{Name: "b.bin", Owner: "u1"})
				require.NoError(t, err, st)
				r, err := s.Get(ctx, db.Pool, b.ID)
				require.NoError(t, err, st)
				got, err := io.ReadAll(r)
				require.NoError(t, err, st)
				assert.Equal(t, body, got, st)
				page, err := s.List(ctx, db.Pool, files.ListOptions{Owner: "u1", HasOwner: true})
				require.NoError(t, err, st)
				assert.Len(t, page.Files, 2, st)
				require.NoError(t, s.Delete(ctx, db.Pool, a.ID), st)
				require.NoError(t, s.Delete(ctx, db.Pool, b.ID), st)
				_, err = s.Clean(ctx, db.Pool, files.CleanOptions{})
				require.NoError(t, err, st)
			}
			var blobs, chunks, los int
			require.NoError(t, db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM justpg.files_blobs),
				(SELECT count(*) FROM justpg.files_chunks), (SELECT count(*) FROM justpg.files_large_objects)`).Scan(&blobs, &chunks, &los))
			assert.Zero(t, blobs, "the delete triggers removed the bodies")
			assert.Zero(t, chunks)
			assert.Zero(t, los)
		})
	}
}
