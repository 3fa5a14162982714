package realtime

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
)

// The listener's connection sits idle between pings, and busy ones only
// receive; with idle_session_timeout (PostgreSQL 14+) set for the role or
// database, the server ended it after that long and every subscriber got a
// gap (messages published meanwhile were lost) each time. The listener turns
// the timeout off for its own session, and restores it before returning the
// connection to the pool.
func TestListenerOutlivesIdleSessionTimeout(t *testing.T) {
	t.Parallel()
	db := newDB(t, pgtest.WithPoolConfig(func(c *pgxpool.Config) {
		c.ConnConfig.RuntimeParams["idle_session_timeout"] = "1s"
	}))
	ctx := ctxT(t)
	var version int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version))
	if version < 140000 {
		t.Skip("idle_session_timeout needs PostgreSQL 14")
	}
	b := startBroker(t, db.Pool, fastCfg())
	s := subscribe(t, b, "idle")
	require.NoError(t, b.Publish(ctx, db.Pool, "idle", []byte("first")))
	assert.Equal(t, "first", msg(t, s))

	time.Sleep(3 * time.Second) // three times the timeout, with nothing to do
	require.NoError(t, publishRetry(ctx, b, db.Pool, "idle", "after"))
	assert.Equal(t, "after", msg(t, s), "no gap, no lost message")
	assert.Zero(t, b.Stats().Reconnects)

	// Stopped, the broker gives the pool its connection back with the
	// session's setting.
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, b.Stop(sctx))
	for range db.Pool.Stat().TotalConns() {
		c, err := db.Pool.Acquire(ctx)
		require.NoError(t, err)
		defer c.Release()
		var v string
		require.NoError(t, c.QueryRow(ctx, `SELECT current_setting('idle_session_timeout')`).Scan(&v))
		assert.Equal(t, "1s", v)
	}
}
