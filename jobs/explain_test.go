package jobs

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
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

	// List: every state (and all states at once) with and without the queue
	// and kind filters reads the state's listing index in order (no sort of
	// the finished jobs), running jobs through jobs_running_idx, and never
	// the whole table.
	// The plans are generic ones (what a prepared statement runs after a few
	// executions), so the states' partial-index predicates must be provable
	// without the parameter values.
	conn, err := db.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, `SET plan_cache_mode = force_generic_plan`)
	require.NoError(t, err)
	defer func() { _, _ = conn.Exec(ctx, `RESET plan_cache_mode`) }()
	for i, p := range []ListParams{
		{State: StateCompleted}, {State: StateCompleted, Queue: "q1"}, {State: StateCompleted, Queue: "q1", Kind: "noop"},
		{State: StateAvailable, Kind: "noop"}, {State: StateDiscarded}, {State: StateCancelled, Queue: "q2"},
		{State: StateRunning, Queue: "q1"}, {}, {Queue: "q3", Kind: "noop"},
	} {
		p.Limit, p.After = 100, 10
		q, args, err := c.listQuery(p)
		require.NoError(t, err)
		name := fmt.Sprintf("list_%d", i)
		_, err = conn.Exec(ctx, `PREPARE `+name+` AS `+q)
		require.NoError(t, err)
		rows, err := conn.Query(ctx, `EXPLAIN EXECUTE `+name+`(`+literals(args)+`)`, pgx.QueryExecModeSimpleProtocol)
		require.NoError(t, err)
		var lines []string
		for rows.Next() {
			var l string
			require.NoError(t, rows.Scan(&l))
			lines = append(lines, l)
		}
		require.NoError(t, rows.Err())
		plan := strings.Join(lines, "\n")
		assert.NotContains(t, plan, "Seq Scan", "%+v\n%s", p, plan)
		assert.NotContains(t, plan, "jobs_pkey", "%+v\n%s", p, plan)
		if p.State != StateRunning && p.State != "" {
			assert.Contains(t, plan, "jobs_"+string(p.State)+"_list_idx", "%+v\n%s", p, plan)
		}
		if p.State == "" {
			for _, st := range finishedOrWaiting {
				assert.Contains(t, plan, "jobs_"+string(st)+"_list_idx", "%+v\n%s", p, plan)
			}
		}
		if p.State == StateRunning || p.State == "" {
			assert.Contains(t, plan, "jobs_running_idx", "%+v\n%s", p, plan)
		} else {
			assert.NotContains(t, plan, "Sort", "%+v: read in order\n%s", p, plan)
			assert.Regexp(t, `Index Cond: \(+ROW\(state, id\) > ROW\('`+string(p.State)+`'::text, \$1\)\)`, plan, "%+v: starts at the cursor\n%s", p, plan)
			if p.Queue != "" {
				assert.Contains(t, plan, "(queue = $3)", "%+v: queue tested in the index\n%s", p, plan)
				assert.NotContains(t, plan, "Filter:", "%+v: no filter on table rows\n%s", p, plan)
			}
		}
	}

	plan = explain(c.sql.selectUnique, "k14")
	assert.Contains(t, plan, "jobs_unique_idx", plan)

	for _, st := range []State{StateCompleted, StateCancelled, StateDiscarded} {
		plan = explain(c.sql.prune[st], int64(3600e6), 1000, int64(0))
		assert.Contains(t, plan, "jobs_"+string(st)+"_list_idx", plan)
		assert.Contains(t, plan, "finalized_at <", plan)
		assert.NotContains(t, plan, "Seq Scan on jobs", plan)
		assert.NotContains(t, plan, "Sort", plan)
	}

	plan = explain(c.sql.rescue)
	assert.Contains(t, plan, "jobs_running_idx", plan)
}

// literals renders the test's own parameter values for EXPLAIN EXECUTE.
func literals(args []any) string {
	parts := make([]string, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case string:
			parts[i] = "'" + strings.ReplaceAll(v, "'", "''") + "'"
		default:
			parts[i] = fmt.Sprint(v)
		}
	}
	return strings.Join(parts, ", ")
}
