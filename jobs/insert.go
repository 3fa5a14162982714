package jobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/justpg/justpg/internal/pgdb"
	"github.com/justpg/justpg/internal/pgtext"
)

// DefaultQueue is the queue of jobs inserted without one.
const DefaultQueue = "default"

// DefaultMaxAttempts is the attempts a job gets when InsertOpts.MaxAttempts
// is zero.
const DefaultMaxAttempts = 25

// InsertOpts are the options of one job. The zero value is valid.
type InsertOpts struct {
	// Queue is the queue the job goes to; "" means DefaultQueue.
	Queue string
	// Priority orders jobs of a queue: lower runs first, 0 (the default) is
	// the highest; at most 32767.
	Priority int
	// ScheduledAt delays the job; zero means now.
	ScheduledAt time.Time
	// MaxAttempts is how many attempts the job gets before it is discarded;
	// 0 means DefaultMaxAttempts.
	MaxAttempts int
	// Tags label the job (for listing and observability).
	Tags []string
	// Metadata is stored with the job as a JSON object.
	Metadata map[string]any
	// Unique, when set, makes the insert a no-op while another job holds the
	// same unique key (see UniqueOpts).
	Unique *UniqueOpts
	// Timeout bounds each attempt of this job with a context deadline
	// (cause ErrTimeout), overriding WorkerOptions.Timeout and
	// Config.JobTimeout. Zero uses those; negative means no timeout. It is
	// stored with the job (to the microsecond), so it holds in whichever
	// process runs the job.
	Timeout time.Duration
}

// UniqueOpts define a unique job's key. The key always includes the kind;
// the fields add to it. A job holds its key while it is available or running
// (including waiting for a retry); a completed job keeps holding it only when
// ByPeriod is set (so each period runs at most once); a cancelled or
// discarded job releases it. The database enforces the key with a unique
// index, so concurrent inserters cannot both win.
type UniqueOpts struct {
	// ByArgs adds the encoded args to the key.
	ByArgs bool
	// ByQueue adds the queue to the key.
	ByQueue bool
	// ByPeriod adds the period (ScheduledAt, or now, truncated to ByPeriod)
	// to the key.
	ByPeriod time.Duration
	// Key adds a caller's own string to the key.
	Key string
}

// InsertParams is one job of InsertMany.
type InsertParams struct {
	Args JobArgs
	Opts *InsertOpts
}

// InsertResult is the outcome of Insert.
type InsertResult struct {
	// Job is the inserted job, or the existing job that holds the unique key
	// when Skipped.
	Job *JobRow
	// Skipped reports that a unique job was not inserted because another
	// job holds its key.
	Skipped bool
}

// prepared is one validated job ready to be written.
type prepared struct {
	kind        string
	queue       string
	priority    int16
	args        []byte
	metadata    []byte
	tags        []string
	maxAttempts int32
	scheduledAt *time.Time
	uniqueKey   *string
	uniqueKeep  bool
	timeoutUS   *int64
}

func (c *Client) prepare(args JobArgs, opts *InsertOpts) (*prepared, error) {
	if args == nil {
		return nil, invalid("nil args")
	}
	kind := args.Kind()
	if c.workers.get(kind) == nil {
		return nil, fmt.Errorf("%w %q (register it with AddWorker)", ErrUnknownKind, kind)
	}
	var o InsertOpts
	if d, ok := args.(ArgsWithInsertOpts); ok {
		o = d.InsertOpts()
	}
	if opts != nil {
		o = mergeOpts(o, *opts)
	}
	if o.Queue == "" {
		o.Queue = DefaultQueue
	}
	if err := validQueue(o.Queue); err != nil {
		return nil, err
	}
	if o.Priority < 0 || o.Priority > math.MaxInt16 {
		return nil, invalid("priority %d is out of range 0..%d", o.Priority, math.MaxInt16)
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.MaxAttempts < 1 || o.MaxAttempts > math.MaxInt32 {
		return nil, invalid("max attempts %d must be at least 1", o.MaxAttempts)
	}
	enc, err := json.Marshal(args)
	if err != nil {
		return nil, fmt.Errorf("%w: encoding args of kind %q: %w", ErrInvalidOptions, kind, err)
	}
	if pgtext.JSONHasNUL(enc) {
		return nil, invalid("args of kind %q contain a NUL character, which PostgreSQL cannot store", kind)
	}
	for _, t := range o.Tags {
		if err := validText("tag", t); err != nil {
			return nil, err
		}
	}
	p := &prepared{kind: kind, queue: o.Queue, priority: int16(o.Priority), args: enc,
		maxAttempts: int32(o.MaxAttempts), tags: o.Tags, metadata: []byte("{}")}
	if p.tags == nil {
		p.tags = []string{}
	}
	if o.Metadata != nil {
		if p.metadata, err = json.Marshal(o.Metadata); err != nil {
			return nil, fmt.Errorf("%w: encoding metadata: %w", ErrInvalidOptions, err)
		}
		if pgtext.JSONHasNUL(p.metadata) {
			return nil, invalid("metadata contains a NUL character, which PostgreSQL cannot store")
		}
	}
	if !o.ScheduledAt.IsZero() {
		t := o.ScheduledAt
		p.scheduledAt = &t
	}
	if o.Timeout != 0 {
		us := int64(-1)
		if o.Timeout > 0 {
			us = max(o.Timeout.Microseconds(), 1)
		}
		p.timeoutUS = &us
	}
	if u := o.Unique; u != nil {
		if u.ByPeriod < 0 {
			return nil, invalid("unique period %s is negative", u.ByPeriod)
		}
		h := sha256.New()
		fmt.Fprintf(h, "kind\x00%s\x00", kind)
		if u.ByQueue {
			fmt.Fprintf(h, "queue\x00%s\x00", o.Queue)
		}
		if u.ByArgs {
			fmt.Fprintf(h, "args\x00%s\x00", canonicalJSON(enc))
		}
		if u.ByPeriod > 0 {
			at := o.ScheduledAt
			if at.IsZero() {
				at = time.Now()
			}
			fmt.Fprintf(h, "period\x00%d\x00%d\x00", int64(u.ByPeriod), at.Truncate(u.ByPeriod).Unix())
			p.uniqueKeep = true
		}
		if u.Key != "" {
			fmt.Fprintf(h, "key\x00%s\x00", u.Key)
		}
		key := kind + ":" + hex.EncodeToString(h.Sum(nil))[:40]
		p.uniqueKey = &key
	}
	return p, nil
}

// canonicalJSON re-encodes JSON with sorted object keys so that equal args
// give equal unique keys whatever the field order of their encoding.
// Numbers keep their literal text (json.Number), so integers beyond 2^53
// stay distinct.
func canonicalJSON(b []byte) []byte {
	var v any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return b
	}
	out, err := json.Marshal(v) // maps marshal with sorted keys
	if err != nil {
		return b
	}
	return out
}

func mergeOpts(base, o InsertOpts) InsertOpts {
	if o.Queue != "" {
		base.Queue = o.Queue
	}
	if o.Priority != 0 {
		base.Priority = o.Priority
	}
	if !o.ScheduledAt.IsZero() {
		base.ScheduledAt = o.ScheduledAt
	}
	if o.MaxAttempts != 0 {
		base.MaxAttempts = o.MaxAttempts
	}
	if o.Tags != nil {
		base.Tags = o.Tags
	}
	if o.Metadata != nil {
		base.Metadata = o.Metadata
	}
	if o.Unique != nil {
		base.Unique = o.Unique
	}
	if o.Timeout != 0 {
		base.Timeout = o.Timeout
	}
	return base
}

func validQueue(q string) error {
	if q == "" {
		return invalid("empty queue name")
	}
	if len(q) > 128 {
		return invalid("queue name %.20q… is longer than 128 bytes", q)
	}
	if err := pgtext.Check(q); err != nil {
		return invalid("queue name %q %v", q, err)
	}
	for _, r := range q {
		if r < 0x20 || r == 0x7f {
			return invalid("queue name %q contains a control character", q)
		}
	}
	return nil
}

// validText refuses text that PostgreSQL cannot store.
func validText(what, s string) error {
	if err := pgtext.Check(s); err != nil {
		return invalid("%s %q %v", what, s, err)
	}
	return nil
}

// Insert adds one job. Pass the caller's transaction as db to make the job
// part of it: a rollback leaves no job, a commit makes it visible and wakes
// the workers of its queue. For a unique job whose key is held, nothing is
// inserted and the result reports Skipped with the holder.
func (c *Client) Insert(ctx context.Context, db DB, args JobArgs, opts *InsertOpts) (*InsertResult, error) {
	p, err := c.prepare(args, opts)
	if err != nil {
		return nil, err
	}
	return c.insertPrepared(ctx, db, p)
}

func (c *Client) insertPrepared(ctx context.Context, db DB, p *prepared) (*InsertResult, error) {
	for range 5 {
		// The JSON as strings: pgx sends a []byte as bytea when it does not
		// ask for the parameter types (its exec and simple-protocol modes).
		// On its own, under REPEATABLE READ or SERIALIZABLE, the insert
		// fails with a serialization failure when the unique key's holder
		// committed after its snapshot; it is retried with a new one.
		var job *JobRow
		err := pgdb.Retry(ctx, db, func() error {
			rows, err := db.Query(ctx, c.sql.insert, p.kind, p.queue, p.priority, string(p.args), string(p.metadata), p.tags,
				p.maxAttempts, p.scheduledAt, p.uniqueKey, p.uniqueKeep, p.timeoutUS, c.channel)
			if err != nil {
				return err
			}
			job, err = collectOne(rows)
			return err
		})
		if err == nil {
			return &InsertResult{Job: job}, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) || p.uniqueKey == nil {
			return nil, fmt.Errorf("jobs: insert: %w", err)
		}
		// A unique job holds the key: return it. It may have released the
		// key in between, in which case the insert is tried again.
		rows, err := db.Query(ctx, c.sql.selectUnique, *p.uniqueKey)
		if err != nil {
			return nil, fmt.Errorf("jobs: insert: reading the unique job: %w", err)
		}
		job, err = collectOne(rows)
		if err == nil {
			return &InsertResult{Job: job, Skipped: true}, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("jobs: insert: reading the unique job: %w", err)
		}
	}
	return nil, fmt.Errorf("jobs: insert: unique key of kind %q kept changing hands", p.kind)
}

// InsertMany adds many jobs in one transaction (a savepoint when db is a
// transaction) and returns how many were inserted. Jobs without a unique key
// are written with COPY; when any job is unique, all are written with one
// INSERT … ON CONFLICT DO NOTHING and unique jobs whose key is held are
// skipped (not counted).
func (c *Client) InsertMany(ctx context.Context, db DB, params []InsertParams) (int, error) {
	if len(params) == 0 {
		return 0, nil
	}
	ps := make([]*prepared, len(params))
	anyUnique := false
	for i, ip := range params {
		p, err := c.prepare(ip.Args, ip.Opts)
		if err != nil {
			return 0, fmt.Errorf("job %d: %w", i, err)
		}
		ps[i] = p
		anyUnique = anyUnique || p.uniqueKey != nil
	}
	queues := map[string]bool{}
	now := time.Now()
	for _, p := range ps {
		if p.scheduledAt == nil || !p.scheduledAt.After(now) {
			queues[p.queue] = true
		}
	}
	wake := make([]string, 0, len(queues))
	for q := range queues {
		wake = append(wake, "i:"+q)
	}
	var n int
	err := pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		var err error
		if anyUnique {
			n, err = c.insertUnnest(ctx, tx, ps)
		} else {
			n, err = c.insertCopy(ctx, tx, ps)
		}
		if err != nil {
			return err
		}
		if len(wake) > 0 {
			if _, err := tx.Exec(ctx, `SELECT pg_catalog.pg_notify($1, w) FROM pg_catalog.unnest($2::text[]) AS w`, c.channel, wake); err != nil {
				return fmt.Errorf("jobs: insert many: notify: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

var copyCols = []string{"kind", "queue", "priority", "args", "metadata", "tags", "max_attempts", "timeout_us"}

func (c *Client) insertCopy(ctx context.Context, tx pgx.Tx, ps []*prepared) (int, error) {
	// Jobs without ScheduledAt take the server's now() (the column default);
	// the others are copied separately with their time.
	var now, later []*prepared
	for _, p := range ps {
		if p.scheduledAt == nil {
			now = append(now, p)
		} else {
			later = append(later, p)
		}
	}
	total := 0
	for _, group := range [][]*prepared{now, later} {
		if len(group) == 0 {
			continue
		}
		cols := copyCols
		withTime := group[0].scheduledAt != nil
		if withTime {
			cols = append(append([]string{}, copyCols...), "scheduled_at")
		}
		i := 0
		src := pgx.CopyFromFunc(func() ([]any, error) {
			if i == len(group) {
				return nil, nil
			}
			p := group[i]
			i++
			row := []any{p.kind, p.queue, p.priority, string(p.args), string(p.metadata), p.tags, p.maxAttempts, p.timeoutUS}
			if withTime {
				row = append(row, *p.scheduledAt)
			}
			return row, nil
		})
		n, err := tx.CopyFrom(ctx, c.jobsIdent, cols, src)
		if err != nil {
			return 0, fmt.Errorf("jobs: insert many: copy: %w", err)
		}
		total += int(n)
	}
	return total, nil
}

func (c *Client) insertUnnest(ctx context.Context, tx pgx.Tx, ps []*prepared) (int, error) {
	n := len(ps)
	kinds, queues := make([]string, n), make([]string, n)
	prios := make([]int16, n)
	args, metas := make([]string, n), make([]string, n)
	tags := make([]string, n) // text[] per job, passed as a JSON array
	maxAtt := make([]int32, n)
	sched := make([]*time.Time, n)
	keys := make([]*string, n)
	keeps := make([]bool, n)
	timeouts := make([]*int64, n)
	for i, p := range ps {
		timeouts[i] = p.timeoutUS
		kinds[i], queues[i], prios[i] = p.kind, p.queue, p.priority
		args[i], metas[i] = string(p.args), string(p.metadata)
		tb, _ := json.Marshal(p.tags)
		tags[i] = string(tb)
		maxAtt[i], sched[i], keys[i], keeps[i] = p.maxAttempts, p.scheduledAt, p.uniqueKey, p.uniqueKeep
	}
	tag, err := tx.Exec(ctx, c.sql.insertMany, kinds, queues, prios, args, metas, tags, maxAtt, sched, keys, keeps, timeouts)
	if err != nil {
		return 0, fmt.Errorf("jobs: insert many: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
