package realtime

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/internal/ident"
	"github.com/justpg/justpg/internal/migrate"
	"github.com/justpg/justpg/internal/pgdb"
)

// DB runs statements: a *pgxpool.Pool, *pgxpool.Conn, *pgx.Conn or pgx.Tx.
// Publishing through the caller's transaction delivers on commit and never
// on rollback.
type DB = pgdb.DB

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the package's migration files (NNN_name.sql at the
// root), for teams that keep them in their own migration tool.
func Migrations() fs.FS {
	return migrate.Sub(migrationFiles, "migrations")
}

// Migrate creates or upgrades the package's tables and functions in schema
// "justpg".
func Migrate(ctx context.Context, db DB) error {
	return MigrateSchema(ctx, db, migrate.DefaultSchema)
}

// MigrateSchema is Migrate for another schema; use the same schema in
// Config.Schema.
func MigrateSchema(ctx context.Context, db DB, schema string) error {
	return migrate.Apply(ctx, db, schema, "realtime", Migrations())
}

// Errors callers branch on with errors.Is.
var (
	// ErrInvalidChannel is wrapped by every channel name validation error.
	ErrInvalidChannel = errors.New("realtime: invalid channel name")
	// ErrInvalidPayload means a payload PostgreSQL cannot carry as text: it
	// contains a NUL byte or is not valid UTF-8.
	ErrInvalidPayload = errors.New("realtime: invalid payload")
	// ErrClosed is returned by Subscription.Next after the subscription was
	// closed or the broker stopped.
	ErrClosed = errors.New("realtime: subscription closed")
	// ErrSlowConsumer is returned by Subscription.Next when the subscription
	// was closed under the Disconnect policy because its buffer was full.
	ErrSlowConsumer = errors.New("realtime: subscriber too slow, disconnected")
	// ErrNotRunning is returned by Subscribe before Start or after Stop.
	ErrNotRunning = errors.New("realtime: broker is not running")
	// ErrNoStream means the channel has no durable stream.
	ErrNoStream = errors.New("realtime: channel has no durable stream")
)

// SlowPolicy says what happens when a subscriber's buffer is full.
type SlowPolicy int

const (
	// DropAndGap (the default) drops new messages for that subscriber while
	// its buffer is full and puts one Gap event (reason GapOverflow) where
	// they were lost. Other subscribers and the listener are never blocked.
	DropAndGap SlowPolicy = iota
	// Disconnect closes the subscription; Next returns the buffered events
	// and then ErrSlowConsumer.
	Disconnect
)

// Config configures a Broker. The zero value is usable.
type Config struct {
	// Schema holds the package's tables; "" means "justpg".
	Schema string
	// Logger receives connection and delivery problems; nil discards them.
	Logger *slog.Logger
	// BufferSize is each subscription's buffer, in events; 0 means 1024.
	BufferSize int
	// SlowPolicy applies when a subscription's buffer is full; the zero
	// value is DropAndGap.
	SlowPolicy SlowPolicy
	// PingInterval is how long the listener connection may be idle before
	// it is pinged to detect a dead connection; 0 means 15s.
	PingInterval time.Duration
	// PingTimeout bounds a ping; 0 means 5s.
	PingTimeout time.Duration
	// MinBackoff and MaxBackoff bound the exponential backoff (with jitter)
	// between reconnect attempts; 0 means 50ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// PayloadTTL is how long large payloads stored in realtime_payloads are
	// kept for listeners to resolve; 0 means 10 minutes.
	PayloadTTL time.Duration
	// CleanupInterval is how often a running broker deletes expired large
	// payloads and trims durable streams; 0 means 1 minute, negative
	// disables (call Cleanup yourself).
	CleanupInterval time.Duration
	// DisableFastPath makes Publish with Ephemeral send
	// SELECT pg_notify($1, $2) instead of calling pg_notify through
	// PostgreSQL's function-call protocol message: for a proxy between the
	// application and PostgreSQL that does not forward that message.
	DisableFastPath bool
}

func (c *Config) setDefaults() error {
	if c.Schema == "" {
		c.Schema = migrate.DefaultSchema
	}
	def := func(d *time.Duration, v time.Duration, name string) error {
		if *d < 0 {
			return fmt.Errorf("realtime: Config.%s must not be negative", name)
		}
		if *d == 0 {
			*d = v
		}
		return nil
	}
	if c.BufferSize < 0 {
		return errors.New("realtime: Config.BufferSize must not be negative")
	}
	if c.BufferSize == 0 {
		c.BufferSize = 1024
	}
	if c.SlowPolicy != DropAndGap && c.SlowPolicy != Disconnect {
		return fmt.Errorf("realtime: unknown Config.SlowPolicy %d", c.SlowPolicy)
	}
	for _, d := range []struct {
		p    *time.Duration
		v    time.Duration
		name string
	}{
		{&c.PingInterval, 15 * time.Second, "PingInterval"},
		{&c.PingTimeout, 5 * time.Second, "PingTimeout"},
		{&c.MinBackoff, 50 * time.Millisecond, "MinBackoff"},
		{&c.MaxBackoff, 5 * time.Second, "MaxBackoff"},
		{&c.PayloadTTL, 10 * time.Minute, "PayloadTTL"},
	} {
		if err := def(d.p, d.v, d.name); err != nil {
			return err
		}
	}
	if c.MaxBackoff < c.MinBackoff {
		return errors.New("realtime: Config.MaxBackoff is less than MinBackoff")
	}
	if c.CleanupInterval == 0 {
		c.CleanupInterval = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Broker publishes messages and, once started, listens on one dedicated
// connection for every subscription of this process.
type Broker struct {
	pool *pgxpool.Pool
	cfg  Config

	// Qualified SQL names, built once.
	qPublish, qPublishMany, qStreams, qEvents, qPayloads, qTableChange string
	// The statements of Publish: the common case and the general one.
	sqlPublish, sqlPublishSlow string
	// Publish with Ephemeral for a payload that must be stored.
	sqlStoreEphemeral string
	// The statements of PublishBatch for payloads that fit as they are:
	// one channel, or several.
	sqlBatchOne, sqlBatchMany string

	stats counters

	mu        sync.Mutex
	running   bool
	cancel    context.CancelFunc
	done      chan struct{}
	subs      map[string][]*Subscription // copy-on-write slices
	pending   []*Subscription            // registered, not yet active
	dirty     bool                       // subs changed since the loop last looked
	wake      func()                     // interrupts the current wait
	woken     bool                       // wake was called during the current wait
	connected bool

	onSync func(listening map[string]bool) // test hook, called by the loop
}

// New returns a broker over pool. Publishing works right away; call Start to
// receive messages.
func New(pool *pgxpool.Pool, cfg Config) (*Broker, error) {
	if pool == nil {
		return nil, errors.New("realtime: nil pool")
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	q := func(name string) (string, error) {
		s, err := ident.Quote(cfg.Schema, name)
		if err != nil {
			return "", fmt.Errorf("realtime: Config.Schema: %w", err)
		}
		return s, nil
	}
	b := &Broker{pool: pool, cfg: cfg, subs: map[string][]*Subscription{}}
	for _, x := range []struct {
		dst  *string
		name string
	}{
		{&b.qPublish, "realtime_publish"},
		{&b.qPublishMany, "realtime_publish_many"},
		{&b.qStreams, "realtime_streams"},
		{&b.qEvents, "realtime_events"},
		{&b.qPayloads, "realtime_payloads"},
		{&b.qTableChange, "realtime_table_change"},
	} {
		s, err := q(x.name)
		if err != nil {
			return nil, err
		}
		*x.dst = s
	}
	// These statements run with the caller's search_path, so the built-ins
	// they call are named with pg_catalog: a role that may create objects
	// in a schema on that path (public, before PostgreSQL 15) could
	// otherwise plant, say, unnest(text[]), which matches the call more
	// closely than pg_catalog's unnest(anyarray), and have it run as the
	// publisher. (The operators they use match the built-ins exactly, and
	// PostgreSQL expands the two-array unnest in FROM into calls of
	// pg_catalog.unnest itself.)
	//
	// A payload that fits in a notification and needs no envelope is sent
	// with a bare pg_notify unless the channel has a stream: one index probe
	// of realtime_streams, no function call. CASE evaluates its arms in
	// order and only as far as needed, so pg_notify runs only when the
	// channel has no stream (the IS NULL test is never true; it turns the
	// call into a condition).
	//
	// Nothing here touches synchronous_commit: a transaction that only
	// notifies writes no WAL before its commit record, and PostgreSQL does
	// not wait for the WAL flush of such a commit whatever the setting.
	b.sqlPublish = `SELECT CASE WHEN EXISTS (SELECT 1 FROM ` + b.qStreams + ` WHERE channel = $1::text)
		THEN ` + b.qPublish + `($1::text, $2::text)
		WHEN pg_catalog.pg_notify($1::text, $2::text) IS NULL THEN NULL END`
	// A batch of payloads that fit as they are: the same idea over arrays.
	// The ELSE arm is a scalar subquery (an InitPlan) that PostgreSQL
	// evaluates only when reached; its ORDER BY keeps the subquery from
	// being flattened and makes pg_notify run in array order.
	b.sqlBatchOne = `SELECT CASE WHEN EXISTS (SELECT 1 FROM ` + b.qStreams + ` WHERE channel = $1::text)
		THEN ` + b.qPublishMany + `(pg_catalog.array_fill($1::text, ARRAY[pg_catalog.cardinality($2::text[])]), $2::text[]) IS NULL
		ELSE (SELECT pg_catalog.count(pg_catalog.pg_notify($1::text, p)) FROM (SELECT p FROM pg_catalog.unnest($2::text[]) WITH ORDINALITY AS t(p, i) ORDER BY i) s) IS NULL END`
	b.sqlBatchMany = `SELECT CASE WHEN EXISTS (SELECT 1 FROM ` + b.qStreams + ` WHERE channel = ANY ($3::text[]))
		THEN ` + b.qPublishMany + `($1::text[], $2::text[]) IS NULL
		ELSE (SELECT pg_catalog.count(pg_catalog.pg_notify(c, p)) FROM (SELECT c, p FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(c, p, i) ORDER BY i) s) IS NULL END`
	b.sqlPublishSlow = `SELECT ` + b.qPublish + `($1::text, $2::text)`
	// An ephemeral message too large for a notification: stored like
	// realtime_publish stores one, without looking for a stream.
	b.sqlStoreEphemeral = `WITH r AS (INSERT INTO ` + b.qPayloads + ` (channel, payload) VALUES ($1::text, $2::text) RETURNING id)
		SELECT pg_catalog.pg_notify($1::text, pg_catalog.chr(30) || 'R' || id::text) FROM r`
	return b, nil
}
