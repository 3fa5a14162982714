package jobs

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHotQueriesUseIndexes proves with EXPLAIN that the fetch, the admin
// listing, the unique lookup and pruning use their indexes on a table where
// finished jobs outnumber available ones and a queue has a backlog.
func TestHotQueriesUseIndexes(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[noopArgs]) error { return nil })
	c := newClient(t, db.Pool, w, nil)
	_, err := db.Pool.Exec(ctx, `
INSERT INTO justpg.jobs (kind, queue, state, args, finalized_at, unique_key)
SELECT 'noop', 'q' || (i % 10), CASE WHEN i % 5 = 0 THEN 'available' ELSE 'completed' END, '{}',
	CASE WHEN i % 5 = 0 THEN NULL ELSE now() END, CASE WHEN i % 7 = 0 THEN 'k' || i END
FROM generate_series(1, 50000) AS i;
ANALYZE justpg.jobs;`)
	require.NoError(t, err)

	explain := func(sql string, args ...any) string {
		t.Helper()
		rows, err := db.Pool.Query(ctx, "EXPLAIN "+sql, args...)
		require.NoError(t, err)
		var lines []string
		for rows.Next() {
			var l string
			require.NoError(t, rows.Scan(&l))
			lines = append(lines, l)
		}
		require.NoError(t, rows.Err())
		return strings.Join(lines, "\n")
	}
	plan := explain(c.sql.fetch, "q1", 10, "client")
	assert.Contains(t, plan, "jobs_fetch_idx", plan)
	assert.NotContains(t, plan, "Seq Scan on jobs", plan)

	plan = explain(c.sql.fetchLimited, "q1", 10, "client", 5)
	assert.Contains(t, plan, "jobs_fetch_idx", plan)
	assert.Contains(t, plan, "jobs_running_idx", plan, "running count uses the running index")

	plan = explain(`SELECT `+jobCols+` FROM justpg.jobs WHERE id > $1 AND state = $2 AND queue = $3 ORDER BY id LIMIT $4`, 0, "completed", "q1", 101)
	assert.Contains(t, plan, "jobs_pkey", plan, "keyset pages walk the primary key")

	plan = explain(c.sql.selectUnique, "k14")
	assert.Contains(t, plan, "jobs_unique_idx", plan)

	plan = explain(c.sql.prune, int64(3600e6), "completed", 1000)
	assert.Contains(t, plan, "jobs_finalized_idx", plan)

	plan = explain(c.sql.rescue)
	assert.Contains(t, plan, "jobs_running_idx", plan)
}
