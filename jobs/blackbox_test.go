package jobs_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/jobs"
)

type bbArgs struct {
	S string `json:"s"`
}

func (bbArgs) Kind() string { return "bb" }

func bbDB(t *testing.T) *pgtest.DB {
	t.Helper()
	return pgtest.NewDB(t, pgtest.WithSetup("jobs", func(ctx context.Context, pool *pgxpool.Pool) error {
		return jobs.Migrate(ctx, pool)
	}))
}

// bbClient registers fn for bbArgs and returns a client working queues.
func bbClient(t *testing.T, pool *pgxpool.Pool, fn jobs.WorkFunc[bbArgs], queues ...string) *jobs.Client {
	t.Helper()
	w := jobs.NewWorkers()
	jobs.AddWorker(w, fn)
	q := map[string]jobs.QueueConfig{}
	for _, name := range queues {
		q[name] = jobs.QueueConfig{MaxWorkers: 4}
	}
	c, err := jobs.New(pool, jobs.Config{Workers: w, Queues: q, FetchPollInterval: 100 * time.Millisecond, LeaseDuration: 2 * time.Second})
	require.NoError(t, err)
	return c
}

func stopLater(t *testing.T, c *jobs.Client, pool *pgxpool.Pool) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := c.Stop(ctx)
		if err != nil {
			t.Logf("stop: %v", err)
		}
	})
}

func bbWait(t *testing.T, c *jobs.Client, pool *pgxpool.Pool, id int64, want jobs.State) *jobs.JobRow {
	t.Helper()
	var j *jobs.JobRow
	require.Eventually(t, func() bool {
		var err error
		j, err = c.JobByID(context.Background(), pool, id)
		require.NoError(t, err)
		return j.State == want
	}, 15*time.Second, 10*time.Millisecond, "job %d never reached %s", id, want)
	return j
}

// TestBlackbox runs the black-box cases one after another on one database;
// each stops its clients when it ends.
func TestBlackbox(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	for _, c := range []struct {
		name string
		fn   func(*testing.T, *pgtest.DB)
	}{
		{"OddQueueNames", bbOddQueueNames},
		{"RolledBackInsertNeverRuns", bbRolledBackInsertNeverRuns},
		{"ArgsRoundTrip", bbArgsRoundTrip},
		{"StartStopLifecycle", bbStartStopLifecycle},
		{"CancelTwiceAndUnknownIDs", bbCancelTwiceAndUnknownIDs},
	} {
		t.Run(c.name, func(t *testing.T) { c.fn(t, db) })
	}
}

// Start twice, Stop twice (also concurrently), Stop before Start, Start
// after Stop: sentinel errors, no panic, no hang.
func bbStartStopLifecycle(t *testing.T, db *pgtest.DB) {
	ctx := context.Background()
	noop := func(context.Context, *jobs.Job[bbArgs]) error { return nil }
	c := bbClient(t, db.Pool, noop, jobs.DefaultQueue)
	require.ErrorIs(t, c.Stop(ctx), jobs.ErrNotStarted)
	require.NoError(t, c.Start(ctx))
	require.ErrorIs(t, c.Start(ctx), jobs.ErrAlreadyStarted)
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			errs[i] = c.Stop(sctx)
		})
	}
	wg.Wait()
	pgtest.OneWinner(t, errs, jobs.ErrNotStarted)
	require.Error(t, c.Start(ctx), "a stopped client cannot start again")
	// Every connection goes back to the pool (a connection whose wait
	// was cancelled is closed by pgxpool in the background, so allow a
	// moment).
	assert.Eventually(t, func() bool { return db.Pool.Stat().AcquiredConns() == 0 }, 2*time.Second, 5*time.Millisecond)
}

// A job inserted in a transaction that rolls back never runs and leaves
// no row; one inserted with a cancelled context is not inserted.
func bbRolledBackInsertNeverRuns(t *testing.T, db *pgtest.DB) {
	ctx := context.Background()
	ran := make(chan string, 10)
	c := bbClient(t, db.Pool, func(_ context.Context, j *jobs.Job[bbArgs]) error { ran <- j.Args.S; return nil }, jobs.DefaultQueue)
	require.NoError(t, c.Start(ctx))
	stopLater(t, c, db.Pool)
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	res, err := c.Insert(ctx, tx, bbArgs{S: "ghost"}, nil)
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = c.Insert(cctx, db.Pool, bbArgs{S: "cancelled"}, nil)
	require.ErrorIs(t, err, context.Canceled)
	_, err = c.JobByID(ctx, db.Pool, res.Job.ID)
	require.ErrorIs(t, err, jobs.ErrNotFound)
	real, err := c.Insert(ctx, db.Pool, bbArgs{S: "real"}, nil)
	require.NoError(t, err)
	bbWait(t, c, db.Pool, real.Job.ID, jobs.StateCompleted)
	assert.Equal(t, "real", <-ran)
	select {
	case s := <-ran:
		t.Fatalf("unexpected run of %q", s)
	case <-time.After(300 * time.Millisecond):
	}
}

// Queue names with capitals, spaces, quotes and non-ASCII letters work end
// to end: insert, notify, fetch, complete.
func bbOddQueueNames(t *testing.T, db *pgtest.DB) {
	ctx := context.Background()
	queues := []string{`Émails "VIP"`, "with space", "a'b; DROP TABLE x", "日本"}
	c := bbClient(t, db.Pool, func(context.Context, *jobs.Job[bbArgs]) error { return nil }, queues...)
	require.NoError(t, c.Start(ctx))
	stopLater(t, c, db.Pool)
	for _, q := range queues {
		res, err := c.Insert(ctx, db.Pool, bbArgs{S: q}, &jobs.InsertOpts{Queue: q})
		require.NoError(t, err, q)
		j := bbWait(t, c, db.Pool, res.Job.ID, jobs.StateCompleted)
		assert.Equal(t, q, j.Queue)
	}
	for _, q := range []string{"a\x00b", "new\nline"} {
		_, err := c.Insert(ctx, db.Pool, bbArgs{}, &jobs.InsertOpts{Queue: q})
		require.ErrorIs(t, err, jobs.ErrInvalidOptions, "%q", q)
	}
}

// CancelJob twice and on unknown ids; RetryJob on unknown ids.
func bbCancelTwiceAndUnknownIDs(t *testing.T, db *pgtest.DB) {
	ctx := context.Background()
	c := bbClient(t, db.Pool, func(context.Context, *jobs.Job[bbArgs]) error { return nil })
	res, err := c.Insert(ctx, db.Pool, bbArgs{S: "x"}, &jobs.InsertOpts{ScheduledAt: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	errs := make([]error, 4)
	rows := make([]*jobs.JobRow, 4)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() { rows[i], errs[i] = c.CancelJob(ctx, db.Pool, res.Job.ID) })
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err)
		assert.Equal(t, jobs.StateCancelled, rows[i].State)
	}
	j, err := c.CancelJob(ctx, db.Pool, res.Job.ID)
	require.NoError(t, err)
	assert.Equal(t, jobs.StateCancelled, j.State)
	for _, id := range []int64{0, -1, 1 << 62} {
		_, err = c.CancelJob(ctx, db.Pool, id)
		require.ErrorIs(t, err, jobs.ErrNotFound, "%d", id)
		_, err = c.RetryJob(ctx, db.Pool, id)
		require.ErrorIs(t, err, jobs.ErrNotFound, "%d", id)
		_, err = c.JobByID(ctx, db.Pool, id)
		require.ErrorIs(t, err, jobs.ErrNotFound, "%d", id)
	}
	// A cancelled job can be retried and then runs.
	j, err = c.RetryJob(ctx, db.Pool, res.Job.ID)
	require.NoError(t, err)
	assert.Equal(t, jobs.StateAvailable, j.State)
}

// Args of every shape json.Marshal accepts round-trip exactly (unicode,
// quotes, large values).
func bbArgsRoundTrip(t *testing.T, db *pgtest.DB) {
	ctx := context.Background()
	got := make(chan string, 10)
	c := bbClient(t, db.Pool, func(_ context.Context, j *jobs.Job[bbArgs]) error { got <- j.Args.S; return nil }, jobs.DefaultQueue)
	require.NoError(t, c.Start(ctx))
	stopLater(t, c, db.Pool)
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = 'a' + byte(i%26)
	}
	for _, s := range []string{"", `"quoted" \ back\slash`, "日本語 🎉 \u2028\u2029", "<script>&amp;", string(big)} {
		_, err := c.Insert(ctx, db.Pool, bbArgs{S: s}, nil)
		require.NoError(t, err)
		select {
		case g := <-got:
			assert.Equal(t, s, g)
		case <-time.After(15 * time.Second):
			t.Fatal("job did not run")
		}
	}
	_ = errors.New
}
