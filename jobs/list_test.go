package jobs

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestListMatchesEveryFilter pages through every combination of the three
// filters over jobs in all five states and compares each listing with a
// plain query of the table: same jobs, same order, nothing lost or repeated
// at page boundaries.
func TestListMatchesEveryFilter(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[noopArgs]) error { return nil })
	AddWorker(w, func(ctx context.Context, j *Job[failArgs]) error { return nil })
	c := newClient(t, db.Pool, w, nil)
	_, err := db.Pool.Exec(ctx, `
INSERT INTO justpg.jobs (kind, queue, state, args, attempt, attempted_at, attempted_by, finalized_at)
SELECT CASE WHEN i % 3 = 0 THEN 'fail' ELSE 'noop' END, 'q' || (i % 4),
	(ARRAY['available', 'running', 'completed', 'cancelled', 'discarded'])[1 + (i * 7) % 5], '{}',
	1, now(), 'someone', CASE WHEN (i * 7) % 5 >= 2 THEN now() END
FROM generate_series(1, 400) AS i`)
	require.NoError(t, err)

	for _, state := range []State{"", StateAvailable, StateRunning, StateCompleted, StateCancelled, StateDiscarded} {
		for _, queue := range []string{"", "q1", "nope"} {
			for _, kind := range []string{"", "fail"} {
				name := fmt.Sprintf("state=%q queue=%q kind=%q", state, queue, kind)
				var want []int64
				rows, err := db.Pool.Query(ctx, `SELECT id FROM justpg.jobs
WHERE ($1 = '' OR state = $1) AND ($2 = '' OR queue = $2) AND ($3 = '' OR kind = $3) ORDER BY id`, string(state), queue, kind)
				require.NoError(t, err)
				for rows.Next() {
					var id int64
					require.NoError(t, rows.Scan(&id))
					want = append(want, id)
				}
				require.NoError(t, rows.Err())

				var got []int64
				var after int64
				for pages := 0; pages < 1000; pages++ {
					page, err := c.List(ctx, db.Pool, ListParams{State: state, Queue: queue, Kind: kind, After: after, Limit: 7})
					require.NoError(t, err, name)
					for _, j := range page.Jobs {
						got = append(got, j.ID)
						if state != "" {
							assert.Equal(t, state, j.State, name)
						}
						if queue != "" {
							assert.Equal(t, queue, j.Queue, name)
						}
						if kind != "" {
							assert.Equal(t, kind, j.Kind, name)
						}
					}
					if page.Next == 0 {
						break
					}
					after = page.Next
				}
				assert.Equal(t, want, got, name)
			}
		}
	}
}

// TestPruneOnePassAcrossBatches mixes expired and retained finished jobs
// over more than two batches: every expired one of each state is deleted,
// every retained one and every unfinished one is kept.
func TestPruneOnePassAcrossBatches(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[noopArgs]) error { return nil })
	c := newClient(t, db.Pool, w, func(c *Config) {
		c.Retention = map[State]time.Duration{StateCompleted: time.Hour, StateDiscarded: time.Hour, StateCancelled: -1}
	})
	_, err := db.Pool.Exec(ctx, `
INSERT INTO justpg.jobs (kind, state, args, finalized_at)
SELECT 'noop', (ARRAY['completed', 'discarded', 'cancelled', 'available'])[1 + i % 4], '{}',
	CASE WHEN i % 4 = 3 THEN NULL WHEN i % 3 = 0 THEN now() ELSE now() - interval '2 days' END
FROM generate_series(1, 10000) AS i`)
	require.NoError(t, err)
	count := func(where string) int64 {
		var n int64
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM justpg.jobs WHERE `+where).Scan(&n))
		return n
	}
	expired := count(`state IN ('completed', 'discarded') AND finalized_at < now() - interval '1 hour'`)
	require.Greater(t, expired, int64(2000), "more than two batches")
	kept := count(`NOT (state IN ('completed', 'discarded') AND finalized_at < now() - interval '1 hour')`)

	n, err := c.Prune(ctx)
	require.NoError(t, err)
	assert.Equal(t, expired, n)
	assert.Equal(t, int64(0), count(`state IN ('completed', 'discarded') AND finalized_at < now() - interval '1 hour'`))
	assert.Equal(t, kept, count(`true`))
	assert.Greater(t, count(`state = 'cancelled' AND finalized_at < now() - interval '1 hour'`), int64(0), "cancelled kept forever")
}
