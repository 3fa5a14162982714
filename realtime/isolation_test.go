package realtime

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
)

// A durable Publish on a pool whose sessions default to REPEATABLE READ (a
// role's or database's setting) that waited for another publisher's
// transaction gets the next id instead of failing: run on its own, the
// publish's snapshot predates the other's commit, and PostgreSQL raises a
// serialization failure, which Publish and PublishBatch now retry.
func TestDurablePublishAfterWaitingForAnotherPublisherUnderRepeatableRead(t *testing.T) {
	t.Parallel()
	db := newDB(t, pgtest.WithSetting("default_transaction_isolation", "repeatable read"))
	b := startBroker(t, db.Pool, Config{})
	ctx := ctxT(t)
	require.NoError(t, b.CreateStream(ctx, db.Pool, "orders", StreamConfig{}))

	for round, publish := range []func() error{
		func() error { return b.Publish(ctx, db.Pool, "orders", []byte("p")) },
		func() error {
			return b.PublishBatch(ctx, db.Pool, []Message{{Channel: "orders", Payload: []byte("p")}})
		},
	} {
		other, err := db.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
		require.NoError(t, err)
		require.NoError(t, b.Publish(ctx, other, "orders", []byte("other")))
		published := make(chan error, 1)
		go func() { published <- publish() }()
		pgtest.WaitForLockWaiter(t, db.Pool, "transactionid")
		require.NoError(t, other.Commit(ctx))
		require.NoError(t, <-published, "round %d", round)
	}
	evs, err := b.ReadStream(ctx, db.Pool, "orders", 0, 10)
	require.NoError(t, err)
	var got []string
	for _, ev := range evs {
		got = append(got, string(ev.Payload))
	}
	assert.Equal(t, []string{"other", "p", "other", "p"}, got)
}
