package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"time"
)

// WorkFunc does one job. Returning nil completes it; returning an error
// schedules a retry (or discards the job after its last attempt); returning
// Cancel(err) or Snooze(d) (possibly wrapped) cancels or snoozes it. A panic
// is recovered and treated as an error with its stack.
type WorkFunc[T JobArgs] func(ctx context.Context, job *Job[T]) error

// WorkerOptions tune one kind's worker. Zero values use the Client's
// defaults.
type WorkerOptions struct {
	// Timeout bounds each attempt with a context deadline, unless the job
	// has its own (InsertOpts.Timeout). Zero uses Config.JobTimeout;
	// negative means no timeout.
	Timeout time.Duration
	// NextRetry returns when a failed attempt is retried. Nil uses
	// DefaultRetryPolicy.
	NextRetry func(job *JobRow) time.Time
}

// DefaultRetryPolicy retries after attempt⁴ seconds (1s, 16s, 81s, 4m16s…,
// capped at 24h) with ±10% jitter, so that many failures at once do not all
// come back at the same moment.
func DefaultRetryPolicy(job *JobRow) time.Time {
	n := float64(max(job.Attempt, 1))
	d := time.Duration(math.Min(math.Pow(n, 4), 86400) * float64(time.Second))
	jitter := time.Duration((rand.Float64()*0.2 - 0.1) * float64(d))
	return time.Now().Add(d + jitter)
}

// Workers holds the worker of each kind of job. Every client that inserts
// jobs needs the kinds registered (Insert refuses unknown kinds), so build one
// Workers in code shared by the processes that insert and that work.
type Workers struct {
	mu   sync.RWMutex
	byKd map[string]*workerEntry
}

type workerEntry struct {
	kind string
	opts WorkerOptions
	// decode decodes a job's args; a payload that cannot be decoded is
	// reported as a *decodeError (the job is discarded). The fetch loop
	// decodes, so that the worker goroutines do not grow their stacks for
	// it (and have them shrunk again by the GC while idle), job after job.
	decode func(row *JobRow) (any, error)
	// run calls the typed function with the decoded args.
	run func(ctx context.Context, row *JobRow, args any) error
}

// decodeArgs decodes a job's args, turning a panic (in a caller's
// UnmarshalJSON) into a *decodeError.
func (e *workerEntry) decodeArgs(row *JobRow) (args any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = &decodeError{fmt.Errorf("jobs: decoding args of kind %q panicked: %v", e.kind, p)}
		}
	}()
	return e.decode(row)
}

// NewWorkers returns an empty registry.
func NewWorkers() *Workers { return &Workers{byKd: map[string]*workerEntry{}} }

// AddWorker registers fn as the worker of T's kind. It panics when the kind
// is empty or already registered: both are programming errors found at
// start-up.
func AddWorker[T JobArgs](w *Workers, fn WorkFunc[T], opts ...WorkerOptions) {
	kind, err := kindOf[T]()
	if err != nil {
		panic(err)
	}
	if fn == nil {
		panic(fmt.Sprintf("jobs: nil worker for kind %q", kind))
	}
	var o WorkerOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	e := &workerEntry{kind: kind, opts: o}
	e.decode = func(row *JobRow) (any, error) {
		var args T
		if err := json.Unmarshal(row.EncodedArgs, &args); err != nil {
			return nil, &decodeError{fmt.Errorf("jobs: decoding args of kind %q: %w", kind, err)}
		}
		return args, nil
	}
	e.run = func(ctx context.Context, row *JobRow, args any) error {
		return fn(ctx, &Job[T]{JobRow: row, Args: args.(T)})
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, dup := w.byKd[kind]; dup {
		panic(fmt.Sprintf("jobs: a worker for kind %q is already registered", kind))
	}
	w.byKd[kind] = e
}

func kindOf[T JobArgs]() (kind string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("jobs: Kind() of %T panicked on the zero value (implement it on the value receiver): %v", *new(T), r)
		}
	}()
	var zero T
	kind = zero.Kind()
	if kind == "" {
		return "", fmt.Errorf("jobs: %T has an empty Kind()", zero)
	}
	return kind, nil
}

func (w *Workers) get(kind string) *workerEntry {
	if w == nil {
		return nil
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.byKd[kind]
}

// Kinds lists the registered kinds, sorted.
func (w *Workers) Kinds() []string {
	w.mu.RLock()
	defer w.mu.RUnlock()
	out := make([]string, 0, len(w.byKd))
	for k := range w.byKd {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// decodeError reports args that cannot be decoded into the worker's type.
type decodeError struct{ err error }

func (e *decodeError) Error() string { return e.err.Error() }
func (e *decodeError) Unwrap() error { return e.err }
