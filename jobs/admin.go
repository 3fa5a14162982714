package jobs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/justpg/justpg/internal/pgdb"
)

// JobByID returns one job, or ErrNotFound.
func (c *Client) JobByID(ctx context.Context, db DB, id int64) (*JobRow, error) {
	// Read-only, but under SERIALIZABLE even a read can be chosen to fail
	// (see pgdb.Retry).
	var j *JobRow
	err := pgdb.Retry(ctx, db, func() error {
		rows, err := db.Query(ctx, c.sql.get, id)
		if err == nil {
			j, err = collectOne(rows)
		}
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %d", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("jobs: get %d: %w", id, err)
	}
	return j, nil
}

// ListParams filter and page List. Empty fields do not filter.
type ListParams struct {
	Queue string
	State State
	Kind  string
	// After is the cursor: only jobs with a greater ID are listed. Pass the
	// previous page's Next.
	After int64
	// Limit is the page size; 0 means 100, at most 10000.
	Limit int
}

// ListPage is one page of List.
type ListPage struct {
	Jobs []*JobRow
	// Next is the cursor of the following page, 0 when this is the last.
	Next int64
}

// finishedOrWaiting are the states with a listing index (jobs_<state>_list_idx).
var finishedOrWaiting = []State{StateAvailable, StateCompleted, StateCancelled, StateDiscarded}

// List returns jobs in ID order, a page at a time (keyset pagination: each
// page costs the same however deep it is). Jobs of one state are read from
// that state's partial index jobs_<state>_list_idx (state, id, queue, kind[,
// finalized_at]), which checks the queue and kind filters on its entries;
// running jobs, which have no such index, are collected through
// jobs_running_idx and sorted (there are at most as many as all clients'
// workers). Without a state filter, the page is
// merged from one such ordered read per state.
func (c *Client) List(ctx context.Context, db DB, p ListParams) (*ListPage, error) {
	if p.Limit == 0 {
		p.Limit = 100
	}
	q, args, err := c.listQuery(p)
	if err != nil {
		return nil, err
	}
	var list []*JobRow
	err = pgdb.Retry(ctx, db, func() error {
		rows, err := db.Query(ctx, q, args...)
		if err == nil {
			list, err = pgx.CollectRows(rows, scanJob)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("jobs: list: %w", err)
	}
	page := &ListPage{Jobs: list}
	if len(list) > p.Limit {
		page.Jobs = list[:p.Limit]
		page.Next = page.Jobs[p.Limit-1].ID
	}
	return page, nil
}

// listQuery builds List's statement: it reads one more job than the page
// holds, to know whether another page follows.
func (c *Client) listQuery(p ListParams) (string, []any, error) {
	if p.Limit < 1 || p.Limit > 10000 {
		return "", nil, invalid("list limit %d is out of range 1..10000", p.Limit)
	}
	if p.State != "" && !p.State.valid() {
		return "", nil, invalid("unknown state %q", p.State)
	}
	// $1 after, $2 limit, then the optional filters.
	args := []any{p.After, p.Limit + 1}
	filter := ""
	add := func(col string, v string) {
		args = append(args, v)
		filter += " AND " + col + " = $" + strconv.Itoa(len(args))
	}
	if p.Queue != "" {
		if err := validQueue(p.Queue); err != nil {
			return "", nil, err
		}
		add("queue", p.Queue)
	}
	if p.Kind != "" {
		if err := validText("kind", p.Kind); err != nil {
			return "", nil, err
		}
		add("kind", p.Kind)
	}
	// The states are literals (from the fixed set above, never caller
	// text), so that even a generic plan of a prepared statement can prove
	// the partial indexes' predicates (state >= s AND state <= s, written as
	// a range; see migration 005). One state is selected as the range
	// (state, id) > (s, after) up to state <= s, ordered by (state, id):
	// that is the state's jobs after the cursor in ID order, but written so
	// that only the state's listing index returns it without a sort,
	// starting right at the cursor. (With "state = s" the planner may prefer walking the
	// primary key and filtering on the state, which reads as many rows more
	// as the page's jobs are rare.)
	ofState := func(st State) string {
		lit := `'` + string(st) + `'`
		return `(SELECT ` + jobCols + ` FROM ` + c.qJobs + ` WHERE (state, id) > (` + lit + `, $1) AND state <= ` + lit +
			` AND state >= ` + lit + filter + ` ORDER BY state, id LIMIT $2)`
	}
	// Running jobs are few: collect them (through jobs_running_idx) and sort.
	running := `running AS MATERIALIZED (SELECT ` + jobCols + ` FROM ` + c.qJobs +
		` WHERE state = 'running' AND id > $1` + filter + `)`
	var q string
	switch p.State {
	case StateRunning:
		q = `WITH ` + running + ` SELECT ` + jobCols + ` FROM running ORDER BY id LIMIT $2`
	case "":
		parts := make([]string, 0, len(finishedOrWaiting)+1)
		for _, st := range finishedOrWaiting {
			parts = append(parts, ofState(st))
		}
		parts = append(parts, `(SELECT `+jobCols+` FROM running)`)
		q = `WITH ` + running + ` SELECT ` + jobCols + ` FROM (` + strings.Join(parts, " UNION ALL ") +
			`) AS page ORDER BY id LIMIT $2`
	default:
		q = ofState(p.State)
	}
	return q, args, nil
}

// CancelJob cancels a job: an available job becomes cancelled at once; a
// running job gets its context cancelled (cause ErrCancelRequested) in
// whichever process runs it, through a notification sent when db's
// transaction commits, and ends cancelled whatever its worker returns
// afterwards (unless it completed first). A finished job is returned
// unchanged.
func (c *Client) CancelJob(ctx context.Context, db DB, id int64) (*JobRow, error) {
	var j *JobRow
	err := pgdb.Retry(ctx, db, func() error {
		rows, err := db.Query(ctx, c.sql.cancel, id, c.channel)
		if err == nil {
			j, err = collectOne(rows)
		}
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return c.JobByID(ctx, db, id)
	}
	if err != nil {
		return nil, fmt.Errorf("jobs: cancel %d: %w", id, err)
	}
	return j, nil
}

// RetryJob makes a finished (or scheduled) job available to run now, giving
// it one more attempt if it had used them all. A running job is returned
// unchanged.
func (c *Client) RetryJob(ctx context.Context, db DB, id int64) (*JobRow, error) {
	var j *JobRow
	err := pgdb.Retry(ctx, db, func() error {
		rows, err := db.Query(ctx, c.sql.retry, id)
		if err == nil {
			j, err = collectOne(rows)
		}
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return c.JobByID(ctx, db, id)
	}
	if err != nil {
		return nil, fmt.Errorf("jobs: retry %d: %w", id, err)
	}
	if _, err := db.Exec(ctx, `SELECT pg_notify($1, $2)`, c.channel, "i:"+j.Queue); err != nil {
		return nil, fmt.Errorf("jobs: retry %d: notify: %w", id, err)
	}
	return j, nil
}

// PauseQueue stops every client from fetching jobs of queue until
// ResumeQueue; running jobs finish.
func (c *Client) PauseQueue(ctx context.Context, db DB, queue string) error {
	return c.setPaused(ctx, db, queue, true)
}

// ResumeQueue undoes PauseQueue and wakes the queue's workers.
func (c *Client) ResumeQueue(ctx context.Context, db DB, queue string) error {
	return c.setPaused(ctx, db, queue, false)
}

func (c *Client) setPaused(ctx context.Context, db DB, queue string, paused bool) error {
	if err := validQueue(queue); err != nil {
		return err
	}
	_, err := db.Exec(ctx, `WITH up AS (
	INSERT INTO `+c.qQueues+` (name, paused) VALUES ($1, $2)
	ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused, updated_at = now())
SELECT pg_notify($3, 'p:' || $1)`, queue, paused, c.channel)
	if err != nil {
		return fmt.Errorf("jobs: pausing/resuming %q: %w", queue, err)
	}
	return nil
}

// QueuePaused reports whether queue is paused.
func (c *Client) QueuePaused(ctx context.Context, db DB, queue string) (bool, error) {
	if err := validQueue(queue); err != nil {
		return false, err
	}
	var paused bool
	err := db.QueryRow(ctx, `SELECT coalesce((SELECT paused FROM `+c.qQueues+` WHERE name = $1), false)`, queue).Scan(&paused)
	if err != nil {
		return false, fmt.Errorf("jobs: %w", err)
	}
	return paused, nil
}
