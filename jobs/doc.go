// Package jobs is a background job queue in PostgreSQL: what Sidekiq on
// Redis, or a hosted queue, gives you, with no service besides the database
// you already run — and jobs that commit or roll back with your own writes.
//
// # Jobs and workers
//
// A kind of job is a Go type whose Kind method names it; its value is the
// job's arguments, stored as JSON. Workers are registered per kind and get
// the decoded arguments:
//
//	type WelcomeEmail struct{ UserID int64 }
//	func (WelcomeEmail) Kind() string { return "welcome_email" }
//
//	workers := jobs.NewWorkers()
//	jobs.AddWorker(workers, func(ctx context.Context, j *jobs.Job[WelcomeEmail]) error {
//		return send(ctx, j.Args.UserID)
//	})
//	client, err := jobs.New(pool, jobs.Config{
//		Workers: workers,
//		Queues:  map[string]jobs.QueueConfig{jobs.DefaultQueue: {MaxWorkers: 100}},
//	})
//	err = client.Start(ctx)
//	defer client.Stop(ctx)
//
// Insert refuses a kind that has no registered worker (ErrUnknownKind), so a
// typo is an error at the call site rather than a job that never runs. A
// process that only inserts builds the same Workers and leaves Config.Queues
// empty.
//
// # Inserting
//
// Insert takes a DB: the pool, or the caller's pgx.Tx, in which case the job
// exists only if that transaction commits, and the NOTIFY that wakes the
// workers is delivered at commit. InsertMany writes many jobs with COPY (or
// with one INSERT … ON CONFLICT when some are unique). InsertOpts set the
// queue, priority (lower first, 0 highest), a run-at time, max attempts
// (default 25), tags, metadata, and a unique key.
//
// A unique job (InsertOpts.Unique) has a key made of its kind plus, as asked,
// its args, its queue, a time period and a string of the caller. A unique
// index over (key, tenant) lets at most one job hold a key, so concurrent
// inserters cannot both win; the loser's Insert reports Skipped and returns
// the holder. A job holds its key while available or running; a completed
// job keeps it only for period keys (so a period runs once); cancelled and
// discarded jobs release it.
//
// # Running
//
// Each queue a client works has its own concurrency (QueueConfig.MaxWorkers).
// A fetch is one statement: it selects the next available jobs in
// (priority, scheduled_at, id) order from a partial index, skipping rows
// other clients lock (FOR UPDATE SKIP LOCKED), marks them running and
// returns them — as many as there are free slots. A client fetches when a
// NOTIFY says a job was inserted into one of its queues, when a job finishes
// while the queue has a backlog, and every FetchPollInterval as a fallback;
// Config.PollOnly drops LISTEN for poolers in transaction mode.
//
// What a worker returns decides the outcome: nil completes the job; an error
// schedules a retry with exponential backoff and jitter
// (DefaultRetryPolicy, or WorkerOptions.NextRetry), every attempt's error
// (and a panic's stack) being kept in JobRow.Errors, until MaxAttempts, when
// the job is discarded; Cancel(err) ends it cancelled without retry;
// Snooze(d) runs it again after d without counting an attempt. Args that do
// not decode discard the job with the reason. Outcomes are written in
// batches: one UPDATE over unnest arrays records everything that finished
// while the previous batch was being written.
//
// Each attempt runs with a context deadline whose cause is ErrTimeout: the
// job's own InsertOpts.Timeout (stored with the job, so it holds in whichever
// process runs it) if it has one, else its worker's WorkerOptions.Timeout,
// else Config.JobTimeout; a negative value at any level means no deadline.
// An attempt that fails because its deadline expired is retried like any
// other error, with the error kept. CancelJob from any process cancels a running job's
// context (cause ErrCancelRequested) through a NOTIFY to the process that
// runs it, and the job ends cancelled; each client also checks for
// cancellation requests of its running jobs at every heartbeat, which covers
// a missed notification and PollOnly clients.
//
// # Crash safety
//
// Every client holds a lease in jobs_clients that it renews every third of
// Config.LeaseDuration; its running jobs are covered by that lease. The
// elected leader (see below) rescues the running jobs of clients whose lease
// expired — a process killed with -9 — back to available (or discarded after
// their last attempt), recording the lost attempt. Every outcome is written
// with a token check (the job must still be running with the same
// attempted_at), so an attempt that finishes after its job was rescued — and
// perhaps run again elsewhere — cannot overwrite the newer state, and a
// retried write after a lost answer cannot apply twice. A fetch whose answer
// was lost with its connection is put back by the client itself after two
// lease periods. Work is therefore at least once: a job may run again after
// a crash, but no job is lost and none is recorded completed twice.
//
// Stop stops fetching, waits for running jobs until its context is done,
// then cancels them (cause ErrShutdown) and puts them back without counting
// the attempt, records every outcome, and releases every connection.
//
// # Leader, maintenance and periodic jobs
//
// One client at a time is the leader, elected through a lease row in
// jobs_leader (no session-level advisory lock, so it works behind poolers).
// The leader rescues expired leases, prunes finished jobs after
// Config.Retention in batches, and inserts periodic jobs
// (Config.Periodic): cron expressions parsed by robfig/cron, or
// "@every <duration>" with slots aligned to the epoch. Each slot's job
// carries a unique key of name and slot, so a slot is inserted once even if
// two clients briefly both believe they lead.
//
// # Queue controls and admin
//
// PauseQueue and ResumeQueue stop and restart fetching of a queue in every
// client (the fetch itself checks jobs_queues, and a NOTIFY wakes resumed
// workers). QueueConfig.GlobalLimit caps the running jobs of a queue across
// all clients: limited fetches take a transaction-level advisory lock and
// count the running jobs. QueueConfig.RateLimit lets at most N jobs of a
// queue start per interval across all clients (fixed windows kept in
// jobs_queues, under the same lock).
//
// List pages through jobs in ID order (keyset pagination: a page costs the
// same however deep it is), filtered by queue, state and kind. Each listed
// state has its own partial index (jobs_available_list_idx,
// jobs_completed_list_idx, ...) over (state, id, queue, kind[,
// finalized_at]): a page is read in ID order starting at the cursor, with the
// queue and kind tested on the index entries. Running jobs have no such
// index (they are few and found through jobs_running_idx), so starting a job
// adds no entry to one; a job gets one entry when inserted and one when it
// finishes, each appended at the right edge of its state's index (ids
// grow), which is btree's cheapest insert. Pruning uses the finished states'
// indexes (one pass per state, testing finalized_at on the entries).
// bench/RESULTS.md has the burn-down with and without these indexes.
//
// JobByID, List, CancelJob and RetryJob take a DB, so they work in a tenant's
// transaction: the jobs table has the tenancy convention's
// tenant_id column, stamped from app.tenant_id, and row-level security on it
// isolates tenants. Hooks observe every attempt with its outcome and
// duration; Config.Logger receives operational logs.
//
// # Schema
//
// Migrate creates the tables in schema "justpg" (MigrateSchema for another);
// Migrations returns the SQL files for goose, golang-migrate or atlas users.
// PostgreSQL 15 or newer is required (the unique index uses NULLS NOT
// DISTINCT).
package jobs
