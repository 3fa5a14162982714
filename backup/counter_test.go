package backup

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
)

// A table reported loaded too early (counted before its rows were in) is
// counted again at the end, so an early report never fails a good drill;
// tables nobody reported, and ones the manifest does not have, are counted
// at the end.
func TestCounterRecountsEarlyMismatches(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	_, err := db.Pool.Exec(ctx, `CREATE TABLE early (id int); CREATE TABLE late (id int); CREATE TABLE extra (id int);
		INSERT INTO late SELECT generate_series(1, 7); INSERT INTO extra VALUES (1)`)
	require.NoError(t, err)
	var conns []*pgx.Conn
	for range 3 {
		cfg, err := pgx.ParseConfig(db.URL)
		require.NoError(t, err)
		pgtest.ApplyExecMode(t, cfg)
		pgtest.ApplySession(t, cfg)
		c, err := pgx.ConnectConfig(ctx, cfg)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close(context.Background()) })
		conns = append(conns, c)
	}
	want := []TableCount{{Schema: "public", Table: "early", Rows: 5}, {Schema: "public", Table: "late", Rows: 7}}
	cnt := newCounter(ctx, conns[1:], want)
	cnt.loaded("public.early", false) // too early: the table is still empty
	cnt.loaded("nosuch.table", false)
	require.Eventually(t, func() bool { return cnt.counted.Load() == 1 }, 30*time.Second, 10*time.Millisecond, "the early count ran")
	cnt.mu.Lock()
	assert.Zero(t, cnt.early[tableKey("public", "early")].Rows, "counted while empty")
	cnt.mu.Unlock()
	_, err = db.Pool.Exec(ctx, `INSERT INTO early SELECT generate_series(1, 5)`)
	require.NoError(t, err)
	got, err := listTables(ctx, conns[0])
	require.NoError(t, err)
	require.NoError(t, cnt.finish(conns[0], got))
	assert.Equal(t, []TableCount{{"public", "early", 5}, {"public", "extra", 1}, {"public", "late", 7}}, got)
	assert.Equal(t, []TableMismatch{{Schema: "public", Table: "extra", Want: -1, Got: 1}}, compareCounts(want, got))
}

// listTables skips only the system schemas: a schema whose name merely
// starts with "pg" is listed, also in a session with
// standard_conforming_strings off (where a backslash in a plain literal is
// an escape, so 'pg\_%' would match "pgapp").
func TestListTablesKeepsSchemasStartingWithPg(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	_, err := db.Pool.Exec(ctx, `CREATE SCHEMA pgapp; CREATE TABLE pgapp.orders (id int); INSERT INTO pgapp.orders VALUES (1), (2)`)
	require.NoError(t, err)
	want := []TableCount{{Schema: "pgapp", Table: "orders"}}
	for _, scs := range []string{"on", "off"} {
		cfg, err := pgx.ParseConfig(db.URL)
		require.NoError(t, err)
		pgtest.ApplyExecMode(t, cfg)
		pgtest.ApplySession(t, cfg)
		// pgx refuses the simple protocol on a session with
		// standard_conforming_strings off: under
		// JUSTPG_TEST_EXEC_MODE=simple that session runs in exec mode.
		if scs == "off" && cfg.DefaultQueryExecMode == pgx.QueryExecModeSimpleProtocol {
			cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
		}
		cfg.RuntimeParams["standard_conforming_strings"] = scs
		c, err := pgx.ConnectConfig(ctx, cfg)
		require.NoError(t, err)
		got, err := listTables(ctx, c)
		c.Close(ctx)
		require.NoError(t, err)
		for i := range got {
			got[i].Rows = 0 // compared by name; counts are counter's business
		}
		assert.Equal(t, want, got, "standard_conforming_strings %s", scs)
	}
}
