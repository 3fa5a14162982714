package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/internal/ident"
	"github.com/justpg/justpg/internal/migrate"
	"github.com/justpg/justpg/internal/pgdb"
)

// QueueConfig configures how a client works one queue.
type QueueConfig struct {
	// MaxWorkers is how many jobs of the queue this client runs at once;
	// it must be at least 1.
	MaxWorkers int
	// GlobalLimit, when positive, caps the jobs of the queue running at once
	// across all clients. Fetches of a limited queue take a transaction-level
	// advisory lock, so they serialise across clients.
	GlobalLimit int
	// RateLimit, when positive, lets at most RateLimit jobs of the queue
	// start per RatePer (default 1s) across all clients, counted in fixed
	// windows kept in the database. Like GlobalLimit, it serialises fetches
	// of the queue under an advisory lock.
	RateLimit int
	// RatePer is the window of RateLimit; default 1s.
	RatePer time.Duration
}

// Hooks observe jobs. They run on the job's goroutine and must be quick.
type Hooks struct {
	// OnStart is called before a job's worker runs.
	OnStart func(ctx context.Context, job *JobRow)
	// OnFinish is called after the worker returned, with the outcome.
	OnFinish func(ctx context.Context, job *JobRow, out Outcome)
}

// Outcome is how one attempt ended.
type Outcome struct {
	// State is the state the attempt leads to: completed, cancelled,
	// discarded, or available (a retry, a snooze or a shutdown).
	State State
	// Err is the worker's error (nil on success).
	Err error
	// Duration is how long the worker ran.
	Duration time.Duration
	// RunAt is when the job runs again, for a retry or a snooze.
	RunAt time.Time
}

// Config configures a Client. Zero values are the documented defaults.
type Config struct {
	// Schema holds the jobs tables; "" means "justpg". Migrate it with
	// MigrateSchema.
	Schema string
	// Workers holds the worker of each kind; required (Insert refuses kinds
	// that are not registered).
	Workers *Workers
	// Queues are the queues this client works, by name. Nil or empty makes
	// an insert-only client: Start then only runs maintenance if enabled.
	Queues map[string]QueueConfig
	// ID names this client in jobs' attempted_by; "" generates
	// hostname-pid-random.
	ID string
	// PollOnly disables LISTEN/NOTIFY (for poolers in transaction mode): the
	// client finds new jobs by polling every FetchPollInterval.
	PollOnly bool
	// FetchPollInterval is how often each queue is polled in case a
	// notification was missed (or always, with PollOnly); default 1s.
	FetchPollInterval time.Duration
	// FetchCooldown is the least time between the starts of two fetches of
	// a queue while it has a backlog (a fetch that took longer is followed
	// at once by the next); default 1ms.
	FetchCooldown time.Duration
	// JobTimeout bounds each attempt unless its job (InsertOpts.Timeout) or
	// its worker (WorkerOptions.Timeout) sets a timeout; default 1 minute;
	// negative means none.
	JobTimeout time.Duration
	// LeaseDuration is how long a client's jobs stay leased without a
	// heartbeat; the client renews its lease every third of it. After a
	// client dies its running jobs are rescued once the lease expires.
	// Default 30s.
	LeaseDuration time.Duration
	// Maintenance turns on the maintenance this client runs while it is the
	// elected leader: rescue of expired leases, pruning, periodic jobs.
	// Default on; set DisableMaintenance to turn off.
	DisableMaintenance bool
	// RescueInterval is how often the leader looks for expired leases;
	// default LeaseDuration/2.
	RescueInterval time.Duration
	// Retention is how long finished jobs are kept before pruning, per state;
	// zero values default to 24h for completed and cancelled and 7 days for
	// discarded; negative keeps them forever.
	Retention map[State]time.Duration
	// PruneInterval is how often the leader prunes; default 1 minute.
	PruneInterval time.Duration
	// Periodic are jobs the leader inserts on a schedule.
	Periodic []PeriodicJob
	// StopGrace is how long Stop waits, after its context expired and
	// running jobs' contexts were cancelled, for them to return; default 5s.
	// Jobs still running after it are abandoned: the rescuer returns them
	// once this client's lease expires.
	StopGrace time.Duration
	// Hooks observe jobs.
	Hooks Hooks
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
}

// Client inserts jobs and, once started, works its queues.
type Client struct {
	pool      *pgxpool.Pool
	cfg       Config
	id        string
	workers   *Workers
	log       *slog.Logger
	schema    string
	jobsIdent pgx.Identifier
	qJobs     string
	qQueues   string
	qClientsT string
	channel   string // notification channel
	qChannel  string // quoted for LISTEN
	sql       queries

	mu       sync.Mutex
	started  bool
	stopped  bool
	runs     *run
	leader   atomic.Bool
	periodic []*periodicState
}

// run is the state of one Start…Stop cycle.
type run struct {
	ctx       context.Context // background goroutines
	cancel    context.CancelFunc
	fetchCtx  context.Context // fetch loops; cancelled first on Stop
	stopFetch context.CancelFunc

	queues  map[string]*queueRunner
	fetchWG sync.WaitGroup
	jobWG   sync.WaitGroup
	bgWG    sync.WaitGroup

	resMu     sync.RWMutex
	resClosed bool
	results   chan result
	complDone chan struct{}
	complOK   atomic.Bool // every result reached the database

	// running holds the cancel function of every running job's context.
	// Job contexts have no common parent (registering thousands of
	// children with one parent would serialise them on its lock); Stop
	// cancels them through this map, and jobsCause, once set, cancels a job
	// as it registers.
	runningMu sync.Mutex
	running   map[int64]*attempt
	jobsCause error

	// inflight holds every job this client fetched whose outcome is not yet
	// recorded; the orphan sweep resets running jobs of ours not in it.
	inflightMu sync.Mutex
	inflight   map[int64]time.Time // id → attempted_at of the attempt
}

type queueRunner struct {
	name    string
	cfg     QueueConfig
	lockKey int64
	wake    chan struct{}
	active  atomic.Int64
	backlog atomic.Bool
	// Worker goroutines are started on demand (never more than MaxWorkers)
	// and live until Stop, so a job does not pay for a new goroutine and for
	// growing its stack. Idle ones wait in a LIFO stack: the most recently
	// used take the next jobs, so when jobs are short a few goroutines do
	// the work with stacks that are already grown, instead of every
	// goroutine in turn (whose idle stacks the GC shrinks meanwhile).
	idleMu  sync.Mutex
	idle    []*worker
	workers []*worker // every worker; only the fetch loop touches it
}

// worker is one worker goroutine of a queue, fed through its own channel.
type worker struct {
	job chan task
}

// task is a fetched job with its worker and decoded args.
type task struct {
	row   *JobRow
	entry *workerEntry // nil: no worker for the kind in this client
	args  any
	err   error // the args could not be decoded
}

func (q *queueRunner) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// result is one finished attempt, queued for the completer.
type result struct {
	id          int64
	attemptedAt time.Time
	state       State
	undo        int32
	runAt       *time.Time
	err         []byte // JSON AttemptError
}

// New validates cfg and returns a client. It does not connect.
func New(pool *pgxpool.Pool, cfg Config) (*Client, error) {
	if pool == nil {
		return nil, invalid("nil pool")
	}
	if cfg.Workers == nil {
		return nil, invalid("Config.Workers is required")
	}
	if cfg.Schema == "" {
		cfg.Schema = migrate.DefaultSchema
	}
	c := &Client{pool: pool, cfg: cfg, workers: cfg.Workers, schema: cfg.Schema}
	qJobs, err := ident.Quote(cfg.Schema, "jobs")
	if err != nil {
		return nil, fmt.Errorf("%w: schema: %w", ErrInvalidOptions, err)
	}
	c.qJobs, c.jobsIdent = qJobs, pgx.Identifier{cfg.Schema, "jobs"}
	c.qQueues = ident.MustQuote(cfg.Schema, "jobs_queues")
	c.qClientsT = ident.MustQuote(cfg.Schema, "jobs_clients")
	c.channel = cfg.Schema + ".jobs"
	if c.qChannel, err = ident.Quote(c.channel); err != nil {
		return nil, fmt.Errorf("%w: schema name too long for the notification channel: %w", ErrInvalidOptions, err)
	}
	c.sql = buildQueries(qJobs, ident.MustQuote(cfg.Schema, "jobs_clients"), c.qQueues, ident.MustQuote(cfg.Schema, "jobs_leader"))
	for name, qc := range cfg.Queues {
		if err := validQueue(name); err != nil {
			return nil, err
		}
		if qc.MaxWorkers < 1 {
			return nil, invalid("queue %q: MaxWorkers %d must be at least 1", name, qc.MaxWorkers)
		}
		if qc.GlobalLimit < 0 {
			return nil, invalid("queue %q: GlobalLimit %d is negative", name, qc.GlobalLimit)
		}
		if qc.RateLimit < 0 || qc.RatePer < 0 {
			return nil, invalid("queue %q: RateLimit and RatePer must not be negative", name)
		}
		if qc.RateLimit > 0 && qc.RatePer == 0 {
			qc.RatePer = time.Second
			cfg.Queues[name] = qc
		}
	}
	if cfg.ID == "" {
		host, _ := os.Hostname()
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		cfg.ID = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
	}
	c.id = cfg.ID
	defaults := []struct {
		d   *time.Duration
		def time.Duration
	}{
		{&cfg.FetchPollInterval, time.Second},
		{&cfg.FetchCooldown, time.Millisecond},
		{&cfg.JobTimeout, time.Minute},
		{&cfg.LeaseDuration, 30 * time.Second},
		{&cfg.PruneInterval, time.Minute},
		{&cfg.StopGrace, 5 * time.Second},
	}
	for _, d := range defaults {
		if *d.d == 0 {
			*d.d = d.def
		}
	}
	if cfg.FetchPollInterval < 0 || cfg.FetchCooldown < 0 || cfg.LeaseDuration < 0 || cfg.PruneInterval < 0 ||
		cfg.StopGrace < 0 || cfg.RescueInterval < 0 {
		return nil, invalid("durations must not be negative")
	}
	if cfg.LeaseDuration < 300*time.Millisecond {
		return nil, invalid("LeaseDuration %s is shorter than 300ms", cfg.LeaseDuration)
	}
	if cfg.RescueInterval == 0 {
		cfg.RescueInterval = cfg.LeaseDuration / 2
	}
	ret := map[State]time.Duration{StateCompleted: 24 * time.Hour, StateCancelled: 24 * time.Hour, StateDiscarded: 7 * 24 * time.Hour}
	for st, d := range cfg.Retention {
		if st != StateCompleted && st != StateCancelled && st != StateDiscarded {
			return nil, invalid("retention for state %q: only finished states are pruned", st)
		}
		if d != 0 {
			ret[st] = d
		}
	}
	cfg.Retention = ret
	for i := range cfg.Periodic {
		ps, err := c.preparePeriodic(cfg.Periodic[i])
		if err != nil {
			return nil, err
		}
		c.periodic = append(c.periodic, ps)
	}
	c.log = cfg.Logger
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.cfg = cfg
	return c, nil
}

// ID is the client's ID, as stored in attempted_by.
func (c *Client) ID() string { return c.id }

// IsLeader reports whether this client currently holds the maintenance
// leadership.
func (c *Client) IsLeader() bool { return c.leader.Load() }

// Migrate creates or updates the jobs tables in schema "justpg".
func Migrate(ctx context.Context, db DB) error { return MigrateSchema(ctx, db, migrate.DefaultSchema) }

// MigrateSchema creates or updates the jobs tables in schema.
func MigrateSchema(ctx context.Context, db DB, schema string) error {
	return migrate.Apply(ctx, db, schema, "jobs", Migrations())
}

// Start registers the client and starts working its queues, listening for
// new jobs and (as the elected leader) running maintenance. It returns once
// everything is started; ctx bounds only the start-up.
func (c *Client) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return ErrAlreadyStarted
	}
	if _, err := c.pool.Exec(ctx, c.sql.heartbeat, c.id, c.cfg.LeaseDuration.Microseconds()); err != nil {
		return fmt.Errorf("jobs: registering client: %w", err)
	}
	r := &run{results: make(chan result, 8192), complDone: make(chan struct{}),
		queues: map[string]*queueRunner{}, running: map[int64]*attempt{},
		inflight: map[int64]time.Time{}}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.fetchCtx, r.stopFetch = context.WithCancel(r.ctx)
	for name, qc := range c.cfg.Queues {
		r.queues[name] = &queueRunner{name: name, cfg: qc, wake: make(chan struct{}, 1),
			lockKey: advisoryKey("justpg.jobs.queue\x00" + c.schema + "\x00" + name)}
	}
	c.runs, c.started = r, true
	go c.completer(r)
	r.bgWG.Add(1)
	go c.heartbeatLoop(r)
	if len(r.queues) > 0 && !c.cfg.PollOnly {
		r.bgWG.Add(1)
		go c.listenLoop(r)
	}
	if !c.cfg.DisableMaintenance {
		r.bgWG.Add(1)
		go c.maintenanceLoop(r)
	}
	for _, q := range r.queues {
		r.fetchWG.Add(1)
		go c.fetchLoop(r, q)
	}
	return nil
}

// Stop shuts the client down gracefully: it stops fetching, waits for
// running jobs to finish until ctx is done, then cancels the rest (their
// context's cause is ErrShutdown) and puts them back as available without
// counting the attempt, records every outcome, gives up leadership,
// unregisters, and releases every connection it holds. A client cannot be
// started again after Stop.
func (c *Client) Stop(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started || c.stopped {
		return ErrNotStarted
	}
	c.stopped = true
	r := c.runs
	r.stopFetch()
	r.fetchWG.Wait()
	for _, q := range r.queues {
		for _, w := range q.workers {
			close(w.job) // no more fetches: worker goroutines exit once idle
		}
	}

	jobsDone := make(chan struct{})
	go func() { r.jobWG.Wait(); close(jobsDone) }()
	abandoned := false
	select {
	case <-jobsDone:
	case <-ctx.Done():
		r.cancelJobs(ErrShutdown)
		select {
		case <-jobsDone:
		case <-time.After(c.cfg.StopGrace):
			abandoned = true
			c.log.Warn("jobs: abandoning jobs that ignore cancellation; they will be rescued", "client", c.id)
		}
	}
	r.resMu.Lock()
	r.resClosed = true
	close(r.results)
	r.resMu.Unlock()
	// The completer retries until its results are recorded; bound that too.
	var flushErr error
	select {
	case <-r.complDone:
	case <-time.After(c.cfg.StopGrace + untilDone(ctx)):
		flushErr = errors.New("jobs: stop: could not record every job outcome; unrecorded jobs will be rescued")
	}
	r.cancel()
	r.bgWG.Wait()
	r.cancelJobs(ErrShutdown)

	cleanup, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if c.leader.Swap(false) {
		_, _ = c.pool.Exec(cleanup, `DELETE FROM `+ident.MustQuote(c.schema, "jobs_leader")+` WHERE client_id = $1`, c.id)
	}
	if !abandoned && flushErr == nil && r.complOK.Load() {
		// Nothing of ours is running: unregister, so nobody waits for our lease.
		if _, err := c.pool.Exec(cleanup, `DELETE FROM `+ident.MustQuote(c.schema, "jobs_clients")+` WHERE id = $1`, c.id); err != nil {
			c.log.Warn("jobs: unregistering client", "client", c.id, "err", err)
		}
	}
	if flushErr != nil {
		return flushErr
	}
	if abandoned {
		return fmt.Errorf("jobs: stop: %w: some jobs ignored cancellation and were abandoned", ctx.Err())
	}
	return nil
}

func untilDone(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		if left := time.Until(d); left > 0 {
			return left
		}
	}
	return 0
}

func advisoryKey(s string) int64 {
	var h uint64 = 14695981039346656037
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return int64(h)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// fetchLoop fetches jobs of one queue whenever it is woken (notification,
// a finished job while there is a backlog) or the poll interval passes.
func (c *Client) fetchLoop(r *run, q *queueRunner) {
	defer r.fetchWG.Done()
	poll := time.NewTicker(c.cfg.FetchPollInterval)
	defer poll.Stop()
	failures := 0
	for {
		for {
			free := q.cfg.MaxWorkers - int(q.active.Load())
			if free <= 0 {
				q.backlog.Store(true)
				break
			}
			started := time.Now()
			n, err := c.fetch(r, q, free)
			if err != nil {
				if r.fetchCtx.Err() != nil {
					return
				}
				failures++
				c.log.Warn("jobs: fetch failed", "queue", q.name, "err", err)
				if !sleepCtx(r.fetchCtx, backoff(failures)) {
					return
				}
				continue
			}
			failures = 0
			// A globally limited queue that returned jobs may have more
			// waiting for a global slot: look again when one of ours ends.
			q.backlog.Store(n == free || (q.cfg.GlobalLimit > 0 && n > 0))
			if n < free {
				break
			}
			if wait := c.cfg.FetchCooldown - time.Since(started); wait > 0 && !sleepCtx(r.fetchCtx, wait) {
				return
			}
		}
		select {
		case <-r.fetchCtx.Done():
			return
		case <-q.wake:
		case <-poll.C:
		}
	}
}

func backoff(failures int) time.Duration {
	d := 50 * time.Millisecond << min(failures, 6)
	return min(d, 2*time.Second)
}

// fetch locks up to limit jobs of q, marks them running and starts them.
func (c *Client) fetch(r *run, q *queueRunner, limit int) (int, error) {
	var rows []*JobRow
	var err error
	// Bounded so that the orphan sweep's margin (2×lease) is safe.
	ctx, cancel := context.WithTimeout(r.fetchCtx, c.cfg.LeaseDuration)
	defer cancel()
	if q.cfg.GlobalLimit > 0 || q.cfg.RateLimit > 0 {
		// READ COMMITTED whatever the session's default: the count of
		// running jobs and the rate window must be read with a snapshot
		// taken after the lock is granted, not before waiting for it.
		err = pgx.BeginTxFunc(ctx, c.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, q.lockKey); err != nil {
				return err
			}
			lim := limit
			var windowLeft time.Duration
			if q.cfg.RateLimit > 0 {
				var used int
				var leftUS int64
				if err := tx.QueryRow(ctx, c.sql.rateWindow, q.name, q.cfg.RatePer.Microseconds()).Scan(&used, &leftUS); err != nil {
					return err
				}
				windowLeft = time.Duration(leftUS) * time.Microsecond
				lim = min(lim, q.cfg.RateLimit-used)
				if lim <= 0 {
					// Come back when the window ends.
					time.AfterFunc(windowLeft+time.Millisecond, q.poke)
					return nil
				}
			}
			global := q.cfg.GlobalLimit
			if global == 0 {
				global = math.MaxInt32
			}
			res, err := tx.Query(ctx, c.sql.fetchLimited, q.name, lim, c.id, global)
			if err != nil {
				return err
			}
			if rows, err = pgx.CollectRows(res, scanJob); err != nil {
				return err
			}
			if q.cfg.RateLimit > 0 && len(rows) > 0 {
				if _, err := tx.Exec(ctx, c.sql.rateCount, q.name, len(rows)); err != nil {
					return err
				}
				if len(rows) == lim && lim < limit {
					time.AfterFunc(windowLeft+time.Millisecond, q.poke)
				}
			}
			return nil
		})
	} else {
		err = pgdb.Retry(ctx, c.pool, func() error {
			res, err := c.pool.Query(ctx, c.sql.fetch, q.name, limit, c.id)
			if err == nil {
				rows, err = pgx.CollectRows(res, scanJob)
			}
			return err
		})
	}
	if err != nil {
		// If the fetch committed but its answer was lost, those jobs are
		// running under our live lease with nobody working them; the orphan
		// sweep puts them back after 2×LeaseDuration.
		return 0, err
	}
	r.inflightMu.Lock()
	for _, row := range rows {
		r.inflight[row.ID] = *row.AttemptedAt
	}
	r.inflightMu.Unlock()
	for _, row := range rows {
		t := task{row: row, entry: c.workers.get(row.Kind)}
		if t.entry != nil {
			t.args, t.err = t.entry.decodeArgs(row)
		}
		q.active.Add(1)
		r.jobWG.Add(1)
		// A worker is idle again before its job stops counting as active,
		// so when none is idle every worker holds an active job and there
		// are fewer than MaxWorkers of them: starting one keeps the bound.
		var w *worker
		q.idleMu.Lock()
		if n := len(q.idle); n > 0 {
			w, q.idle = q.idle[n-1], q.idle[:n-1]
		}
		q.idleMu.Unlock()
		if w == nil {
			w = &worker{job: make(chan task, 1)}
			q.workers = append(q.workers, w)
			go c.workLoop(r, q, w)
		}
		w.job <- t
	}
	return len(rows), nil
}

// workLoop is one worker goroutine of a queue.
func (c *Client) workLoop(r *run, q *queueRunner, w *worker) {
	for t := range w.job {
		c.execute(r, q, t)
		q.idleMu.Lock()
		q.idle = append(q.idle, w)
		q.idleMu.Unlock()
		q.active.Add(-1)
		if q.backlog.Load() {
			q.poke()
		}
		r.jobWG.Done()
	}
}

// attempt is a running job's entry in run.running; entries are compared by
// pointer, so an attempt removes only its own.
type attempt struct{ cancel context.CancelCauseFunc }

// execute runs one job and queues its outcome.
func (c *Client) execute(r *run, q *queueRunner, t task) {
	row, entry := t.row, t.entry
	timeout := c.cfg.JobTimeout
	if entry != nil && entry.opts.Timeout != 0 {
		timeout = entry.opts.Timeout
	}
	if row.Timeout != 0 {
		timeout = row.Timeout // the job's own timeout wins
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	if timeout > 0 {
		var cancelT context.CancelFunc
		ctx, cancelT = context.WithTimeoutCause(ctx, timeout, ErrTimeout)
		defer cancelT()
	}
	a := &attempt{cancel: cancel}
	r.runningMu.Lock()
	r.running[row.ID] = a
	if r.jobsCause != nil {
		cancel(r.jobsCause)
	}
	r.runningMu.Unlock()
	defer func() {
		// Only this attempt's entry: once its outcome is queued, the job
		// may be fetched and started again before this runs.
		r.runningMu.Lock()
		if r.running[row.ID] == a {
			delete(r.running, row.ID)
		}
		r.runningMu.Unlock()
	}()

	if h := c.cfg.Hooks.OnStart; h != nil {
		h(ctx, row)
	}
	start := time.Now()
	var err error
	var trace string
	switch {
	case entry == nil:
		err = fmt.Errorf("%w %q in client %s", ErrUnknownKind, row.Kind, c.id)
	case t.err != nil:
		err = t.err
	default:
		trace, err = runProtected(ctx, entry, row, t.args)
	}
	out := Outcome{Duration: time.Since(start), Err: err}
	res := result{id: row.ID, attemptedAt: *row.AttemptedAt}
	var cerr *cancelError
	var serr *snoozeError
	var derr *decodeError
	cause := context.Cause(ctx)
	switch {
	case err == nil:
		out.State = StateCompleted
	case errors.As(err, &serr):
		out.State, out.Err = StateAvailable, nil
		out.RunAt = time.Now().Add(serr.d)
		res.undo = 1
	case errors.As(err, &cerr), errors.As(err, &derr):
		out.State = StateCancelled
		if derr != nil && cerr == nil {
			out.State = StateDiscarded
		}
	case errors.Is(cause, ErrShutdown):
		// Put back for another client; the attempt does not count.
		out.State, out.RunAt = StateAvailable, time.Now()
		res.undo = 1
	case errors.Is(cause, ErrCancelRequested):
		out.State = StateCancelled
	case row.Attempt >= row.MaxAttempts:
		out.State = StateDiscarded
	default:
		out.State = StateAvailable
		next := DefaultRetryPolicy
		if entry != nil && entry.opts.NextRetry != nil {
			next = entry.opts.NextRetry
		}
		out.RunAt = next(row)
	}
	if err != nil && errors.Is(cause, ErrTimeout) && !errors.Is(err, ErrTimeout) {
		err = fmt.Errorf("%w: %w", ErrTimeout, err)
		out.Err = err
	}
	res.state = out.State
	if !out.RunAt.IsZero() {
		t := out.RunAt
		res.runAt = &t
		// A retry due before the next poll wakes the queue itself.
		if wait := time.Until(t); wait < c.cfg.FetchPollInterval {
			time.AfterFunc(max(wait, 0)+time.Millisecond, q.poke)
		}
	}
	if err != nil && serr == nil {
		msg := err.Error()
		if errors.Is(cause, ErrShutdown) {
			msg = "jobs: interrupted by shutdown (attempt not counted): " + msg
		}
		// jsonb cannot hold a NUL character, and one unstorable message
		// must not fail the recording of the outcomes batched with it.
		nul := strings.NewReplacer("\x00", "\uFFFD")
		res.err, _ = json.Marshal(AttemptError{Attempt: row.Attempt, At: time.Now().UTC(), Error: nul.Replace(msg), Trace: nul.Replace(trace)})
	}
	if h := c.cfg.Hooks.OnFinish; h != nil {
		h(ctx, row, out)
	}
	if out.State != StateCompleted {
		c.log.Debug("jobs: attempt finished", "id", row.ID, "kind", row.Kind, "state", out.State, "err", out.Err)
	}
	r.resMu.RLock()
	defer r.resMu.RUnlock()
	if !r.resClosed {
		r.results <- res
	}
}

// runProtected runs the worker, turning a panic into an error with its stack.
func runProtected(ctx context.Context, e *workerEntry, row *JobRow, args any) (trace string, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%w: %v", ErrPanic, p)
			trace = string(debug.Stack())
		}
	}()
	return "", e.run(ctx, row, args)
}

// completer records outcomes in batches: everything that arrived while the
// previous statement ran goes into the next one.
func (c *Client) completer(r *run) {
	defer close(r.complDone)
	r.complOK.Store(true)
	const maxBatch = 5000
	batch := make([]result, 0, maxBatch)
	for first := range r.results {
		batch = append(batch[:0], first)
	drain:
		for len(batch) < maxBatch {
			select {
			case res, ok := <-r.results:
				if !ok {
					break drain
				}
				batch = append(batch, res)
			default:
				break drain
			}
		}
		if !c.flush(r, batch) {
			r.complOK.Store(false)
		}
	}
}

// flush writes one batch, retrying through connection failures. The
// statement is idempotent (the lease token no longer matches once applied),
// so a retry after a lost answer cannot record an outcome twice.
func (c *Client) flush(r *run, batch []result) bool {
	n := len(batch)
	ids := make([]int64, n)
	ats := make([]time.Time, n)
	states := make([]string, n)
	undo := make([]int32, n)
	runAt := make([]*time.Time, n)
	errs := make([]*string, n)
	allCompleted := true
	for i, b := range batch {
		allCompleted = allCompleted && b.state == StateCompleted
		ids[i], ats[i], states[i], undo[i], runAt[i] = b.id, b.attemptedAt, string(b.state), b.undo, b.runAt
		if b.err != nil {
			s := string(b.err)
			errs[i] = &s
		}
	}
	for failures := 0; ; failures++ {
		// The completer outlives Stop's fetch phase; it gives up only when
		// the run's background context ends (Stop's deadline).
		ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
		err := pgdb.Retry(ctx, c.pool, func() (err error) {
			if allCompleted {
				_, err = c.pool.Exec(ctx, c.sql.completeOnly, ids, ats)
			} else {
				_, err = c.pool.Exec(ctx, c.sql.complete, ids, ats, states, undo, runAt, errs)
			}
			return err
		})
		cancel()
		if err == nil {
			r.inflightMu.Lock()
			for i, id := range ids {
				// Only this attempt's entry: the job may already have
				// been fetched again (a snooze or retry due at once).
				if at, ok := r.inflight[id]; ok && at.Equal(ats[i]) {
					delete(r.inflight, id)
				}
			}
			r.inflightMu.Unlock()
			return true
		}
		if r.ctx.Err() != nil {
			c.log.Error("jobs: giving up recording outcomes; the jobs will be rescued", "count", n, "err", err)
			return false
		}
		c.log.Warn("jobs: recording outcomes failed; retrying", "count", n, "err", err)
		if !sleepCtx(r.ctx, backoff(failures)) {
			return false
		}
	}
}

// heartbeatLoop renews the client's lease.
func (c *Client) heartbeatLoop(r *run) {
	defer r.bgWG.Done()
	every := c.cfg.LeaseDuration / 3
	for sleepCtx(r.ctx, every) {
		ctx, cancel := context.WithTimeout(r.ctx, every)
		_, err := c.pool.Exec(ctx, c.sql.heartbeat, c.id, c.cfg.LeaseDuration.Microseconds())
		if err == nil && len(r.queues) > 0 {
			err = c.sweepOrphans(ctx, r)
		}
		if err == nil && len(r.queues) > 0 {
			err = c.pollCancels(ctx, r)
		}
		cancel()
		if err != nil && r.ctx.Err() == nil {
			c.log.Warn("jobs: heartbeat failed", "client", c.id, "err", err)
		}
	}
}

// pollCancels cancels running jobs of ours whose cancellation was requested:
// the fallback for a notification that was missed (listener reconnecting) or
// never sent to us (PollOnly).
func (c *Client) pollCancels(ctx context.Context, r *run) error {
	rows, err := c.pool.Query(ctx, c.sql.cancelled, c.id)
	if err != nil {
		return err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return err
	}
	r.runningMu.Lock()
	defer r.runningMu.Unlock()
	for _, id := range ids {
		if a := r.running[id]; a != nil {
			a.cancel(ErrCancelRequested)
		}
	}
	return nil
}

// sweepOrphans puts back jobs marked running by this client that it does not
// know about: a fetch that committed but whose answer was lost (connection
// killed at the wrong moment). Only jobs fetched more than 2×LeaseDuration
// ago are considered, and every fetch gives up after LeaseDuration, so a
// fetch whose answer is still on its way is never swept.
func (c *Client) sweepOrphans(ctx context.Context, r *run) error {
	r.inflightMu.Lock()
	known := make([]int64, 0, len(r.inflight))
	for id := range r.inflight {
		known = append(known, id)
	}
	r.inflightMu.Unlock()
	tag, err := c.pool.Exec(ctx, c.sql.sweep, c.id, (2 * c.cfg.LeaseDuration).Microseconds(), known)
	if err == nil && tag.RowsAffected() > 0 {
		c.log.Warn("jobs: put back jobs whose fetch answer was lost", "count", tag.RowsAffected())
		for _, q := range r.queues {
			q.poke()
		}
	}
	return err
}

// listenLoop holds one connection listening for inserts, cancellations and
// queue changes, reconnecting after failures. After every (re)connection
// all queues are woken, since notifications sent meanwhile are lost.
func (c *Client) listenLoop(r *run) {
	defer r.bgWG.Done()
	failures := 0
	for r.ctx.Err() == nil {
		err := c.listenOnce(r, &failures)
		if r.ctx.Err() != nil {
			return
		}
		failures++
		c.log.Warn("jobs: listener failed; reconnecting", "err", err)
		if !sleepCtx(r.ctx, backoff(failures)) {
			return
		}
	}
}

func (c *Client) listenOnce(r *run, failures *int) error {
	conn, err := c.pool.Acquire(r.ctx)
	if err != nil {
		return err
	}
	// A LISTENing session must not go back to the pool. It sits idle, so
	// its idle_session_timeout (PostgreSQL 14+), if the role or database
	// sets one, is turned off: the server would end it every so often.
	pc := conn.Hijack()
	defer pc.Close(context.Background())
	if _, err := pc.Exec(r.ctx, "LISTEN "+c.qChannel+`; SELECT pg_catalog.set_config(name, '0', false)
		FROM pg_catalog.pg_settings WHERE name = 'idle_session_timeout' AND setting <> '0'`); err != nil {
		return err
	}
	*failures = 0
	for _, q := range r.queues {
		q.poke()
	}
	for {
		n, err := pc.WaitForNotification(r.ctx)
		if err != nil {
			return err
		}
		kind, arg, ok := strings.Cut(n.Payload, ":")
		if !ok {
			continue
		}
		switch kind {
		case "i", "p":
			if q := r.queues[arg]; q != nil {
				q.poke()
			}
		case "c":
			id, err := strconv.ParseInt(arg, 10, 64)
			if err != nil {
				continue
			}
			r.runningMu.Lock()
			a := r.running[id]
			r.runningMu.Unlock()
			if a != nil {
				a.cancel(ErrCancelRequested)
			}
		}
	}
}

// Migrations returns the jobs migration files, for teams that apply
// migrations with their own tool.
func Migrations() fs.FS {
	return migrate.Sub(migrationsFS, "migrations")
}

// cancelJobs cancels the context of every running job, and of every job
// that starts afterwards, with cause.
func (r *run) cancelJobs(cause error) {
	r.runningMu.Lock()
	defer r.runningMu.Unlock()
	if r.jobsCause == nil {
		r.jobsCause = cause
	}
	for _, a := range r.running {
		a.cancel(r.jobsCause)
	}
}
