package backup_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/backup"
	"github.com/justpg/justpg/internal/pgtest"
)

// A role or database with short timeouts (here lock_timeout, which makes
// the wait deterministic; statement_timeout hits counting a large table the
// same way) does not fail dumps and drills: backup's own sessions turn the
// timeouts off, as pg_dump and pg_restore do for theirs. The dump's row
// count waited for a table's lock under the pool's lock_timeout and failed
// the dump while pg_dump, without one, waited.
func TestDumpAndDrillWithTheRolesTimeouts(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t, pgtest.WithPoolConfig(func(c *pgxpool.Config) {
		c.ConnConfig.RuntimeParams["lock_timeout"] = "1ms"
	}))
	seed(t, db, 200)
	m, _ := newManager(t, db, backup.Config{})
	ctx := context.Background()

	// A migration holds a table's lock for a moment.
	holder, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = holder.Rollback(ctx) }()
	_, err = holder.Exec(ctx, `LOCK TABLE items IN ACCESS EXCLUSIVE MODE`)
	require.NoError(t, err)
	type result struct {
		man *backup.Manifest
		err error
	}
	dumped := make(chan result, 1)
	go func() {
		man, err := m.Dump(ctx)
		dumped <- result{man, err}
	}()
	// Until the dump waits for the lock (or has given up).
	var r result
	finished := false
	require.Eventually(t, func() bool {
		select {
		case r = <-dumped:
			finished = true
			return true
		default:
		}
		var waiting bool
		err := db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks
			WHERE locktype = 'relation' AND relation = 'items'::regclass AND NOT granted)`).Scan(&waiting)
		return err == nil && waiting
	}, 30*time.Second, 5*time.Millisecond)
	require.NoError(t, holder.Rollback(ctx))
	if !finished {
		r = <-dumped
	}
	require.NoError(t, r.err)
	assert.EqualValues(t, 200+200/3, r.man.TotalRows())

	rep, err := m.Drill(ctx, r.man.ID)
	require.NoError(t, err)
	assert.Equal(t, r.man.TotalRows(), rep.Rows)
}
