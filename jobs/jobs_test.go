package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestInsertAndWork(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	rec := newRecorder()
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[noopArgs]) error {
		if j.Args.N != 42 {
			return fmt.Errorf("args not decoded: %+v", j.Args)
		}
		rec.add(j.ID)
		return nil
	})
	c := newClient(t, db.Pool, w, nil)
	start(t, c)
	res, err := c.Insert(ctx, db.Pool, noopArgs{N: 42}, &InsertOpts{Tags: []string{"a"}, Metadata: map[string]any{"k": "v"}})
	require.NoError(t, err)
	require.False(t, res.Skipped)
	assert.Equal(t, "noop", res.Job.Kind)
	assert.Equal(t, DefaultQueue, res.Job.Queue)
	assert.Equal(t, DefaultMaxAttempts, res.Job.MaxAttempts)
	assert.Equal(t, []string{"a"}, res.Job.Tags)
	assert.JSONEq(t, `{"k":"v"}`, string(res.Job.Metadata))
	j := waitState(t, c, res.Job.ID, StateCompleted)
	assert.Equal(t, 1, j.Attempt)
	assert.NotNil(t, j.FinalizedAt)
	assert.Equal(t, c.ID(), j.AttemptedBy)
	assert.Equal(t, 1, rec.count(res.Job.ID))
}

func TestInsertInTransaction(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	rec := newRecorder()
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[noopArgs]) error { rec.add(j.ID); return nil })
	c := newClient(t, db.Pool, w, func(c *Config) { c.FetchPollInterval = time.Hour }) // only LISTEN wakes it
	start(t, c)

	// Rolled back: no job.
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	res, err := c.Insert(ctx, tx, noopArgs{N: 1}, nil)
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))
	_, err = c.JobByID(ctx, db.Pool, res.Job.ID)
	require.ErrorIs(t, err, ErrNotFound)

	// Committed: visible, and the notification sent at commit wakes the
	// worker (the poll interval is an hour).
	tx, err = db.Pool.Begin(ctx)
	require.NoError(t, err)
	res, err = c.Insert(ctx, tx, noopArgs{N: 2}, nil)
	require.NoError(t, err)
	// Not visible outside the transaction before commit.
	_, err = c.JobByID(ctx, db.Pool, res.Job.ID)
	require.ErrorIs(t, err, ErrNotFound)
	require.NoError(t, tx.Commit(ctx))
	waitState(t, c, res.Job.ID, StateCompleted)
	assert.Equal(t, 1, rec.count(res.Job.ID))
	assert.Equal(t, 0, rec.count(res.Job.ID-1))
}

func TestInsertValidation(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[noopArgs]) error { return nil })
	c := newClient(t, db.Pool, w, nil)
	cases := []struct {
		name string
		args JobArgs
		opts *InsertOpts
		want error
	}{
		{"unknown kind", failArgs{}, nil, ErrUnknownKind},
		{"nil args", nil, nil, ErrInvalidOptions},
		{"negative priority", noopArgs{}, &InsertOpts{Priority: -1}, ErrInvalidOptions},
		{"huge priority", noopArgs{}, &InsertOpts{Priority: 40000}, ErrInvalidOptions},
		{"attempts", noopArgs{}, &InsertOpts{MaxAttempts: -3}, ErrInvalidOptions},
		{"control char queue", noopArgs{}, &InsertOpts{Queue: "a\nb"}, ErrInvalidOptions},
		{"long queue", noopArgs{}, &InsertOpts{Queue: strings.Repeat("q", 200)}, ErrInvalidOptions},
		{"bad metadata", noopArgs{}, &InsertOpts{Metadata: map[string]any{"f": func() {}}}, ErrInvalidOptions},
		{"bad period", noopArgs{}, &InsertOpts{Unique: &UniqueOpts{ByPeriod: -time.Second}}, ErrInvalidOptions},
	}
	for _, tc := range cases {
		_, err := c.Insert(ctx, db.Pool, tc.args, tc.opts)
		assert.ErrorIs(t, err, tc.want, tc.name)
		_, err = c.InsertMany(ctx, db.Pool, []InsertParams{{Args: noopArgs{}}, {Args: tc.args, Opts: tc.opts}})
		assert.ErrorIs(t, err, tc.want, tc.name+" (many)")
	}
	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM justpg.jobs`).Scan(&n))
	assert.Zero(t, n, "nothing inserted by failed calls")

	// Config validation.
	for name, cfg := range map[string]Config{
		"no workers":   {},
		"zero workers": {Workers: w, Queues: map[string]QueueConfig{"q": {}}},
		"empty queue":  {Workers: w, Queues: map[string]QueueConfig{"": {MaxWorkers: 1}}},
		"bad cron":     {Workers: w, Periodic: []PeriodicJob{{Name: "p", Schedule: "61 * * * *", Args: func(time.Time) (JobArgs, *InsertOpts) { return noopArgs{}, nil }}}},
		"bad every":    {Workers: w, Periodic: []PeriodicJob{{Name: "p", Schedule: "@every -1s", Args: func(time.Time) (JobArgs, *InsertOpts) { return noopArgs{}, nil }}}},
		"bad schema":   {Workers: w, Schema: strings.Repeat("s", 70)},
		"short lease":  {Workers: w, LeaseDuration: time.Millisecond},
		"bad retain":   {Workers: w, Retention: map[State]time.Duration{StateRunning: time.Hour}},
	} {
		_, err := New(db.Pool, cfg)
		assert.ErrorIs(t, err, ErrInvalidOptions, name)
	}
	_, err := New(nil, Config{Workers: w})
	assert.ErrorIs(t, err, ErrInvalidOptions)
}

func TestInsertManyCopy(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	rec := newRecorder()
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[noopArgs]) error { rec.add(int64(j.Args.N)); return nil })
	c := newClient(t, db.Pool, w, func(c *Config) { c.Queues = map[string]QueueConfig{"bulk": {MaxWorkers: 50}} })
	params := make([]InsertParams, 2000)
	for i := range params {
		params[i] = InsertParams{Args: noopArgs{N: i}, Opts: &InsertOpts{Queue: "bulk"}}
	}
	// A rolled-back transaction leaves nothing.
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	n, err := c.InsertMany(ctx, tx, params)
	require.NoError(t, err)
	require.Equal(t, 2000, n)
	require.NoError(t, tx.Rollback(ctx))
	page, err := c.List(ctx, db.Pool, ListParams{Queue: "bulk"})
	require.NoError(t, err)
	require.Empty(t, page.Jobs)

	// A scheduled job goes in with its time.
	later := time.Now().Add(time.Hour)
	params = append(params, InsertParams{Args: noopArgs{N: -1}, Opts: &InsertOpts{Queue: "bulk", ScheduledAt: later}})
	n, err = c.InsertMany(ctx, db.Pool, params)
	require.NoError(t, err)
	require.Equal(t, 2001, n)
	start(t, c)
	require.Eventually(t, func() bool {
		page, err := c.List(ctx, db.Pool, ListParams{Queue: "bulk", State: StateCompleted, Limit: 10000})
		require.NoError(t, err)
		return len(page.Jobs) == 2000
	}, 30*time.Second, 20*time.Millisecond)
	for i := range 2000 {
		require.Equal(t, 1, rec.count(int64(i)), "job %d", i)
	}
	page, err = c.List(ctx, db.Pool, ListParams{Queue: "bulk", State: StateAvailable})
	require.NoError(t, err)
	require.Len(t, page.Jobs, 1)
	assert.WithinDuration(t, later, page.Jobs[0].ScheduledAt, time.Millisecond)
	assert.Zero(t, rec.count(-1))
}

func TestUniqueConcurrentInserters(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[noopArgs]) error { return nil })
	c := newClient(t, db.Pool, w, nil)

	const inserters = 16
	var wg sync.WaitGroup
	var inserted, skipped atomic.Int32
	ids := make([]int64, inserters)
	for i := range inserters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each inserter uses its own transaction that stays open a moment,
			// so the inserts really overlap. (READ COMMITTED whatever
			// JUSTPG_TEST_SESSION says: at stricter levels, an insert that
			// waited for the holder fails with a serialization error.)
			err := pgx.BeginTxFunc(ctx, db.Pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
				res, err := c.Insert(ctx, tx, noopArgs{N: 7}, &InsertOpts{Unique: &UniqueOpts{ByArgs: true}})
				if err != nil {
					return err
				}
				ids[i] = res.Job.ID
				if res.Skipped {
					skipped.Add(1)
				} else {
					inserted.Add(1)
				}
				time.Sleep(20 * time.Millisecond)
				return nil
			})
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	assert.Equal(t, int32(1), inserted.Load())
	assert.Equal(t, int32(inserters-1), skipped.Load())
	for _, id := range ids {
		assert.Equal(t, ids[0], id, "every skipped insert returns the holder")
	}
	// Different args are a different key; same args in another queue are
	// the same key unless ByQueue.
	res, err := c.Insert(ctx, db.Pool, noopArgs{N: 8}, &InsertOpts{Unique: &UniqueOpts{ByArgs: true}})
	require.NoError(t, err)
	assert.False(t, res.Skipped)
	res, err = c.Insert(ctx, db.Pool, noopArgs{N: 7}, &InsertOpts{Queue: "other", Unique: &UniqueOpts{ByArgs: true}})
	require.NoError(t, err)
	assert.True(t, res.Skipped)
	res, err = c.Insert(ctx, db.Pool, noopArgs{N: 7}, &InsertOpts{Queue: "other", Unique: &UniqueOpts{ByArgs: true, ByQueue: true}})
	require.NoError(t, err)
	assert.False(t, res.Skipped)

	// Cancelling the holder releases the key.
	_, err = c.CancelJob(ctx, db.Pool, ids[0])
	require.NoError(t, err)
	res, err = c.Insert(ctx, db.Pool, noopArgs{N: 7}, &InsertOpts{Unique: &UniqueOpts{ByArgs: true}})
	require.NoError(t, err)
	assert.False(t, res.Skipped)
	assert.NotEqual(t, ids[0], res.Job.ID)

	// InsertMany skips held keys and duplicates within the batch.
	n, err := c.InsertMany(ctx, db.Pool, []InsertParams{
		{Args: noopArgs{N: 7}, Opts: &InsertOpts{Unique: &UniqueOpts{ByArgs: true}}},
		{Args: noopArgs{N: 9}, Opts: &InsertOpts{Unique: &UniqueOpts{ByArgs: true}}},
		{Args: noopArgs{N: 9}, Opts: &InsertOpts{Unique: &UniqueOpts{ByArgs: true}}},
		{Args: noopArgs{N: 9}},
	})
	require.NoError(t, err)
	assert.Equal(t, 2, n)
}

func TestUniqueByPeriodHoldsAfterCompletion(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[noopArgs]) error { return nil })
	c := newClient(t, db.Pool, w, nil)
	start(t, c)
	opts := &InsertOpts{Unique: &UniqueOpts{ByPeriod: time.Hour}}
	res, err := c.Insert(ctx, db.Pool, noopArgs{}, opts)
	require.NoError(t, err)
	waitState(t, c, res.Job.ID, StateCompleted)
	again, err := c.Insert(ctx, db.Pool, noopArgs{}, opts)
	require.NoError(t, err)
	assert.True(t, again.Skipped, "a completed job keeps its period's key")
	// Without a period, completion releases the key.
	byArgs := &InsertOpts{Unique: &UniqueOpts{ByArgs: true}}
	res, err = c.Insert(ctx, db.Pool, noopArgs{N: 3}, byArgs)
	require.NoError(t, err)
	waitState(t, c, res.Job.ID, StateCompleted)
	again, err = c.Insert(ctx, db.Pool, noopArgs{N: 3}, byArgs)
	require.NoError(t, err)
	assert.False(t, again.Skipped)
}

func TestRetriesUntilDiscarded(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[failArgs]) error {
		if j.Attempt == 2 {
			panic("boom")
		}
		return fmt.Errorf("%s #%d", j.Args.Msg, j.Attempt)
	}, WorkerOptions{NextRetry: fastRetry})
	var finishes atomic.Int32
	c := newClient(t, db.Pool, w, func(c *Config) {
		c.Hooks.OnFinish = func(ctx context.Context, j *JobRow, out Outcome) {
			finishes.Add(1)
			if out.Err == nil || out.Duration < 0 {
				t.Errorf("outcome without error: %+v", out)
			}
		}
	})
	start(t, c)
	res, err := c.Insert(ctx, db.Pool, failArgs{Msg: "nope"}, &InsertOpts{MaxAttempts: 4})
	require.NoError(t, err)
	j := waitState(t, c, res.Job.ID, StateDiscarded)
	assert.Equal(t, 4, j.Attempt)
	require.Len(t, j.Errors, 4)
	for i, e := range j.Errors {
		assert.Equal(t, i+1, e.Attempt)
		assert.False(t, e.At.IsZero())
	}
	assert.Equal(t, "nope #1", j.Errors[0].Error)
	assert.Contains(t, j.Errors[1].Error, "panicked: boom")
	assert.Contains(t, j.Errors[1].Trace, "goroutine")
	assert.Equal(t, "nope #4", j.Errors[3].Error)
	assert.Equal(t, int32(4), finishes.Load())
}

func TestDefaultRetryPolicy(t *testing.T) {
	t.Parallel()
	for attempt, want := range map[int]time.Duration{1: time.Second, 2: 16 * time.Second, 3: 81 * time.Second, 100: 24 * time.Hour} {
		for range 20 {
			d := time.Until(DefaultRetryPolicy(&JobRow{Attempt: attempt}))
			assert.InDelta(t, float64(want), float64(d), float64(want)*0.11, "attempt %d", attempt)
		}
	}
}

func TestCancelAndSnoozeFromWorker(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	var snoozes atomic.Int32
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[blockArgs]) error {
		switch j.Args.Tag {
		case "cancel":
			return fmt.Errorf("wrapped: %w", Cancel(errors.New("not wanted")))
		case "snooze":
			if snoozes.Add(1) <= 2 {
				return Snooze(20 * time.Millisecond)
			}
			return nil
		}
		return nil
	})
	c := newClient(t, db.Pool, w, nil)
	start(t, c)
	cres, err := c.Insert(ctx, db.Pool, blockArgs{Tag: "cancel"}, nil)
	require.NoError(t, err)
	sres, err := c.Insert(ctx, db.Pool, blockArgs{Tag: "snooze"}, &InsertOpts{MaxAttempts: 1})
	require.NoError(t, err)
	j := waitState(t, c, cres.Job.ID, StateCancelled)
	require.Len(t, j.Errors, 1)
	assert.Contains(t, j.Errors[0].Error, "not wanted")
	assert.Equal(t, 1, j.Attempt)
	// Snoozed twice with MaxAttempts 1: snoozes are not attempts.
	j = waitState(t, c, sres.Job.ID, StateCompleted)
	assert.Equal(t, int32(3), snoozes.Load())
	assert.Equal(t, 1, j.Attempt)
	assert.Empty(t, j.Errors)
}

func TestDecodeFailureDiscards(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[noopArgs]) error { return nil })
	c := newClient(t, db.Pool, w, nil)
	var id int64
	require.NoError(t, db.Pool.QueryRow(ctx, `INSERT INTO justpg.jobs (kind, args) VALUES ('noop', '{"n":"not a number"}') RETURNING id`).Scan(&id))
	start(t, c)
	j := waitState(t, c, id, StateDiscarded)
	require.Len(t, j.Errors, 1)
	assert.Contains(t, j.Errors[0].Error, "decoding args")
	assert.Equal(t, 1, j.Attempt)
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[blockArgs]) error {
		<-ctx.Done()
		return ctx.Err()
	}, WorkerOptions{Timeout: 50 * time.Millisecond, NextRetry: fastRetry})
	c := newClient(t, db.Pool, w, nil)
	start(t, c)
	res, err := c.Insert(ctx, db.Pool, blockArgs{}, &InsertOpts{MaxAttempts: 2})
	require.NoError(t, err)
	j := waitState(t, c, res.Job.ID, StateDiscarded)
	require.Len(t, j.Errors, 2)
	assert.Contains(t, j.Errors[0].Error, ErrTimeout.Error())
}

func TestCancelRunningJobFromAnotherClient(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	started := make(chan int64, 1)
	causes := make(chan error, 1)
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[blockArgs]) error {
		started <- j.ID
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return ctx.Err()
	}, WorkerOptions{Timeout: -1})
	worker := newClient(t, db.Pool, w, nil)
	start(t, worker)
	admin := newClient(t, db.Pool, w, func(c *Config) { c.Queues = nil })
	res, err := admin.Insert(ctx, db.Pool, blockArgs{}, nil)
	require.NoError(t, err)
	id := <-started
	require.Equal(t, res.Job.ID, id)
	j, err := admin.CancelJob(ctx, db.Pool, id)
	require.NoError(t, err)
	assert.Equal(t, StateRunning, j.State)
	select {
	case cause := <-causes:
		assert.ErrorIs(t, cause, ErrCancelRequested)
	case <-time.After(20 * time.Second):
		t.Fatal("running job was not cancelled")
	}
	waitState(t, admin, id, StateCancelled)

	// Cancelling an available job cancels it at once; a finished job is
	// returned unchanged; an unknown ID is ErrNotFound.
	res, err = admin.Insert(ctx, db.Pool, blockArgs{}, &InsertOpts{ScheduledAt: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	j, err = admin.CancelJob(ctx, db.Pool, res.Job.ID)
	require.NoError(t, err)
	assert.Equal(t, StateCancelled, j.State)
	j, err = admin.CancelJob(ctx, db.Pool, res.Job.ID)
	require.NoError(t, err)
	assert.Equal(t, StateCancelled, j.State)
	_, err = admin.CancelJob(ctx, db.Pool, 1<<40)
	assert.ErrorIs(t, err, ErrNotFound)
}

func TestGracefulStop(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	release := make(chan struct{})
	var startedN atomic.Int32
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[blockArgs]) error {
		startedN.Add(1)
		if j.Args.Tag == "stubborn" {
			<-ctx.Done()
			return ctx.Err()
		}
		<-release
		return nil
	}, WorkerOptions{Timeout: -1})
	c := newClient(t, db.Pool, w, nil)
	require.NoError(t, c.Start(ctx))
	var ids []int64
	for _, tag := range []string{"polite", "polite", "stubborn"} {
		res, err := c.Insert(ctx, db.Pool, blockArgs{Tag: tag}, nil)
		require.NoError(t, err)
		ids = append(ids, res.Job.ID)
	}
	require.Eventually(t, func() bool { return startedN.Load() == 3 }, 20*time.Second, 5*time.Millisecond)
	// Let the polite ones finish while Stop waits; the stubborn one runs
	// until Stop's deadline cancels it.
	go func() { time.Sleep(100 * time.Millisecond); close(release) }()
	stopCtx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	require.NoError(t, c.Stop(stopCtx))
	require.ErrorIs(t, c.Stop(ctx), ErrNotStarted)
	for _, id := range ids[:2] {
		j, err := c.JobByID(ctx, db.Pool, id)
		require.NoError(t, err)
		assert.Equal(t, StateCompleted, j.State)
	}
	j, err := c.JobByID(ctx, db.Pool, ids[2])
	require.NoError(t, err)
	assert.Equal(t, StateAvailable, j.State, "interrupted job is put back")
	assert.Equal(t, 0, j.Attempt, "the interrupted attempt does not count")
	require.Len(t, j.Errors, 1)
	assert.Contains(t, j.Errors[0].Error, "shutdown")
	// Every connection is released and the client unregistered.
	var clients int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM justpg.jobs_clients`).Scan(&clients))
	assert.Zero(t, clients)
	// A connection whose query Stop interrupted is closed by pgx in the
	// background; it is released shortly after.
	require.Eventually(t, func() bool { return db.Pool.Stat().AcquiredConns() == 0 }, 10*time.Second, 5*time.Millisecond)
	// The listener's session ends (the server drops it from
	// pg_stat_activity a moment after the client closed it).
	require.Eventually(t, func() bool {
		var listeners int
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'`).Scan(&listeners))
		return listeners == 0
	}, 10*time.Second, 5*time.Millisecond)
}

func TestPauseAndGlobalLimitAcrossClients(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	var running, peak atomic.Int32
	var done atomic.Int32
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[noopArgs]) error {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(30 * time.Millisecond)
		running.Add(-1)
		done.Add(1)
		return nil
	})
	mk := func() *Client {
		return newClient(t, db.Pool, w, func(c *Config) {
			c.Queues = map[string]QueueConfig{"limited": {MaxWorkers: 10, GlobalLimit: 3}}
			c.FetchPollInterval = 50 * time.Millisecond
		})
	}
	a, b := mk(), mk()
	require.NoError(t, a.PauseQueue(ctx, db.Pool, "limited"))
	paused, err := a.QueuePaused(ctx, db.Pool, "limited")
	require.NoError(t, err)
	require.True(t, paused)
	start(t, a)
	start(t, b)
	params := make([]InsertParams, 30)
	for i := range params {
		params[i] = InsertParams{Args: noopArgs{N: i}, Opts: &InsertOpts{Queue: "limited"}}
	}
	_, err = a.InsertMany(ctx, db.Pool, params)
	require.NoError(t, err)
	// Paused: nothing runs for a while (several poll intervals).
	time.Sleep(400 * time.Millisecond)
	assert.Zero(t, done.Load(), "a paused queue runs nothing")
	require.NoError(t, b.ResumeQueue(ctx, db.Pool, "limited"))
	require.Eventually(t, func() bool { return done.Load() == 30 }, 30*time.Second, 10*time.Millisecond)
	assert.LessOrEqual(t, peak.Load(), int32(3), "global limit across two clients")
	assert.Equal(t, int32(3), peak.Load(), "the limit is reached")
	require.Error(t, a.PauseQueue(ctx, db.Pool, ""))
}

func TestAdminListRetryPrune(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[noopArgs]) error { return nil })
	AddWorker(w, func(ctx context.Context, j *Job[failArgs]) error { return errors.New("x") })
	c := newClient(t, db.Pool, w, func(c *Config) {
		c.Retention = map[State]time.Duration{StateCompleted: time.Millisecond}
		c.DisableMaintenance = true
	})
	params := make([]InsertParams, 25)
	for i := range params {
		params[i] = InsertParams{Args: noopArgs{N: i}, Opts: &InsertOpts{Queue: "q" + fmt.Sprint(i%2)}}
	}
	_, err := c.InsertMany(ctx, db.Pool, params)
	require.NoError(t, err)
	var seen []int64
	var after int64
	for pages := 0; ; pages++ {
		page, err := c.List(ctx, db.Pool, ListParams{Queue: "q0", State: StateAvailable, Kind: "noop", After: after, Limit: 5})
		require.NoError(t, err)
		for _, j := range page.Jobs {
			assert.Equal(t, "q0", j.Queue)
			seen = append(seen, j.ID)
		}
		if page.Next == 0 {
			require.Equal(t, 2, pages) // pages 0..2: 5 + 5 + 3
			break
		}
		after = page.Next
	}
	assert.Len(t, seen, 13)
	assert.IsIncreasing(t, seen)
	_, err = c.List(ctx, db.Pool, ListParams{State: "bogus"})
	assert.ErrorIs(t, err, ErrInvalidOptions)
	_, err = c.List(ctx, db.Pool, ListParams{Limit: -1})
	assert.ErrorIs(t, err, ErrInvalidOptions)

	// Retry a discarded job.
	fres, err := c.Insert(ctx, db.Pool, failArgs{}, &InsertOpts{MaxAttempts: 1, Queue: "f"})
	require.NoError(t, err)
	c2 := newClient(t, db.Pool, w, func(cfg *Config) {
		cfg.Queues = map[string]QueueConfig{"f": {MaxWorkers: 1}, "q0": {MaxWorkers: 5}}
		cfg.DisableMaintenance = true
	})
	start(t, c2)
	waitState(t, c2, fres.Job.ID, StateDiscarded)
	j, err := c.RetryJob(ctx, db.Pool, fres.Job.ID)
	require.NoError(t, err)
	assert.Equal(t, StateAvailable, j.State)
	assert.Equal(t, 2, j.MaxAttempts)
	j = waitState(t, c2, fres.Job.ID, StateDiscarded)
	assert.Equal(t, 2, j.Attempt)
	assert.Len(t, j.Errors, 2)
	_, err = c.RetryJob(ctx, db.Pool, 1<<40)
	assert.ErrorIs(t, err, ErrNotFound)

	// Prune completed jobs past retention; others stay.
	require.Eventually(t, func() bool {
		page, err := c.List(ctx, db.Pool, ListParams{Queue: "q0", State: StateCompleted})
		require.NoError(t, err)
		return len(page.Jobs) == 13
	}, 20*time.Second, 10*time.Millisecond)
	time.Sleep(5 * time.Millisecond)
	n, err := c.Prune(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(13), n)
	var left int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM justpg.jobs`).Scan(&left))
	assert.Equal(t, 13, left) // 12 in q1 + the discarded one
}

func TestRateLimitAcrossClients(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	var done atomic.Int32
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[noopArgs]) error { done.Add(1); return nil })
	mk := func() *Client {
		return newClient(t, db.Pool, w, func(c *Config) {
			c.Queues = map[string]QueueConfig{"rated": {MaxWorkers: 10, RateLimit: 4, RatePer: 500 * time.Millisecond}}
		})
	}
	a, b := mk(), mk()
	params := make([]InsertParams, 12)
	for i := range params {
		params[i] = InsertParams{Args: noopArgs{N: i}, Opts: &InsertOpts{Queue: "rated"}}
	}
	_, err := a.InsertMany(ctx, db.Pool, params)
	require.NoError(t, err)
	start(t, a)
	start(t, b)
	require.Eventually(t, func() bool { return done.Load() == 12 }, 30*time.Second, 10*time.Millisecond)
	// 12 starts at 4 per window need three windows, each starting at least
	// RatePer after the previous one (times are the database's statement
	// times; the margin covers the gap between a window's statement and
	// its fetch in the same transaction).
	var starts []time.Time
	rows, err := db.Pool.Query(ctx, `SELECT attempted_at FROM justpg.jobs WHERE queue = 'rated' ORDER BY attempted_at`)
	require.NoError(t, err)
	for rows.Next() {
		var at time.Time
		require.NoError(t, rows.Scan(&at))
		starts = append(starts, at)
	}
	require.NoError(t, rows.Err())
	require.Len(t, starts, 12)
	assert.GreaterOrEqual(t, starts[8].Sub(starts[0]), time.Second-200*time.Millisecond, "the 9th start is in the third window")
	assert.GreaterOrEqual(t, starts[4].Sub(starts[0]), 500*time.Millisecond-200*time.Millisecond, "the 5th start is in the second window")
	_, err = New(db.Pool, Config{Workers: w, Queues: map[string]QueueConfig{"r": {MaxWorkers: 1, RateLimit: -1}}})
	assert.ErrorIs(t, err, ErrInvalidOptions)
}

func TestCancelRunningJobPollOnly(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	started := make(chan int64, 1)
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[blockArgs]) error {
		started <- j.ID
		<-ctx.Done()
		return context.Cause(ctx)
	}, WorkerOptions{Timeout: -1})
	// PollOnly: no LISTEN, so the cancel notification never arrives; the
	// heartbeat's check finds the request.
	c := newClient(t, db.Pool, w, func(c *Config) { c.PollOnly = true; c.FetchPollInterval = 50 * time.Millisecond })
	start(t, c)
	res, err := c.Insert(ctx, db.Pool, blockArgs{}, nil)
	require.NoError(t, err)
	<-started
	_, err = c.CancelJob(ctx, db.Pool, res.Job.ID)
	require.NoError(t, err)
	j := waitState(t, c, res.Job.ID, StateCancelled)
	require.Len(t, j.Errors, 1)
	assert.Contains(t, j.Errors[0].Error, ErrCancelRequested.Error())
}

// TestPerJobTimeout shows that a job's own timeout is stored with it and
// becomes its context's deadline, overriding the worker's and the client's.
func TestPerJobTimeout(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	type seen struct {
		left time.Duration
		ok   bool
	}
	deadlines := make(chan seen, 3)
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[noopArgs]) error {
		d, ok := ctx.Deadline()
		deadlines <- seen{time.Until(d), ok}
		return nil
	}, WorkerOptions{Timeout: 10 * time.Minute})
	c := newClient(t, db.Pool, w, func(c *Config) { c.JobTimeout = time.Minute })
	start(t, c)

	for _, tc := range []struct {
		timeout  time.Duration
		stored   time.Duration
		ok       bool
		min, max time.Duration
	}{
		{timeout: 0, stored: 0, ok: true, min: 9 * time.Minute, max: 10 * time.Minute},                        // the worker's
		{timeout: 2 * time.Hour, stored: 2 * time.Hour, ok: true, min: 119 * time.Minute, max: 2 * time.Hour}, // the job's, longer
		{timeout: -time.Second, stored: -1, ok: false},                                                        // the job has none
	} {
		res, err := c.Insert(ctx, db.Pool, noopArgs{}, &InsertOpts{Timeout: tc.timeout})
		require.NoError(t, err)
		assert.Equal(t, tc.stored, res.Job.Timeout)
		j := waitState(t, c, res.Job.ID, StateCompleted)
		assert.Equal(t, tc.stored, j.Timeout)
		s := <-deadlines
		require.Equal(t, tc.ok, s.ok, "timeout %s", tc.timeout)
		if tc.ok {
			assert.True(t, s.left > tc.min && s.left <= tc.max, "timeout %s: deadline in %s", tc.timeout, s.left)
		}
	}

	// Bulk inserts store it too, through COPY and through the unique path.
	n, err := c.InsertMany(ctx, db.Pool, []InsertParams{
		{Args: noopArgs{N: 1}, Opts: &InsertOpts{Timeout: 3 * time.Second, ScheduledAt: time.Now().Add(time.Hour)}},
		{Args: noopArgs{N: 2}, Opts: &InsertOpts{Timeout: 4 * time.Second, ScheduledAt: time.Now().Add(time.Hour),
			Unique: &UniqueOpts{ByArgs: true}}},
	})
	require.NoError(t, err)
	require.Equal(t, 2, n)
	page, err := c.List(ctx, db.Pool, ListParams{State: StateAvailable})
	require.NoError(t, err)
	require.Len(t, page.Jobs, 2)
	assert.Equal(t, 3*time.Second, page.Jobs[0].Timeout)
	assert.Equal(t, 4*time.Second, page.Jobs[1].Timeout)
}

// TestPerJobTimeoutExpires shows that an expired per-job deadline makes the
// attempt fail with ErrTimeout (kept on the job) and the job retryable,
// although neither the worker nor the client has a timeout.
func TestPerJobTimeoutExpires(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	causes := make(chan error, 1)
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[blockArgs]) error {
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return fmt.Errorf("gave up: %w", ctx.Err())
	}, WorkerOptions{Timeout: -1, NextRetry: func(*JobRow) time.Time { return time.Now().Add(time.Hour) }})
	c := newClient(t, db.Pool, w, func(c *Config) { c.JobTimeout = -1 })
	start(t, c)
	res, err := c.Insert(ctx, db.Pool, blockArgs{}, &InsertOpts{Timeout: 50 * time.Millisecond})
	require.NoError(t, err)
	require.ErrorIs(t, <-causes, ErrTimeout)
	var j *JobRow
	require.Eventually(t, func() bool {
		j, err = c.JobByID(ctx, db.Pool, res.Job.ID)
		require.NoError(t, err)
		return j.State == StateAvailable && len(j.Errors) > 0
	}, 20*time.Second, 10*time.Millisecond, "the timed-out attempt is recorded")
	assert.Equal(t, 1, j.Attempt)
	require.Len(t, j.Errors, 1)
	assert.Contains(t, j.Errors[0].Error, ErrTimeout.Error())
	assert.Contains(t, j.Errors[0].Error, "gave up")
	assert.True(t, j.ScheduledAt.After(time.Now().Add(30*time.Minute)), "retry scheduled by the worker's policy")
}

// panicArgs panics while its args are decoded.
type panicArgs struct{}

func (panicArgs) Kind() string { return "panic_decode" }

func (*panicArgs) UnmarshalJSON([]byte) error { panic("bad decoder") }

// TestArgsDecoderPanics shows that a panic in an args type's UnmarshalJSON
// discards the job with the reason kept, and the client keeps working.
func TestArgsDecoderPanics(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[panicArgs]) error { return nil })
	AddWorker(w, func(ctx context.Context, j *Job[noopArgs]) error { return nil })
	c := newClient(t, db.Pool, w, nil)
	start(t, c)
	bad, err := c.Insert(ctx, db.Pool, panicArgs{}, nil)
	require.NoError(t, err)
	j := waitState(t, c, bad.Job.ID, StateDiscarded)
	require.Len(t, j.Errors, 1)
	assert.Contains(t, j.Errors[0].Error, "bad decoder")
	good, err := c.Insert(ctx, db.Pool, noopArgs{N: 1}, nil)
	require.NoError(t, err)
	waitState(t, c, good.Job.ID, StateCompleted)
}
