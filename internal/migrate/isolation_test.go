package migrate_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/migrate"
	"github.com/justpg/justpg/internal/pgtest"
)

// A run that waited for the migration lock sees what the run that held it
// committed, even when the sessions' default isolation level is REPEATABLE
// READ (a role's or database's setting): Run's own transaction is READ
// COMMITTED, so the applied migrations are read after the lock is granted.
// At the session's default, the waiting run read them with the snapshot it
// took before waiting and applied every migration a second time ("relation
// already exists"), so app instances starting together failed.
func TestRunWaitingForTheLockSeesTheHoldersMigrationsUnderRepeatableRead(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t, pgtest.WithPoolConfig(func(c *pgxpool.Config) {
		c.ConnConfig.RuntimeParams["default_transaction_isolation"] = "repeatable read"
	}))
	ctx := context.Background()
	line := migrate.Line{Name: "things", FS: goodFS()}

	holder, err := db.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	require.NoError(t, err)
	defer func() { _ = holder.Rollback(ctx) }()
	done, err := migrate.Run(ctx, holder, "", line) // holds the lock until holder ends
	require.NoError(t, err)
	require.Len(t, done, 2)

	type result struct {
		done []migrate.Migration
		err  error
	}
	waiter := make(chan result, 1)
	go func() {
		done, err := migrate.Run(ctx, db.Pool, "", line)
		waiter <- result{done, err}
	}()
	require.Eventually(t, func() bool {
		var waiting bool
		err := db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks
			WHERE locktype = 'advisory' AND NOT granted
			  AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))`).Scan(&waiting)
		return err == nil && waiting
	}, 30*time.Second, 5*time.Millisecond)
	require.NoError(t, holder.Commit(ctx))
	r := <-waiter
	require.NoError(t, r.err)
	assert.Empty(t, r.done, "the holder applied them")
}
