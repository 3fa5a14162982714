package jobs

import (
	"errors"
	"fmt"
	"time"
)

// Errors callers branch on with errors.Is.
var (
	// ErrUnknownKind means no worker is registered for a job's kind.
	ErrUnknownKind = errors.New("jobs: no worker registered for kind")
	// ErrInvalidOptions means an insert option or a Config field is invalid.
	ErrInvalidOptions = errors.New("jobs: invalid options")
	// ErrNotFound means no job has the given ID (or it is not visible).
	ErrNotFound = errors.New("jobs: job not found")
	// ErrTimeout is the cause of a job's context when its timeout expires.
	ErrTimeout = errors.New("jobs: job timed out")
	// ErrCancelRequested is the cause of a running job's context when
	// CancelJob was called for it.
	ErrCancelRequested = errors.New("jobs: job cancelled")
	// ErrShutdown is the cause of a running job's context when Stop's
	// deadline expired before the job finished.
	ErrShutdown = errors.New("jobs: client shutting down")
	// ErrNotStarted is returned by Stop on a client that was not started.
	ErrNotStarted = errors.New("jobs: client not started")
	// ErrAlreadyStarted is returned by Start on a running client.
	ErrAlreadyStarted = errors.New("jobs: client already started")
	// ErrPanic is wrapped by the error recorded for an attempt that panicked.
	ErrPanic = errors.New("jobs: worker panicked")
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOptions}, args...)...)
}

// cancelError is returned through Cancel.
type cancelError struct{ err error }

func (e *cancelError) Error() string {
	if e.err == nil {
		return "jobs: job cancelled by its worker"
	}
	return "jobs: job cancelled by its worker: " + e.err.Error()
}
func (e *cancelError) Unwrap() error { return e.err }

// snoozeError is returned through Snooze.
type snoozeError struct{ d time.Duration }

func (e *snoozeError) Error() string { return fmt.Sprintf("jobs: job snoozed for %s", e.d) }

// Cancel, returned by a worker (possibly wrapped), ends the job as
// cancelled: it is not retried. err, which may be nil, is recorded.
func Cancel(err error) error { return &cancelError{err: err} }

// Snooze, returned by a worker, puts the job back to run again after d
// without counting the attempt. d must not be negative.
func Snooze(d time.Duration) error {
	if d < 0 {
		d = 0
	}
	return &snoozeError{d: d}
}
