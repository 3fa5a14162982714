package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
)

// A globally limited queue counts its running jobs with a snapshot taken
// after the queue's lock is granted, even when the sessions' default
// isolation is REPEATABLE READ: the fetch's transaction is READ COMMITTED.
// At the session's default, a fetch that waited for the lock while another
// client's fetch committed counted that client's jobs as not running yet
// and started more than GlobalLimit jobs.
func TestGlobalLimitHoldsUnderRepeatableReadSessions(t *testing.T) {
	t.Parallel()
	db := newDB(t, pgtest.WithSetting("default_transaction_isolation", "repeatable read"))
	ctx := context.Background()
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[noopArgs]) error { return nil })
	c := newClient(t, db.Pool, w, func(c *Config) {
		c.Queues = map[string]QueueConfig{"limited": {MaxWorkers: 5, GlobalLimit: 1}}
		c.DisableMaintenance = true
	})
	a, err := c.Insert(ctx, db.Pool, noopArgs{N: 1}, &InsertOpts{Queue: "limited", Priority: 2})
	require.NoError(t, err)
	b, err := c.Insert(ctx, db.Pool, noopArgs{N: 2}, &InsertOpts{Queue: "limited", Priority: 1})
	require.NoError(t, err)
	key := advisoryKey("justpg.jobs.queue\x00" + c.schema + "\x00limited")

	// Another client's fetch: it holds the queue's lock and starts a.
	other, err := db.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	require.NoError(t, err)
	defer func() { _ = other.Rollback(ctx) }()
	_, err = other.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, key)
	require.NoError(t, err)
	_, err = other.Exec(ctx, `UPDATE justpg.jobs SET state = 'running', attempt = 1, attempted_at = now(),
		attempted_by = 'other' WHERE id = $1`, a.Job.ID)
	require.NoError(t, err)

	start(t, c) // its first fetch waits for the lock
	pgtest.WaitForLockWaiter(t, db.Pool, "advisory")
	require.NoError(t, other.Commit(ctx))

	// Once this lock is granted, the fetch that waited has ended.
	after, err := db.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	require.NoError(t, err)
	defer func() { _ = after.Rollback(ctx) }()
	_, err = after.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, key)
	require.NoError(t, err)
	var state string
	require.NoError(t, after.QueryRow(ctx, `SELECT state FROM justpg.jobs WHERE id = $1`, b.Job.ID).Scan(&state))
	assert.Equal(t, "available", state, "one job of the queue is running: the limit is reached")
}

// An insert of a unique job that waited for a concurrent insert of the same
// key returns that job as the holder, even when the sessions' default
// isolation is REPEATABLE READ. At that level the insert, run on its own,
// failed with a serialization failure instead (its snapshot predates the
// holder's commit).
func TestUniqueInsertThatWaitedForTheHolderUnderRepeatableRead(t *testing.T) {
	t.Parallel()
	db := newDB(t, pgtest.WithSetting("default_transaction_isolation", "repeatable read"))
	ctx := context.Background()
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[noopArgs]) error { return nil })
	c := newClient(t, db.Pool, w, nil)
	opts := &InsertOpts{Unique: &UniqueOpts{ByArgs: true}}

	holder, err := db.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	require.NoError(t, err)
	defer func() { _ = holder.Rollback(ctx) }()
	first, err := c.Insert(ctx, holder, noopArgs{N: 7}, opts)
	require.NoError(t, err)

	type result struct {
		res *InsertResult
		err error
	}
	second := make(chan result, 1)
	go func() {
		res, err := c.Insert(ctx, db.Pool, noopArgs{N: 7}, opts)
		second <- result{res, err}
	}()
	pgtest.WaitForLockWaiter(t, db.Pool, "transactionid")
	require.NoError(t, holder.Commit(ctx))
	r := <-second
	require.NoError(t, r.err)
	assert.True(t, r.res.Skipped)
	assert.Equal(t, first.Job.ID, r.res.Job.ID)
}

// The client's LISTEN connection outlives idle_session_timeout (PostgreSQL
// 14+) set for the role or database: it turns the timeout off for its own
// session. The server used to end it after that long, every time.
func TestListenerOutlivesIdleSessionTimeout(t *testing.T) {
	t.Parallel()
	db := newDB(t, pgtest.WithPoolConfig(func(c *pgxpool.Config) {
		c.ConnConfig.RuntimeParams["idle_session_timeout"] = "1s"
	}))
	ctx := context.Background()
	var version int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version))
	if version < 140000 {
		t.Skip("idle_session_timeout needs PostgreSQL 14")
	}
	c := newClient(t, db.Pool, NewWorkers(), nil)
	start(t, c)
	listener := func() int {
		var pid int
		require.Eventually(t, func() bool {
			err := db.Pool.QueryRow(ctx, `SELECT pid FROM pg_stat_activity
				WHERE datname = current_database() AND query LIKE 'LISTEN%'`).Scan(&pid)
			return err == nil
		}, 30*time.Second, 5*time.Millisecond)
		return pid
	}
	before := listener()
	time.Sleep(3 * time.Second) // three times the timeout
	assert.Equal(t, before, listener(), "the same session still listens")
}
