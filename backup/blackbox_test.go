package backup_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/backup"
	"github.com/justpg/justpg/internal/pgtest"
)

// Names a user may really have — a dot in a schema and a table name, a
// newline, quotes, non-ASCII — and kinds of table beyond the plain one
// (partitioned, unlogged): the dump's counts and the drill's agree, in both
// formats.
func TestBlackboxDumpDrillOddNamesAndTableKinds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	_, err := db.Pool.Exec(ctx, `
		CREATE SCHEMA "a.b";
		CREATE TABLE "a.b"."c.d" (id int);
		INSERT INTO "a.b"."c.d" SELECT generate_series(1, 7);
		CREATE TABLE "new
line" (id int);
		INSERT INTO "new
line" SELECT generate_series(1, 5);
		CREATE TABLE "Ünïcødé ""q"" tbl" (id int);
		INSERT INTO "Ünïcødé ""q"" tbl" SELECT generate_series(1, 3);
		CREATE TABLE parted (id int, k int) PARTITION BY RANGE (k);
		CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10);
		CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (10) TO (20);
		INSERT INTO parted SELECT g, g FROM generate_series(0, 19) g;
		CREATE UNLOGGED TABLE scratch (id int);
		INSERT INTO scratch SELECT generate_series(1, 11);`)
	require.NoError(t, err)
	for _, cfg := range []backup.Config{{}, {Format: backup.FormatDirectory, Jobs: 2}} {
		m, _ := newManager(t, db, cfg)
		man, err := m.Dump(ctx)
		require.NoError(t, err)
		assert.Equal(t, int64(7), tableRows(man, "a.b", "c.d"))
		assert.Equal(t, int64(5), tableRows(man, "public", "new\nline"))
		assert.Equal(t, int64(3), tableRows(man, "public", `Ünïcødé "q" tbl`))
		rep, err := m.Drill(ctx, man.ID)
		require.NoError(t, err, "%+v", rep)
		assert.True(t, rep.Passed)
		assert.Empty(t, rep.Mismatches)
	}
}
