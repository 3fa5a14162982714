package files_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
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
	for _, tc := range []struct {
		name, searchPath string
		shadow           bool
	}{
		{"app", "app", false},
		{"empty", "''", false},
		{"pg_catalog", "pg_catalog", false},
		{"shadowed public", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := pgtest.NewDB(t, pgtest.WithSetup("files", func(ctx context.Context, pool *pgxpool.Pool) error {
				return files.Migrate(ctx, pool)
			}), pgtest.WithPoolConfig(func(c *pgxpool.Config) {
				if tc.searchPath != "" {
					c.ConnConfig.RuntimeParams["search_path"] = tc.searchPath
				}
			}))
			ctx := context.Background()
			_, err := db.Pool.Exec(ctx, `CREATE SCHEMA app`)
			require.NoError(t, err)
			if tc.shadow {
				_, err = db.Pool.Exec(ctx, pgtest.ShadowingSQL("public"))
				require.NoError(t, err)
			}
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
			b := make([]byte, 4)
			_, _ = rand.Read(b)
			role := "files_sp_" + hex.EncodeToString(b)
			_, err = db.Pool.Exec(ctx, fmt.Sprintf(`CREATE ROLE %[1]s NOLOGIN;
				GRANT USAGE ON SCHEMA justpg TO %[1]s;
				GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA justpg TO %[1]s;
				GRANT USAGE ON ALL SEQUENCES IN SCHEMA justpg TO %[1]s`, role))
			require.NoError(t, err)
			t.Cleanup(func() {
				_, _ = db.Pool.Exec(context.Background(), fmt.Sprintf(`DROP OWNED BY %[1]s; DROP ROLE %[1]s`, role))
			})
			for _, tbl := range []string{"files", "files_blobs", "files_chunks", "files_large_objects"} {
				_, err := db.Pool.Exec(ctx, fmt.Sprintf(`ALTER TABLE justpg.%[1]s ENABLE ROW LEVEL SECURITY;
					CREATE POLICY tenant ON justpg.%[1]s
					USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid))`, tbl))
				require.NoError(t, err)
			}
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
