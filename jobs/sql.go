package jobs

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// jobCols is the column list every query returning jobs selects, in the
// order scanJob reads.
const jobCols = `id, kind, queue, state, priority, args, metadata, tags, attempt, max_attempts, errors,
	created_at, scheduled_at, attempted_at, attempted_by, finalized_at, unique_key, tenant_id, timeout_us`

func prefixCols(alias string) string {
	parts := strings.Split(jobCols, ",")
	for i, p := range parts {
		parts[i] = alias + "." + strings.TrimSpace(p)
	}
	return strings.Join(parts, ", ")
}

func scanJob(row pgx.CollectableRow) (*JobRow, error) {
	var j JobRow
	var state string
	var errs, args, meta []byte
	var by, key, tenant *string
	var timeoutUS *int64
	// The jsonb columns are scanned as bytes: PostgreSQL has validated
	// them, and scanning into json.RawMessage would parse them again.
	if err := row.Scan(&j.ID, &j.Kind, &j.Queue, &state, &j.Priority, &args, &meta, &j.Tags,
		&j.Attempt, &j.MaxAttempts, &errs, &j.CreatedAt, &j.ScheduledAt, &j.AttemptedAt, &by, &j.FinalizedAt, &key, &tenant,
		&timeoutUS); err != nil {
		return nil, err
	}
	j.EncodedArgs, j.Metadata = args, meta
	if timeoutUS != nil {
		j.Timeout = -1
		if *timeoutUS > 0 {
			j.Timeout = time.Duration(*timeoutUS) * time.Microsecond
		}
	}
	j.State = State(state)
	if by != nil {
		j.AttemptedBy = *by
	}
	if key != nil {
		j.UniqueKey = *key
	}
	if tenant != nil {
		j.TenantID = *tenant
	}
	if len(errs) > 2 {
		if err := json.Unmarshal(errs, &j.Errors); err != nil {
			return nil, err
		}
	}
	return &j, nil
}

func collectOne(rows pgx.Rows) (*JobRow, error) {
	return pgx.CollectExactlyOneRow(rows, scanJob)
}

type queries struct {
	insert, insertMany, selectUnique string
	fetch, fetchLimited, complete    string
	completeOnly                     string
	heartbeat, leader, rescue, sweep string
	cancelled                        string
	get, cancel, retry               string
	prune                            map[State]string
	rateWindow, rateCount            string
}

func buildQueries(jobs, clients, queues, leader string) queries {
	var q queries
	q.insert = `WITH ins AS (
	INSERT INTO ` + jobs + ` (kind, queue, priority, args, metadata, tags, max_attempts, scheduled_at, unique_key, unique_keep, timeout_us)
	VALUES ($1, $2, $3, $4, $5, $6, $7, COALESCE($8, now()), $9, $10, $11)
	ON CONFLICT (unique_key, tenant_id) WHERE unique_key IS NOT NULL DO NOTHING
	RETURNING ` + jobCols + `)
SELECT ` + jobCols + ` FROM ins
WHERE CASE WHEN scheduled_at <= now() THEN pg_notify($12, 'i:' || queue)::text = '' ELSE true END`
	q.insertMany = `INSERT INTO ` + jobs + ` (kind, queue, priority, args, metadata, tags, max_attempts, scheduled_at, unique_key, unique_keep, timeout_us)
SELECT k, q, p, a, m, ARRAY(SELECT jsonb_array_elements_text(t)), ma, COALESCE(s, now()), uk, ukeep, tus
FROM unnest($1::text[], $2::text[], $3::smallint[], $4::jsonb[], $5::jsonb[], $6::jsonb[], $7::int[], $8::timestamptz[], $9::text[], $10::bool[], $11::bigint[])
	AS u(k, q, p, a, m, t, ma, s, uk, ukeep, tus)
ON CONFLICT (unique_key, tenant_id) WHERE unique_key IS NOT NULL DO NOTHING`
	q.selectUnique = `SELECT ` + jobCols + ` FROM ` + jobs + ` WHERE unique_key = $1
	AND tenant_id IS NOT DISTINCT FROM NULLIF(current_setting('app.tenant_id', true), '')::uuid`

	// The fetch: one statement locks the next jobs of a queue (skipping jobs
	// other clients are locking), marks them running and returns them. A
	// paused queue returns nothing. The locked rows are updated by their
	// physical address (stable while we hold the row locks), which saves a
	// primary-key lookup per job.
	fetch := func(limit string) string {
		return `WITH picked AS (
	SELECT ctid AS tid FROM ` + jobs + `
	WHERE state = 'available' AND queue = $1 AND scheduled_at <= now()
	  AND NOT EXISTS (SELECT 1 FROM ` + queues + ` WHERE name = $1 AND paused)
	ORDER BY priority, scheduled_at, id
	LIMIT ` + limit + `
	FOR UPDATE SKIP LOCKED)
UPDATE ` + jobs + ` AS j SET state = 'running', attempt = j.attempt + 1, attempted_at = statement_timestamp(), attempted_by = $3
WHERE j.ctid = ANY (ARRAY(SELECT tid FROM picked)) AND j.state = 'available'
RETURNING ` + prefixCols("j")
	}
	q.fetch = fetch("$2")
	// With a global concurrency limit ($4) the count of running jobs is taken
	// under an advisory lock held by the caller's transaction.
	q.fetchLimited = fetch(`GREATEST(0, LEAST($2, $4 - (SELECT count(*) FROM ` + jobs + ` WHERE state = 'running' AND queue = $1)))`)

	// One statement records every outcome of a batch. The (id, attempted_at)
	// pair is the lease token: a job that was rescued (and possibly fetched
	// again) since this attempt started is not running with this
	// attempted_at any more, so a late finish cannot overwrite newer state.
	q.complete = `UPDATE ` + jobs + ` AS j SET
	state = CASE WHEN c.st = 'available' AND j.cancel_requested THEN 'cancelled' ELSE c.st END,
	attempt = j.attempt - c.undo,
	scheduled_at = COALESCE(c.run_at, j.scheduled_at),
	finalized_at = CASE WHEN c.st = 'available' AND NOT j.cancel_requested THEN NULL ELSE now() END,
	errors = CASE WHEN c.err IS NULL THEN j.errors ELSE j.errors || pg_catalog.jsonb_build_array(c.err) END,
	unique_key = CASE
		WHEN c.st = 'available' AND NOT j.cancel_requested THEN j.unique_key
		WHEN c.st = 'completed' AND j.unique_keep THEN j.unique_key END
FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::int[], $5::timestamptz[], $6::jsonb[])
	AS c(id, attempted_at, st, undo, run_at, err)
WHERE j.id = c.id AND j.state = 'running' AND j.attempted_at = c.attempted_at`

	// The common case, a batch of successes, needs only the token arrays.
	q.completeOnly = `UPDATE ` + jobs + ` AS j SET state = 'completed', finalized_at = now(),
	unique_key = CASE WHEN j.unique_keep THEN j.unique_key END
FROM unnest($1::bigint[], $2::timestamptz[]) AS c(id, attempted_at)
WHERE j.id = c.id AND j.state = 'running' AND j.attempted_at = c.attempted_at`

	q.heartbeat = `INSERT INTO ` + clients + ` (id, expires_at) VALUES ($1, now() + ($2::bigint OPERATOR(pg_catalog.*) interval '1 microsecond'))
ON CONFLICT (id) DO UPDATE SET expires_at = EXCLUDED.expires_at`
	q.leader = `INSERT INTO ` + leader + ` (name, client_id, expires_at) VALUES ('leader', $1, now() + ($2::bigint OPERATOR(pg_catalog.*) interval '1 microsecond'))
ON CONFLICT (name) DO UPDATE SET client_id = EXCLUDED.client_id, expires_at = EXCLUDED.expires_at
WHERE ` + leader + `.client_id = EXCLUDED.client_id OR ` + leader + `.expires_at < now()
RETURNING client_id`

	// The rescuer returns running jobs whose client's lease expired.
	q.rescue = `WITH dead AS (
	SELECT id FROM ` + jobs + ` AS r
	WHERE state = 'running'
	  AND NOT EXISTS (SELECT 1 FROM ` + clients + ` AS c WHERE c.id = r.attempted_by AND c.expires_at > now())
	FOR UPDATE SKIP LOCKED),
upd AS (
	UPDATE ` + jobs + ` AS j SET
		state = CASE WHEN j.cancel_requested THEN 'cancelled'
			WHEN j.attempt >= j.max_attempts THEN 'discarded' ELSE 'available' END,
		finalized_at = CASE WHEN j.cancel_requested OR j.attempt >= j.max_attempts THEN now() END,
		scheduled_at = now(),
		errors = j.errors || pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object('attempt', j.attempt, 'at', now(),
			'error', 'jobs: the lease of client ' || coalesce(j.attempted_by, '?') || ' expired while the job was running')),
		unique_key = CASE WHEN NOT j.cancel_requested AND j.attempt < j.max_attempts THEN j.unique_key END
	FROM dead WHERE j.id = dead.id
	RETURNING j.queue, j.state)
SELECT queue, count(*) FILTER (WHERE state = 'available') FROM upd GROUP BY queue`

	q.sweep = `UPDATE ` + jobs + ` SET state = 'available', attempt = attempt - 1, scheduled_at = now()
WHERE state = 'running' AND attempted_by = $1
  AND attempted_at < now() - ($2::bigint OPERATOR(pg_catalog.*) interval '1 microsecond') AND NOT (id = ANY($3::bigint[]))`

	// The rate window: start a new one when the current one has ended, and
	// return the starts used in it and the microseconds it has left.
	q.rateWindow = `INSERT INTO ` + queues + ` AS qq (name, rate_window_start, rate_count) VALUES ($1, statement_timestamp(), 0)
ON CONFLICT (name) DO UPDATE SET
	rate_window_start = CASE WHEN qq.rate_window_start IS NULL
		OR qq.rate_window_start <= statement_timestamp() - ($2::bigint OPERATOR(pg_catalog.*) interval '1 microsecond') THEN statement_timestamp() ELSE qq.rate_window_start END,
	rate_count = CASE WHEN qq.rate_window_start IS NULL
		OR qq.rate_window_start <= statement_timestamp() - ($2::bigint OPERATOR(pg_catalog.*) interval '1 microsecond') THEN 0 ELSE qq.rate_count END
RETURNING rate_count,
	(extract(epoch FROM (rate_window_start + ($2::bigint OPERATOR(pg_catalog.*) interval '1 microsecond') - statement_timestamp())) * 1000000.0)::bigint`
	q.rateCount = `UPDATE ` + queues + ` SET rate_count = rate_count + $2 WHERE name = $1`

	q.cancelled = `SELECT id FROM ` + jobs + ` WHERE state = 'running' AND attempted_by = $1 AND cancel_requested`

	q.get = `SELECT ` + jobCols + ` FROM ` + jobs + ` WHERE id = $1`
	q.cancel = `WITH upd AS (
	UPDATE ` + jobs + ` SET
		state = CASE WHEN state = 'available' THEN 'cancelled' ELSE state END,
		finalized_at = CASE WHEN state = 'available' THEN now() ELSE finalized_at END,
		unique_key = CASE WHEN state = 'available' THEN NULL ELSE unique_key END,
		cancel_requested = true
	WHERE id = $1 AND state IN ('available', 'running')
	RETURNING ` + jobCols + `)
SELECT ` + jobCols + ` FROM upd
WHERE CASE WHEN state = 'running' THEN pg_notify($2, 'c:' || id::text)::text = '' ELSE true END`
	q.retry = `UPDATE ` + jobs + ` SET state = 'available', scheduled_at = now(), finalized_at = NULL,
	max_attempts = GREATEST(max_attempts, attempt + 1), cancel_requested = false
WHERE id = $1 AND state IN ('discarded', 'cancelled', 'completed', 'available')
RETURNING ` + jobCols
	// Pruning walks one finished state's listing index in ID order from a
	// cursor ($3), testing finalized_at on the index entries, so one pass
	// over the state's retained jobs finds every expired one. The state is
	// a literal so that even a generic plan proves the partial index's
	// predicate.
	q.prune = map[State]string{}
	for _, st := range []State{StateCompleted, StateCancelled, StateDiscarded} {
		q.prune[st] = `WITH gone AS (
	DELETE FROM ` + jobs + ` WHERE id IN (
		SELECT id FROM ` + jobs + `
		WHERE (state, id) > ('` + string(st) + `', $3) AND state <= '` + string(st) + `' AND state >= '` + string(st) + `'
		  AND finalized_at < now() - ($1::bigint OPERATOR(pg_catalog.*) interval '1 microsecond')
		ORDER BY state, id LIMIT $2)
	RETURNING id)
SELECT count(*), coalesce(max(id), 0) FROM gone`
	}
	return q
}
