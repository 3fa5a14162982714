package pgdb_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgdb"
	"github.com/justpg/justpg/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// A transaction InTx opens is READ COMMITTED whatever the session's default;
// in the caller's transaction it is a savepoint at the caller's level.
func TestInTxIsReadCommittedWhateverTheSessionDefault(t *testing.T) {
	t.Parallel()
	for _, level := range []string{"repeatable read", "serializable"} {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			db := pgtest.NewDB(t, pgtest.WithSetting("default_transaction_isolation", level))
			ctx := context.Background()
			levelIn := func(d pgdb.DB) string {
				var got string
				require.NoError(t, pgdb.InTx(ctx, d, func(tx pgx.Tx) error {
					return tx.QueryRow(ctx, `SELECT current_setting('transaction_isolation')`).Scan(&got)
				}))
				return got
			}
			assert.Equal(t, "read committed", levelIn(db.Pool))
			conn, err := db.Pool.Acquire(ctx)
			require.NoError(t, err)
			defer conn.Release()
			assert.Equal(t, "read committed", levelIn(conn))
			assert.Equal(t, "read committed", levelIn(conn.Conn()))

			tx, err := db.Pool.Begin(ctx) // the session's default
			require.NoError(t, err)
			defer func() { _ = tx.Rollback(ctx) }()
			assert.Equal(t, level, levelIn(tx))
		})
	}
}

// A statement run on its own under REPEATABLE READ fails with a
// serialization failure when a row it updates changed after its snapshot;
// Retry runs it again, with a new snapshot, unless it ran in a transaction.
func TestRetryRerunsAStatementThatLostARowToAConcurrentUpdate(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t, pgtest.WithSetting("default_transaction_isolation", "repeatable read"))
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `CREATE TABLE counter (n int); INSERT INTO counter VALUES (0)`)
	require.NoError(t, err)

	bump := func(d pgdb.DB, attempts *int) <-chan error {
		done := make(chan error, 1)
		go func() {
			done <- pgdb.Retry(ctx, d, func() error {
				*attempts++
				_, err := d.Exec(ctx, `UPDATE counter SET n = n + 1`)
				return err
			})
		}()
		return done
	}
	// holder updates the row and commits while the statement waits for its
	// lock.
	race := func(d pgdb.DB) (int, error) {
		holder, err := db.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
		require.NoError(t, err)
		defer func() { _ = holder.Rollback(ctx) }()
		_, err = holder.Exec(ctx, `UPDATE counter SET n = n + 1`)
		require.NoError(t, err)
		var attempts int
		done := bump(d, &attempts)
		pgtest.WaitForLockWaiter(t, db.Pool, "")
		require.NoError(t, holder.Commit(ctx))
		err = <-done
		return attempts, err
	}

	attempts, err := race(db.Pool)
	require.NoError(t, err)
	assert.Equal(t, 2, attempts)
	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT n FROM counter`).Scan(&n))
	assert.Equal(t, 2, n)

	// In a transaction the failure is the caller's to handle.
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, `SELECT 1`) // takes the snapshot
	require.NoError(t, err)
	attempts, err = race(tx)
	assert.True(t, pgdb.SerializationFailure(err), "%v", err)
	assert.Equal(t, 1, attempts)
	var pgErr *pgconn.PgError
	assert.True(t, errors.As(err, &pgErr))
	require.NoError(t, tx.Rollback(ctx))

	// The same for a connection in a transaction begun with SQL.
	conn, err := db.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, `BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1`)
	require.NoError(t, err)
	attempts, err = race(conn)
	assert.True(t, pgdb.SerializationFailure(err), "%v", err)
	assert.Equal(t, 1, attempts)
	_, err = conn.Exec(ctx, `ROLLBACK`)
	require.NoError(t, err)
}

// wrapped is a DB of a type of the caller's own, such as an instrumented
// pool or a wrapper around a transaction.
type wrapped struct{ pgdb.DB }

// Retry reruns only where it knows no transaction is open: on a pool and on
// an idle connection, not in a pgx.Tx and not through a type of the
// caller's own, which may wrap one.
func TestRetryOnlyWhereNoTransactionCanBeOpen(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	ctx := context.Background()
	calls := func(d pgdb.DB) int {
		n := 0
		err := pgdb.Retry(ctx, d, func() error {
			n++
			if n < 3 {
				return &pgconn.PgError{Code: "40001"}
			}
			return nil
		})
		if n < 3 {
			assert.True(t, pgdb.SerializationFailure(err), "%v", err)
		} else {
			assert.NoError(t, err)
		}
		return n
	}
	assert.Equal(t, 3, calls(db.Pool))
	conn, err := db.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	assert.Equal(t, 3, calls(conn))
	assert.Equal(t, 3, calls(conn.Conn()))
	assert.Equal(t, 1, calls(wrapped{db.Pool}))
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	assert.Equal(t, 1, calls(tx))
	assert.Equal(t, 1, calls(wrapped{tx}))
}
