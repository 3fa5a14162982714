package jobs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/jobs"
)

// A worker's error message is recorded in the job's errors (jsonb). A
// message with a NUL byte (say, from bytes a worker read off the wire) must
// not stop the client from recording outcomes: the failing job is retried
// or discarded with its error, and other jobs complete.
func TestBlackboxNULInWorkerErrorIsRecorded(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	ctx := context.Background()
	c := bbClient(t, db.Pool, func(_ context.Context, j *jobs.Job[bbArgs]) error {
		if j.Args.S == "bad" {
			return errors.New("protocol error near \x00\x01")
		}
		return nil
	}, jobs.DefaultQueue)
	require.NoError(t, c.Start(ctx))
	stopLater(t, c, db.Pool)
	bad, err := c.Insert(ctx, db.Pool, bbArgs{S: "bad"}, &jobs.InsertOpts{MaxAttempts: 1})
	require.NoError(t, err)
	time.Sleep(500 * time.Millisecond)
	good, err := c.Insert(ctx, db.Pool, bbArgs{S: "good"}, nil)
	require.NoError(t, err)
	state := func(id int64) jobs.State {
		j, err := c.JobByID(ctx, db.Pool, id)
		require.NoError(t, err)
		return j.State
	}
	assert.Eventually(t, func() bool { return state(good.Job.ID) == jobs.StateCompleted }, 5*time.Second, 20*time.Millisecond,
		"a later, successful job is never recorded completed (state %s)", state(good.Job.ID))
	assert.Eventually(t, func() bool { return state(bad.Job.ID) == jobs.StateDiscarded }, 5*time.Second, 20*time.Millisecond,
		"the failing job is never recorded discarded (state %s)", state(bad.Job.ID))
	j, err := c.JobByID(ctx, db.Pool, bad.Job.ID)
	require.NoError(t, err)
	if assert.Len(t, j.Errors, 1) {
		assert.Contains(t, j.Errors[0].Error, "protocol error near")
	}
}

// Args holding a NUL (valid Go text that json.Marshal encodes as \u0000)
// are either stored and delivered exactly, or refused with
// ErrInvalidOptions — not a raw database error.
func TestBlackboxNULInArgs(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	ctx := context.Background()
	got := make(chan string, 1)
	c := bbClient(t, db.Pool, func(_ context.Context, j *jobs.Job[bbArgs]) error { got <- j.Args.S; return nil }, jobs.DefaultQueue)
	require.NoError(t, c.Start(ctx))
	stopLater(t, c, db.Pool)
	_, err := c.Insert(ctx, db.Pool, bbArgs{S: "a\x00b"}, nil)
	if err != nil {
		assert.ErrorIs(t, err, jobs.ErrInvalidOptions, "args with NUL")
	} else {
		select {
		case s := <-got:
			assert.Equal(t, "a\x00b", s)
		case <-time.After(10 * time.Second):
			t.Fatal("job did not run")
		}
	}
	_, err = c.Insert(ctx, db.Pool, bbArgs{S: "ok"}, &jobs.InsertOpts{Metadata: map[string]any{"k": "\x00"}})
	if err != nil {
		assert.ErrorIs(t, err, jobs.ErrInvalidOptions, "metadata with NUL")
	}
	_, err = c.Insert(ctx, db.Pool, bbArgs{S: "ok"}, &jobs.InsertOpts{Tags: []string{"t\x00"}})
	if err != nil {
		assert.ErrorIs(t, err, jobs.ErrInvalidOptions, "tag with NUL")
	}
}

type bbIDArgs struct {
	UserID int64 `json:"user_id"`
}

func (bbIDArgs) Kind() string { return "bb_id" }

// Unique by args: two jobs whose args differ are different jobs. Int64 ids
// above 2^53 (snowflake ids, for example) must not be confused: the second
// insert must not be skipped as a duplicate of the first.
func TestBlackboxUniqueByArgsLargeInts(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	ctx := context.Background()
	w := jobs.NewWorkers()
	jobs.AddWorker(w, func(context.Context, *jobs.Job[bbIDArgs]) error { return nil })
	c, err := jobs.New(db.Pool, jobs.Config{Workers: w})
	require.NoError(t, err)
	u := &jobs.InsertOpts{Unique: &jobs.UniqueOpts{ByArgs: true}}
	a, err := c.Insert(ctx, db.Pool, bbIDArgs{UserID: 1234567890123456789}, u)
	require.NoError(t, err)
	require.False(t, a.Skipped)
	b, err := c.Insert(ctx, db.Pool, bbIDArgs{UserID: 1234567890123456790}, u)
	require.NoError(t, err)
	assert.False(t, b.Skipped, "job for user 1234567890123456790 skipped as a duplicate of job %d (args %s)", b.Job.ID, b.Job.EncodedArgs)
}

// Admin reads validate their text inputs like PauseQueue does
// (ErrInvalidOptions), instead of sending a NUL to PostgreSQL.
func TestBlackboxAdminReadsValidateText(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	ctx := context.Background()
	c := bbClient(t, db.Pool, func(context.Context, *jobs.Job[bbArgs]) error { return nil })
	require.ErrorIs(t, c.PauseQueue(ctx, db.Pool, "a\x00b"), jobs.ErrInvalidOptions)
	_, err := c.QueuePaused(ctx, db.Pool, "a\x00b")
	assert.ErrorIs(t, err, jobs.ErrInvalidOptions, "QueuePaused: %v", err)
	_, err = c.List(ctx, db.Pool, jobs.ListParams{Kind: "a\x00"})
	assert.ErrorIs(t, err, jobs.ErrInvalidOptions, "List kind: %v", err)
	_, err = c.List(ctx, db.Pool, jobs.ListParams{Queue: "a\x00"})
	assert.ErrorIs(t, err, jobs.ErrInvalidOptions, "List queue: %v", err)
}
