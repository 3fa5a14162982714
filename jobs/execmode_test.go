package jobs

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
)

// Jobs go in (Insert, and InsertMany by COPY and by unnest), run, fail and
// are read back in every pgx exec mode. In the exec and simple-protocol
// modes (what PgBouncer users configure) pgx does not learn the parameter
// types, and Insert's args and metadata, sent as []byte, went as bytea: the
// insert failed with "invalid input syntax for type json".
func TestInsertAndWorkInEveryExecMode(t *testing.T) {
	t.Parallel()
	for _, mode := range pgtest.ExecModes {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			db := newDB(t, pgtest.InMode(mode))
			ctx := context.Background()
			rec := newRecorder()
			w := NewWorkers()
			AddWorker(w, func(ctx context.Context, j *Job[noopArgs]) error { rec.add(int64(j.Args.N)); return nil })
			AddWorker(w, func(ctx context.Context, j *Job[failArgs]) error { return errors.New(j.Args.Msg) })
			c := newClient(t, db.Pool, w, nil)
			start(t, c)

			one, err := c.Insert(ctx, db.Pool, noopArgs{N: 1}, &InsertOpts{Tags: []string{"t"}, Metadata: map[string]any{"k": "v"}})
			require.NoError(t, err)
			assert.JSONEq(t, `{"n":1}`, string(one.Job.EncodedArgs))
			assert.JSONEq(t, `{"k":"v"}`, string(one.Job.Metadata))
			fail, err := c.Insert(ctx, db.Pool, failArgs{Msg: "boom"}, &InsertOpts{MaxAttempts: 1})
			require.NoError(t, err)
			n, err := c.InsertMany(ctx, db.Pool, []InsertParams{ // COPY
				{Args: noopArgs{N: 2}, Opts: &InsertOpts{Metadata: map[string]any{"m": 2}}},
				{Args: noopArgs{N: 3}},
			})
			require.NoError(t, err)
			require.Equal(t, 2, n)
			n, err = c.InsertMany(ctx, db.Pool, []InsertParams{ // unnest, for the unique key
				{Args: noopArgs{N: 4}, Opts: &InsertOpts{Metadata: map[string]any{"m": 4}, Unique: &UniqueOpts{ByArgs: true}}},
			})
			require.NoError(t, err)
			require.Equal(t, 1, n)

			waitState(t, c, one.Job.ID, StateCompleted)
			j := waitState(t, c, fail.Job.ID, StateDiscarded)
			require.Len(t, j.Errors, 1)
			assert.Equal(t, "boom", j.Errors[0].Error)
			require.Eventually(t, func() bool { return rec.count(2) == 1 && rec.count(3) == 1 && rec.count(4) == 1 },
				20*time.Second, 10*time.Millisecond)
			// A worker has returned before its completion is recorded (in
			// a batch, a moment later).
			var page *ListPage
			require.Eventually(t, func() bool {
				var err error
				page, err = c.List(ctx, db.Pool, ListParams{State: StateCompleted})
				return err == nil && len(page.Jobs) == 4
			}, 20*time.Second, 10*time.Millisecond)
			meta := map[string]string{}
			for _, j := range page.Jobs {
				meta[string(j.EncodedArgs)] = string(j.Metadata)
			}
			assert.Equal(t, map[string]string{`{"n": 1}`: `{"k": "v"}`, `{"n": 2}`: `{"m": 2}`, `{"n": 3}`: `{}`, `{"n": 4}`: `{"m": 4}`}, meta)
		})
	}
}
