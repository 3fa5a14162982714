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
// nothing, and sessions with the default search_path ("$user", public)
// where public holds objects shadowing built-ins (pgtest.ShadowingSQL), as a
// role allowed to create there could plant them: Put, Get, List, Delete
// (whose triggers release and remove the bodies, chunks and large objects)
// and Clean work in both storages.
func TestFilesWithUnusualSearchPath(t *testing.T) {
	t.Parallel()
	for _, tc := range pgtest.SearchPathCases {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			db := pgtest.NewDB(t, pgtest.WithSetup("files", func(ctx context.Context, pool *pgxpool.Pool) error {
				return files.Migrate(ctx, pool)
			}), pgtest.WithSearchPath(tc.SearchPath))
			ctx := context.Background()
			_, err := db.Pool.Exec(ctx, tc.SetupSQL())
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
			// Under row-level security Put inserts the chunks with an
			// INSERT over an array instead of COPY.
			role := tenantRole(t, db)
			s := newStore(t, files.Config{ChunkSize: 8000})
			tx, err := db.Pool.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = tx.Rollback(ctx) }()
			_, err = tx.Exec(ctx, `SELECT pg_catalog.set_config('role', $1, true), pg_catalog.set_config('app.tenant_id', $2, true)`,
				role, "11111111-1111-1111-1111-111111111111")
			require.NoError(t, err)
			f, err := s.Put(ctx, tx, bytes.NewReader(body), files.PutOptions{Name: "rls.bin"})
			require.NoError(t, err)
			require.NoError(t, s.Delete(ctx, tx, f.ID))
			require.NoError(t, tx.Commit(ctx))

			var blobs, chunks, los int
			require.NoError(t, db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM justpg.files_blobs),
				(SELECT count(*) FROM justpg.files_chunks), (SELECT count(*) FROM justpg.files_large_objects)`).Scan(&blobs, &chunks, &los))
			assert.Zero(t, blobs, "the delete triggers removed the bodies")
			assert.Zero(t, chunks)
			assert.Zero(t, los)
		})
	}
}
