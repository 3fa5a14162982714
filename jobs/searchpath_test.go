package jobs

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
)

// A client whose pool's sessions have an unusual search_path (see
// pgtest.SearchPathCases): inserting (one and COPY), fetching from plain,
// globally limited and rate-limited queues, retries, scheduled jobs, unique
// jobs, listing, cancelling and maintenance all work, and the table's
// defaults (the tenant stamp) are evaluated in those sessions.
func TestJobsWithUnusualSearchPath(t *testing.T) {
	t.Parallel()
	for _, tc := range pgtest.SearchPathCases {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			db := newDB(t, pgtest.WithSearchPath(tc.SearchPath))
			ctx := context.Background()
			_, err := db.Pool.Exec(ctx, tc.SetupSQL())
			require.NoError(t, err)
			if tc.Shadow {
				_, err = db.Pool.Exec(ctx,
					// The call of the rescuer's error entry, exactly.
					`CREATE FUNCTION public.jsonb_build_object(text, integer, text, timestamptz, text, text) RETURNS jsonb
					LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'shadowing jsonb_build_object ran'; END $$`)
				require.NoError(t, err)
			}
			rec := newRecorder()
			w := NewWorkers()
			AddWorker(w, func(ctx context.Context, j *Job[noopArgs]) error {
				rec.add(j.ID)
				return nil
			})
			AddWorker(w, func(ctx context.Context, j *Job[failArgs]) error {
				if j.Attempt == 1 {
					return fmt.Errorf("%s", j.Args.Msg)
				}
				return nil
			}, WorkerOptions{NextRetry: fastRetry})
			c := newClient(t, db.Pool, w, func(c *Config) {
				c.Queues = map[string]QueueConfig{
					DefaultQueue: {MaxWorkers: 4},
					"limited":    {MaxWorkers: 2, GlobalLimit: 2},
					"rated":      {MaxWorkers: 2, RateLimit: 100, RatePer: time.Second},
				}
			})
			start(t, c)

			later := &InsertOpts{ScheduledAt: time.Now().Add(time.Hour), Unique: &UniqueOpts{ByArgs: true}}
			far, err := c.Insert(ctx, db.Pool, noopArgs{N: 6}, later)
			require.NoError(t, err)
			dup, err := c.Insert(ctx, db.Pool, noopArgs{N: 6}, later)
			require.NoError(t, err)
			assert.True(t, dup.Skipped)
			assert.Equal(t, far.Job.ID, dup.Job.ID)
			one, err := c.Insert(ctx, db.Pool, noopArgs{N: 1}, nil)
			require.NoError(t, err)
			sched, err := c.Insert(ctx, db.Pool, noopArgs{N: 2}, &InsertOpts{ScheduledAt: time.Now().Add(50 * time.Millisecond)})
			require.NoError(t, err)
			retried, err := c.Insert(ctx, db.Pool, failArgs{Msg: "once"}, nil)
			require.NoError(t, err)
			n, err := c.InsertMany(ctx, db.Pool, []InsertParams{
				{Args: noopArgs{N: 3}, Opts: &InsertOpts{Queue: "limited"}},
				{Args: noopArgs{N: 4}, Opts: &InsertOpts{Queue: "rated"}},
				{Args: noopArgs{N: 5}},
			})
			require.NoError(t, err)
			assert.Equal(t, 3, n)

			waitState(t, c, one.Job.ID, StateCompleted)
			waitState(t, c, sched.Job.ID, StateCompleted)
			for _, id := range []int64{one.Job.ID + 3, one.Job.ID + 4, one.Job.ID + 5} { // InsertMany's
				waitState(t, c, id, StateCompleted)
			}
			j := waitState(t, c, retried.Job.ID, StateCompleted)
			assert.Equal(t, 2, j.Attempt)
			page, err := c.List(ctx, db.Pool, ListParams{State: StateCompleted})
			require.NoError(t, err)
			require.Len(t, page.Jobs, 6)
			for _, j := range page.Jobs {
				assert.Empty(t, j.TenantID)
			}

			cancelled, err := c.CancelJob(ctx, db.Pool, far.Job.ID)
			require.NoError(t, err)
			assert.Equal(t, StateCancelled, cancelled.State)
			_, err = c.RetryJob(ctx, db.Pool, far.Job.ID)
			require.NoError(t, err)
			require.NoError(t, c.PauseQueue(ctx, db.Pool, "limited"))
			paused, err := c.QueuePaused(ctx, db.Pool, "limited")
			require.NoError(t, err)
			assert.True(t, paused)
			// A job left running by a client whose lease expired (in a
			// queue this client does not work) is rescued.
			ghost, err := c.Insert(ctx, db.Pool, noopArgs{N: 7}, &InsertOpts{Queue: "ghost"})
			require.NoError(t, err)
			_, err = db.Pool.Exec(ctx, `UPDATE justpg.jobs SET state = 'running', attempt = 1, attempted_at = now(),
				attempted_by = 'ghost-client' WHERE id = $1`, ghost.Job.ID)
			require.NoError(t, err)
			require.NoError(t, c.Rescue(ctx))
			j, err = c.JobByID(ctx, db.Pool, ghost.Job.ID)
			require.NoError(t, err)
			assert.Equal(t, StateAvailable, j.State)
			require.Len(t, j.Errors, 1)
			assert.Contains(t, j.Errors[0].Error, "ghost-client")
			_, err = c.Prune(ctx)
			require.NoError(t, err)
		})
	}
}
