package migrate_test

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/migrate"
	"github.com/justpg/justpg/internal/pgtest"
)

func goodFS() fstest.MapFS {
	return fstest.MapFS{
		"001_create_things.sql": {Data: []byte(`CREATE TABLE things (id bigint PRIMARY KEY, name text NOT NULL);`)},
		"002_add_index.sql":     {Data: []byte(`CREATE INDEX things_name ON things (name); INSERT INTO things VALUES (1, 'seed');`)},
		"README.md":             {Data: []byte("not a migration")},
	}
}

func TestConcurrentRunsApplyEachMigrationOnce(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	ctx := context.Background()
	line := migrate.Line{Name: "things", FS: goodFS()}

	var wg sync.WaitGroup
	applied := make([]int, 10)
	errs := make([]error, 10)
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			done, err := migrate.Run(ctx, db.Pool, "", line)
			applied[i], errs[i] = len(done), err
		}()
	}
	wg.Wait()
	total := 0
	for i := range 10 {
		require.NoError(t, errs[i])
		total += applied[i]
	}
	assert.Equal(t, 2, total, "each of the two migrations is applied by exactly one runner")

	var seeds int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM justpg.things`).Scan(&seeds))
	assert.Equal(t, 1, seeds, "the data migration ran once")

	done, err := migrate.Run(ctx, db.Pool, "", line)
	require.NoError(t, err)
	assert.Empty(t, done, "a second run is a no-op")
}

func TestExportedFSIsExactlyWhatWasApplied(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	ctx := context.Background()
	fsys := goodFS()
	_, err := migrate.Run(ctx, db.Pool, "", migrate.Line{Name: "things", FS: fsys})
	require.NoError(t, err)

	applied, err := migrate.AppliedMigrations(ctx, db.Pool, "", "things")
	require.NoError(t, err)
	files, err := fs.Glob(fsys, "*.sql")
	require.NoError(t, err)
	code, err := migrate.Load(fsys)
	require.NoError(t, err)
	require.Len(t, applied, len(files))
	for i, m := range code {
		assert.Equal(t, files[i], m.File)
		assert.Equal(t, m.Version, applied[i].Version)
		assert.Equal(t, m.Checksum, applied[i].Checksum)
	}
}

func TestDatabaseAheadIsRefused(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	ctx := context.Background()
	newer := goodFS()
	newer["003_more.sql"] = &fstest.MapFile{Data: []byte(`ALTER TABLE things ADD COLUMN extra int;`)}
	_, err := migrate.Run(ctx, db.Pool, "", migrate.Line{Name: "things", FS: newer})
	require.NoError(t, err)

	_, err = migrate.Run(ctx, db.Pool, "", migrate.Line{Name: "things", FS: goodFS()})
	require.ErrorIs(t, err, migrate.ErrDatabaseAhead)
	assert.Contains(t, err.Error(), "version 3")
}

func TestChangedMigrationIsRefused(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	ctx := context.Background()
	_, err := migrate.Run(ctx, db.Pool, "", migrate.Line{Name: "things", FS: goodFS()})
	require.NoError(t, err)

	changed := goodFS()
	changed["002_add_index.sql"] = &fstest.MapFile{Data: []byte(`CREATE INDEX things_name2 ON things (name);`)}
	_, err = migrate.Run(ctx, db.Pool, "", migrate.Line{Name: "things", FS: changed})
	require.ErrorIs(t, err, migrate.ErrChecksumMismatch)
}

func TestBadMigrationRollsBackCompletely(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	ctx := context.Background()
	bad := goodFS()
	bad["003_broken.sql"] = &fstest.MapFile{Data: []byte(`CREATE TABLE other (id int); SELECT no_such_function();`)}
	_, err := migrate.Run(ctx, db.Pool, "", migrate.Line{Name: "things", FS: bad})
	var merr *migrate.Error
	require.ErrorAs(t, err, &merr)
	assert.Equal(t, 3, merr.Version)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr, "the database error stays reachable")
	assert.Equal(t, "42883", pgErr.Code)

	for _, rel := range []string{"justpg.things", "justpg.other", "justpg.migrations"} {
		var exists bool
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, rel).Scan(&exists))
		assert.False(t, exists, "%s must not exist after the failed run", rel)
	}
}

func TestCallerTransactionRollbackUndoesMigration(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	ctx := context.Background()
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	done, err := migrate.Run(ctx, tx, "", migrate.Line{Name: "things", FS: goodFS()})
	require.NoError(t, err)
	assert.Len(t, done, 2)
	var path string
	require.NoError(t, tx.QueryRow(ctx, `SHOW search_path`).Scan(&path))
	assert.Equal(t, `"$user", public`, path, "the caller's search_path is left as it was")
	require.NoError(t, tx.Rollback(ctx))

	applied, err := migrate.AppliedMigrations(ctx, db.Pool, "", "things")
	require.NoError(t, err)
	assert.Empty(t, applied)
}

func TestHostileSchemaNameIsQuoted(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	ctx := context.Background()
	schema := `x"; DROP SCHEMA public CASCADE; --`
	_, err := migrate.Run(ctx, db.Pool, schema, migrate.Line{Name: "things", FS: goodFS()})
	require.NoError(t, err)
	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname IN ($1, 'public')`, schema).Scan(&n))
	assert.Equal(t, 2, n, "the odd schema exists and public was not dropped")

	_, err = migrate.Run(ctx, db.Pool, "bad\x00name", migrate.Line{Name: "things", FS: goodFS()})
	require.Error(t, err)
}

func TestLoadRejectsMisnamedAndDuplicateFiles(t *testing.T) {
	t.Parallel()
	_, err := migrate.Load(fstest.MapFS{"init.sql": {Data: []byte("SELECT 1")}})
	require.ErrorIs(t, err, migrate.ErrBadMigration)
	_, err = migrate.Load(fstest.MapFS{
		"001_a.sql":  {Data: []byte("SELECT 1")},
		"0001_b.sql": {Data: []byte("SELECT 2")},
	})
	require.ErrorIs(t, err, migrate.ErrBadMigration)
	_, err = migrate.Load(fstest.MapFS{"000_zero.sql": {Data: []byte("SELECT 1")}})
	require.ErrorIs(t, err, migrate.ErrBadMigration)
	ms, err := migrate.Load(fstest.MapFS{
		"010_ten.sql": {Data: []byte("SELECT 10")},
		"002_two.sql": {Data: []byte("SELECT 2")},
	})
	require.NoError(t, err)
	require.Len(t, ms, 2)
	assert.Equal(t, []int{2, 10}, []int{ms[0].Version, ms[1].Version})
	assert.Equal(t, "two", ms[0].Name)
}

func TestRunRejectsLineWithoutFS(t *testing.T) {
	t.Parallel()
	_, err := migrate.Run(context.Background(), nil, "", migrate.Line{Name: "x"})
	require.True(t, errors.Is(err, migrate.ErrBadMigration), err)
}

func TestApplyPrefixesPackageAndSubPanicsOnMissingDir(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	bad := fstest.MapFS{"migrations/001_bad.sql": {Data: []byte(`SELECT no_such_function();`)}}
	err := migrate.Apply(context.Background(), db.Pool, "", "things", migrate.Sub(bad, "migrations"))
	var merr *migrate.Error
	require.ErrorAs(t, err, &merr)
	assert.True(t, strings.HasPrefix(err.Error(), "things: migrate: things 001_bad failed"), err.Error())
	assert.Panics(t, func() { migrate.Sub(bad, "../outside") })
}
