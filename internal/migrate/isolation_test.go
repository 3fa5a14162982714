package migrate_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
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
	db := pgtest.NewDB(t, pgtest.WithSetting("default_transaction_isolation", "repeatable read"))
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
	pgtest.WaitForLockWaiter(t, db.Pool, "advisory")
	require.NoError(t, holder.Commit(ctx))
	r := <-waiter
	require.NoError(t, r.err)
	assert.Empty(t, r.done, "the holder applied them")
}
