package jobs

import (
	"encoding/json"
	"time"

	"github.com/justpg/justpg/internal/pgdb"
)

// DB runs statements: a *pgxpool.Pool, a *pgxpool.Conn, a *pgx.Conn or a
// pgx.Tx. Insert and the admin operations take one, so a job can be enqueued
// in the same transaction as the business write it belongs to.
type DB = pgdb.DB

// JobArgs is implemented by the argument type of a kind of job. Kind names
// the kind; it must be a constant of the type (it is called on the zero
// value), so implement it on the value receiver. Args are stored as JSON
// (encoding/json).
type JobArgs interface {
	Kind() string
}

// ArgsWithInsertOpts is implemented by argument types that give default
// insert options for their kind (for example a queue). Options passed to
// Insert override them field by field.
type ArgsWithInsertOpts interface {
	JobArgs
	InsertOpts() InsertOpts
}

// State is the state of a job.
type State string

// The states of a job. A job waiting for a retry or scheduled for later is
// available with scheduled_at in the future.
const (
	StateAvailable State = "available"
	StateRunning   State = "running"
	StateCompleted State = "completed"
	StateCancelled State = "cancelled"
	StateDiscarded State = "discarded"
)

func (s State) valid() bool {
	switch s {
	case StateAvailable, StateRunning, StateCompleted, StateCancelled, StateDiscarded:
		return true
	}
	return false
}

// AttemptError is the error of one failed attempt, kept on the job.
type AttemptError struct {
	Attempt int       `json:"attempt"`
	At      time.Time `json:"at"`
	Error   string    `json:"error"`
	// Trace is the goroutine stack when the attempt panicked.
	Trace string `json:"trace,omitempty"`
}

// JobRow is a job as stored.
type JobRow struct {
	ID          int64
	Kind        string
	Queue       string
	State       State
	Priority    int
	EncodedArgs json.RawMessage
	Metadata    json.RawMessage
	Tags        []string
	// Attempt counts the attempts made so far, including the running one.
	Attempt     int
	MaxAttempts int
	// Errors holds one entry per failed attempt, oldest first.
	Errors      []AttemptError
	CreatedAt   time.Time
	ScheduledAt time.Time
	AttemptedAt *time.Time
	// AttemptedBy is the ID of the client that ran (or runs) the last attempt.
	AttemptedBy string
	FinalizedAt *time.Time
	// UniqueKey is the key of a unique job while it holds it.
	UniqueKey string
	// TenantID is the tenant the job was inserted under: the app.tenant_id
	// setting of the inserting transaction (see the tenancy package), or ""
	// for a job that is not tenant-scoped. Workers run outside any tenant;
	// a worker that touches tenant data scopes its own transaction to
	// TenantID, for example with tenancy's WithTenant.
	TenantID string
	// Timeout is the job's own timeout (InsertOpts.Timeout): zero when it
	// has none (the worker's or client's applies), negative for no timeout.
	Timeout time.Duration
}

// Job is a job with its decoded arguments, as a worker receives it.
type Job[T JobArgs] struct {
	*JobRow
	Args T
}
