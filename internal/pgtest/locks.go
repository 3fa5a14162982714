package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// WaitForLockWaiter waits (up to 30 seconds, then fails the test) until a
// session of pool's database waits for a lock of type locktype, as
// pg_locks names them ("advisory", "transactionid", "relation"…; "" for
// any): the moment a test commits or rolls back the holder to see what the
// waiter does next.
func WaitForLockWaiter(tb testing.TB, pool *pgxpool.Pool, locktype string) {
	tb.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting bool
		err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_locks
			WHERE NOT granted AND ($1 = '' OR locktype = $1)
			  AND pid IN (SELECT pid FROM pg_catalog.pg_stat_activity WHERE datname = pg_catalog.current_database()))`,
			locktype).Scan(&waiting)
		if err == nil && waiting {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("pgtest: no session waits for a %q lock after 30s (last error: %v)", locktype, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
