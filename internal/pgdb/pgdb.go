// Package pgdb defines the one interface every justpg package uses for
// "something that can run a statement".
//
// *pgxpool.Pool, *pgxpool.Conn, *pgx.Conn and pgx.Tx all satisfy DB, so
// callers can pass a pool for one-off work or their own transaction to make
// operations of several packages commit or roll back together.
package pgdb

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DB runs statements. Begin on a pool or connection opens a transaction; on a
// pgx.Tx it opens a savepoint, so code that needs atomicity can call Begin
// whatever it was given.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Compile-time proof that the pgx types callers hold satisfy DB.
var (
	_ DB = (*pgxpool.Pool)(nil)
	_ DB = (*pgxpool.Conn)(nil)
	_ DB = (*pgx.Conn)(nil)
	_ DB = (pgx.Tx)(nil)
)

// InTx runs fn in a transaction opened on db (a savepoint when db is already
// a transaction) and commits when fn returns nil; otherwise it rolls back and
// returns fn's error.
//
// A transaction InTx opens itself is READ COMMITTED whatever the session's
// default_transaction_isolation says: justpg's operations are written for
// its semantics (each statement sees what committed before it started, so a
// lock taken by one statement orders what the next one reads, and a row
// lock waited for yields the newest version of the row rather than a
// serialization failure). In the caller's transaction the caller's level
// applies.
func InTx(ctx context.Context, db DB, fn func(tx pgx.Tx) error) error {
	tx, err := Begin(ctx, db)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// Begin opens a transaction on db as InTx does: READ COMMITTED when db is a
// pool or a connection, a savepoint when db is a transaction.
func Begin(ctx context.Context, db DB) (pgx.Tx, error) {
	if _, inTx := db.(pgx.Tx); !inTx {
		if b, ok := db.(interface {
			BeginTx(context.Context, pgx.TxOptions) (pgx.Tx, error)
		}); ok {
			return b.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
		}
	}
	return db.Begin(ctx)
}

// SerializationFailure reports whether err is (or wraps) PostgreSQL's
// serialization failure, SQLSTATE 40001.
func SerializationFailure(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "40001"
}

// maxRetries bounds Retry. A statement run on its own fails with a
// serialization failure only because of changes other transactions
// committed (or are committing), so every retry follows someone's progress.
const maxRetries = 100

// Retry calls fn, which runs one statement on db, again each time it fails
// with a serialization failure (SQLSTATE 40001) while db is known not to be
// in a transaction: a pool, or a connection that is not in one. A statement run on its own is a transaction of its own, with
// the session's default isolation: under REPEATABLE READ or SERIALIZABLE it
// fails when a row it locks or writes changed after its snapshot, where
// READ COMMITTED would have used the row's newest version, and under
// SERIALIZABLE even a read can fail, when it completes a cycle of read/write
// dependencies among concurrent transactions. It was rolled back whole, so
// running it again (with a new snapshot) is safe. Inside a
// transaction the error is returned: the transaction is aborted, and only
// its owner can retry it. So is it for a DB of a type of the caller's own,
// which may wrap a transaction: run again there, the statement would fail
// with "current transaction is aborted" and hide the 40001 the caller's own
// retry looks for.
func Retry(ctx context.Context, db DB, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || attempt == maxRetries || ctx.Err() != nil || !SerializationFailure(err) || !outsideTx(db) {
			return err
		}
	}
}

// outsideTx reports whether db is known to be outside a transaction: a
// pool, or a connection not in one (none begun with SQL of the caller's
// own). A pgx.Tx, or a type it does not know, is not.
func outsideTx(db DB) bool {
	switch c := db.(type) {
	case *pgxpool.Pool:
		return true
	case *pgx.Conn:
		return c.PgConn().TxStatus() == 'I'
	case *pgxpool.Conn:
		return c.Conn().PgConn().TxStatus() == 'I'
	}
	return false
}
