// Package pgdb defines the one interface every justpg package uses for
// "something that can run a statement".
//
// *pgxpool.Pool, *pgxpool.Conn, *pgx.Conn and pgx.Tx all satisfy DB, so
// callers can pass a pool for one-off work or their own transaction to make
// operations of several packages commit or roll back together.
package pgdb

import (
	"context"

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
func InTx(ctx context.Context, db DB, fn func(tx pgx.Tx) error) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
