package realtime

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var migrated = pgtest.WithSetup("realtime", func(ctx context.Context, pool *pgxpool.Pool) error {
	return Migrate(ctx, pool)
})

func newDB(t *testing.T, opts ...pgtest.Option) *pgtest.DB {
	t.Helper()
	return pgtest.NewDB(t, append([]pgtest.Option{migrated}, opts...)...)
}

func pgtestDB(tb testing.TB) *pgtest.DB {
	tb.Helper()
	return pgtest.NewDB(tb, migrated)
}

// fastCfg reconnects quickly so fault tests finish fast.
func fastCfg() Config {
	return Config{MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, PingTimeout: 2 * time.Second}
}

func startBroker(t *testing.T, pool *pgxpool.Pool, cfg Config) *Broker {
	t.Helper()
	b, err := New(pool, cfg)
	require.NoError(t, err)
	require.NoError(t, b.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		assert.NoError(t, b.Stop(ctx))
	})
	return b
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func subscribe(t *testing.T, b *Broker, ch string, opts ...SubscribeOption) *Subscription {
	t.Helper()
	s, err := b.Subscribe(ctxT(t), ch, opts...)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

func next(t *testing.T, s *Subscription) Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ev, err := s.Next(ctx)
	require.NoError(t, err, "waiting for an event on %s", s.Channel())
	return ev
}

// requireNoEvent checks that nothing is queued (after a round trip that would
// have delivered it: callers publish a marker first and read it).
func requireEmpty(t *testing.T, s *Subscription) {
	t.Helper()
	require.Equal(t, 0, s.Buffered(), "unexpected buffered events on %s", s.Channel())
}

func msg(t *testing.T, s *Subscription) string {
	t.Helper()
	ev := next(t, s)
	require.False(t, ev.IsGap(), "got a gap (%s) instead of a message", ev.Gap)
	return string(ev.Payload)
}

// publishUntilDelivered publishes p to s's channel until s receives a
// message, skipping gap signals (each of which may report a lost attempt).
func publishUntilDelivered(t *testing.T, b *Broker, pool *pgxpool.Pool, s *Subscription, p string) string {
	t.Helper()
	ctx := ctxT(t)
	for range 10 {
		require.NoError(t, publishRetry(ctx, b, pool, s.Channel(), p))
		for {
			wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			ev, err := s.Next(wctx)
			cancel()
			if err != nil || ev.IsGap() {
				break // lost in a reconnect: publish again
			}
			return string(ev.Payload)
		}
	}
	t.Fatalf("no message on %s after 10 attempts", s.Channel())
	return ""
}

func TestPublishSubscribe(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{})
	ctx := ctxT(t)
	s := subscribe(t, b, "user:42")
	other := subscribe(t, b, "user:43")

	require.NoError(t, b.Publish(ctx, db.Pool, "user:42", []byte("hello")))
	ev := next(t, s)
	assert.Equal(t, Event{Channel: "user:42", Payload: []byte("hello")}, ev)

	type note struct {
		Title string `json:"title"`
		N     int    `json:"n"`
	}
	require.NoError(t, PublishJSON(ctx, b, db.Pool, "user:43", note{"hi", 7}))
	got, err := DecodeJSON[note](next(t, other))
	require.NoError(t, err)
	assert.Equal(t, note{"hi", 7}, got)
	requireEmpty(t, s)

	// Raw pg_notify from another client (e.g. a trigger of another app)
	// arrives unchanged.
	_, err = db.Pool.Exec(ctx, `SELECT pg_notify('user:42', 'raw')`)
	require.NoError(t, err)
	assert.Equal(t, "raw", msg(t, s))

	st := b.Stats()
	assert.Equal(t, 2, st.Channels)
	assert.Equal(t, 2, st.Subscriptions)
	assert.True(t, st.Connected)
	assert.EqualValues(t, 3, st.Delivered)
}

func TestCaseSensitiveChannels(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{})
	ctx := ctxT(t)
	upper := subscribe(t, b, "Room")
	lower := subscribe(t, b, "room")
	require.NoError(t, b.Publish(ctx, db.Pool, "Room", []byte("U")))
	require.NoError(t, b.Publish(ctx, db.Pool, "room", []byte("l")))
	assert.Equal(t, "U", msg(t, upper))
	assert.Equal(t, "l", msg(t, lower))
	requireEmpty(t, upper)
	requireEmpty(t, lower)
}

func TestCommitDeliversRollbackDoesNot(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{})
	ctx := ctxT(t)
	s := subscribe(t, b, "orders")

	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, b.Publish(ctx, tx, "orders", []byte("rolled back")))
	require.NoError(t, PublishJSONBatch(ctx, b, tx, "orders", []int{1, 2}))
	require.NoError(t, tx.Rollback(ctx))

	tx, err = db.Pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, b.Publish(ctx, tx, "orders", []byte("committed")))
	// Not delivered before commit: a message published after it, outside
	// the transaction, arrives first.
	require.NoError(t, b.Publish(ctx, db.Pool, "orders", []byte("outside")))
	assert.Equal(t, "outside", msg(t, s))
	requireEmpty(t, s)
	require.NoError(t, tx.Commit(ctx))
	assert.Equal(t, "committed", msg(t, s))
	requireEmpty(t, s)
}

func TestOrderingWithinTransaction(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{})
	ctx := ctxT(t)
	s := subscribe(t, b, "seq")
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	var batch []Message
	for i := range 200 {
		if i < 100 {
			require.NoError(t, b.Publish(ctx, tx, "seq", fmt.Appendf(nil, "%d", i)))
		} else {
			batch = append(batch, Message{Channel: "seq", Payload: fmt.Appendf(nil, "%d", i)})
		}
	}
	require.NoError(t, b.PublishBatch(ctx, tx, batch))
	require.NoError(t, tx.Commit(ctx))
	for i := range 200 {
		require.Equal(t, fmt.Sprint(i), msg(t, s))
	}
}

func TestManySubscribersOnManyChannels(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	var mu sync.Mutex
	var last map[string]bool
	b, err := New(db.Pool, Config{})
	require.NoError(t, err)
	b.onSync = func(l map[string]bool) { mu.Lock(); last = l; mu.Unlock() }
	require.NoError(t, b.Start(context.Background()))
	defer func() { require.NoError(t, b.Stop(ctxT(t))) }()
	ctx := ctxT(t)

	const channels, perChannel = 100, 10
	subs := make([][]*Subscription, channels)
	var wg sync.WaitGroup
	var subErr error
	for c := range channels {
		subs[c] = make([]*Subscription, perChannel)
		for i := range perChannel {
			wg.Go(func() {
				s, err := b.Subscribe(ctx, fmt.Sprintf("ch.%d", c))
				mu.Lock()
				defer mu.Unlock()
				subErr = errors.Join(subErr, err)
				subs[c][i] = s
			})
		}
	}
	wg.Wait()
	require.NoError(t, subErr)
	assert.Equal(t, 1000, b.Stats().Subscriptions)
	assert.Equal(t, 100, b.Stats().Channels)

	var msgs []Message
	for c := range channels {
		msgs = append(msgs, Message{Channel: fmt.Sprintf("ch.%d", c), Payload: fmt.Appendf(nil, "m%d", c)})
	}
	require.NoError(t, b.PublishBatch(ctx, db.Pool, msgs))
	for c := range channels {
		for _, s := range subs[c] {
			require.Equal(t, fmt.Sprintf("m%d", c), msg(t, s))
		}
	}
	for c := range channels {
		for _, s := range subs[c] {
			requireEmpty(t, s)
		}
	}
	assert.EqualValues(t, 1000, b.Stats().Delivered)

	// UNLISTEN after the last subscriber of a channel leaves.
	for _, s := range subs[0][:perChannel-1] {
		s.Close()
	}
	subscribe(t, b, "sync.marker") // forces and waits for a sync
	mu.Lock()
	assert.True(t, last["ch.0"], "channel with one subscriber left must stay listened")
	mu.Unlock()
	subs[0][perChannel-1].Close()
	subscribe(t, b, "sync.marker2")
	mu.Lock()
	assert.False(t, last["ch.0"], "channel without subscribers must be unlistened")
	assert.True(t, last["ch.1"])
	mu.Unlock()
}

func TestSubscribeWhileWaiting(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{})
	ctx := ctxT(t)
	a := subscribe(t, b, "a")
	// The loop is now blocked in WaitForNotification; these interrupt it.
	for i := range 20 {
		ch := fmt.Sprintf("b%d", i)
		s := subscribe(t, b, ch)
		require.NoError(t, b.Publish(ctx, db.Pool, ch, []byte(ch)))
		assert.Equal(t, ch, msg(t, s))
		s.Close()
		s.Close() // idempotent
	}
	require.NoError(t, b.Publish(ctx, db.Pool, "a", []byte("still here")))
	assert.Equal(t, "still here", msg(t, a))
	_, err := a.Next(ctxCancelled())
	assert.ErrorIs(t, err, context.Canceled)
	a.Close()
	_, err = a.Next(ctx)
	assert.ErrorIs(t, err, ErrClosed)
}

func ctxCancelled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestLargePayloads(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{PayloadTTL: time.Nanosecond, CleanupInterval: -1})
	ctx := ctxT(t)
	s := subscribe(t, b, "big")
	payloads := []string{
		strings.Repeat("x", 7999),
		strings.Repeat("y", 8000),
		strings.Repeat("é", 5000), // 10000 bytes
		strings.Repeat("z", 1<<20),
		"\x1eP looks like an envelope",
		"\x1e" + strings.Repeat("q", 7998),
		"",
	}
	for _, p := range payloads {
		require.NoError(t, b.Publish(ctx, db.Pool, "big", []byte(p)))
	}
	for _, p := range payloads {
		require.Equal(t, p, msg(t, s))
	}
	// In a batch and a transaction too.
	var batch []Message
	for _, p := range payloads {
		batch = append(batch, Message{Channel: "big", Payload: []byte(p)})
	}
	require.NoError(t, b.PublishBatch(ctx, db.Pool, batch))
	for _, p := range payloads {
		require.Equal(t, p, msg(t, s))
	}
	var stored int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM justpg.realtime_payloads`).Scan(&stored))
	assert.Equal(t, 8, stored, "payloads over 7999 bytes are stored")
	res, err := b.Cleanup(ctx, db.Pool)
	require.NoError(t, err)
	assert.EqualValues(t, 8, res.Payloads)

	// A reference whose payload expired before it was read becomes a gap.
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM justpg.realtime_payloads`).Scan(&stored))
	assert.Zero(t, stored)
	_, err = db.Pool.Exec(ctx, `SELECT pg_notify('big', chr(30) || 'R' || 999999)`)
	require.NoError(t, err)
	ev := next(t, s)
	assert.Equal(t, GapUnresolved, ev.Gap)
}

func TestInvalidInput(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := ctxT(t)
	b, err := New(db.Pool, Config{})
	require.NoError(t, err)

	_, err = b.Subscribe(ctx, "ok")
	assert.ErrorIs(t, err, ErrNotRunning)

	for _, bad := range []string{"", "a b", `x"; DROP TABLE t; --`, strings.Repeat("a", 64), "tab\t", "ü"} {
		assert.ErrorIs(t, b.Publish(ctx, db.Pool, bad, nil), ErrInvalidChannel, bad)
		assert.ErrorIs(t, b.PublishBatch(ctx, db.Pool, []Message{{Channel: "ok"}, {Channel: bad}}), ErrInvalidChannel, bad)
		assert.ErrorIs(t, b.CreateStream(ctx, db.Pool, bad, StreamConfig{}), ErrInvalidChannel, bad)
		_, err := b.ReadStream(ctx, db.Pool, bad, 0, 0)
		assert.ErrorIs(t, err, ErrInvalidChannel, bad)
	}
	assert.ErrorIs(t, b.Publish(ctx, db.Pool, "ok", []byte("nul\x00")), ErrInvalidPayload)
	assert.ErrorIs(t, b.Publish(ctx, db.Pool, "ok", []byte{0xff, 0xfe}), ErrInvalidPayload)
	assert.NoError(t, b.PublishBatch(ctx, db.Pool, nil))
	assert.Error(t, b.CreateStream(ctx, db.Pool, "ok", StreamConfig{MaxLen: -1}))
	assert.ErrorIs(t, b.DropStream(ctx, db.Pool, "nostream"), ErrNoStream)
	assert.ErrorIs(t, b.Publish(ctxCancelled(), db.Pool, "ok", nil), context.Canceled)

	_, err = New(nil, Config{})
	assert.Error(t, err)
	for _, cfg := range []Config{
		{BufferSize: -1}, {PingInterval: -time.Second}, {SlowPolicy: 7},
		{MinBackoff: time.Second, MaxBackoff: time.Millisecond}, {Schema: strings.Repeat("s", 70)},
	} {
		_, err = New(db.Pool, cfg)
		assert.Error(t, err, "%+v", cfg)
	}

	require.NoError(t, b.Start(ctx))
	defer func() { require.NoError(t, b.Stop(ctxT(t))) }()
	assert.Error(t, b.Start(ctx), "Start twice")
	_, err = b.Subscribe(ctx, "bad name")
	assert.ErrorIs(t, err, ErrInvalidChannel)
	_, err = b.Subscribe(ctx, "nostream", From(0))
	assert.ErrorIs(t, err, ErrNoStream)
	_, err = b.Subscribe(ctxCancelled(), "x")
	assert.ErrorIs(t, err, context.Canceled)
	// The failed subscriptions left nothing behind.
	s := subscribe(t, b, "x")
	assert.Equal(t, 1, b.Stats().Subscriptions)
	_, err = DecodeJSON[int](Event{Channel: "x", Gap: GapOverflow})
	assert.Error(t, err)
	_ = s
}

func TestSlowConsumerDropAndGap(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{BufferSize: 4})
	ctx := ctxT(t)
	slow := subscribe(t, b, "firehose")
	var fastGot []string
	fastDone := make(chan error, 1)
	fast := subscribe(t, b, "firehose", WithBuffer(100))
	go func() {
		for len(fastGot) < 20 {
			ev, err := fast.Next(ctx)
			if err != nil {
				fastDone <- err
				return
			}
			fastGot = append(fastGot, string(ev.Payload))
		}
		fastDone <- nil
	}()
	var batch []Message
	for i := range 20 {
		batch = append(batch, Message{Channel: "firehose", Payload: fmt.Appendf(nil, "%d", i)})
	}
	require.NoError(t, b.PublishBatch(ctx, db.Pool, batch))
	require.NoError(t, <-fastDone)
	for i := range 20 {
		assert.Equal(t, fmt.Sprint(i), fastGot[i], "the fast subscriber gets everything")
	}
	require.Eventually(t, func() bool { return b.Stats().Dropped == 16 }, 10*time.Second, 10*time.Millisecond)
	for i := range 4 {
		assert.Equal(t, fmt.Sprint(i), msg(t, slow))
	}
	ev := next(t, slow)
	assert.Equal(t, GapOverflow, ev.Gap)
	require.NoError(t, b.Publish(ctx, db.Pool, "firehose", []byte("after")))
	assert.Equal(t, "after", msg(t, slow))
	assert.GreaterOrEqual(t, b.Stats().Gaps, int64(1))
}

func TestSlowConsumerDisconnect(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{BufferSize: 3, SlowPolicy: Disconnect})
	ctx := ctxT(t)
	slow := subscribe(t, b, "firehose")
	other := subscribe(t, b, "firehose", WithBuffer(10), WithPolicy(DropAndGap))
	require.NoError(t, PublishJSONBatch(ctx, b, db.Pool, "firehose", []int{1, 2, 3, 4, 5}))
	// Read only after the buffer overflowed.
	require.Eventually(t, func() bool { return b.Stats().Dropped >= 1 }, 10*time.Second, 10*time.Millisecond)
	for i := 1; i <= 3; i++ {
		v, err := DecodeJSON[int](next(t, slow))
		require.NoError(t, err)
		assert.Equal(t, i, v)
	}
	_, err := slow.Next(ctx)
	assert.ErrorIs(t, err, ErrSlowConsumer)
	require.Eventually(t, func() bool { return b.Stats().Subscriptions == 1 }, 10*time.Second, 10*time.Millisecond)
	for i := 1; i <= 5; i++ {
		v, err := DecodeJSON[int](next(t, other))
		require.NoError(t, err)
		assert.Equal(t, i, v)
	}
}

func TestReconnectAfterTerminateSendsGap(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, fastCfg())
	s1 := subscribe(t, b, "live")
	s2 := subscribe(t, b, "other")
	for round := range 2 {
		db.TerminateBackends(t)
		for _, s := range []*Subscription{s1, s2} {
			ev := next(t, s)
			require.Equal(t, GapReconnect, ev.Gap, "round %d", round)
		}
		// After the gap the channel is listened again: live messages flow.
		// (A second gap is possible: the listener may reconnect on a pool
		// session whose termination is still in flight, and a message
		// published meanwhile is lost, which that gap reports.)
		assert.Equal(t, "again", publishUntilDelivered(t, b, db.Pool, s1, "again"))
	}
	// A reconnect can race the termination of the pool's other sessions.
	assert.GreaterOrEqual(t, b.Stats().Reconnects, int64(2))
	assert.True(t, b.Stats().Connected)
}

// publishRetry publishes through a pool whose connections may just have been
// killed.
func publishRetry(ctx context.Context, b *Broker, pool *pgxpool.Pool, ch, p string) error {
	var err error
	for range 50 {
		if err = b.Publish(ctx, pool, ch, []byte(p)); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return err
}

func TestReconnectAfterServerRestart(t *testing.T) {
	t.Parallel()
	srv := pgtest.NewCluster(t, pgtest.ClusterOptions{})
	db := newDB(t, pgtest.OnServer(srv))
	b := startBroker(t, db.Pool, fastCfg())
	ctx := ctxT(t)
	s := subscribe(t, b, "live")
	durableCh := "durable"
	require.NoError(t, b.CreateStream(ctx, db.Pool, durableCh, StreamConfig{}))
	d := subscribe(t, b, durableCh, From(0))
	require.NoError(t, b.Publish(ctx, db.Pool, durableCh, []byte("before")))
	assert.Equal(t, "before", msg(t, d))

	require.NoError(t, srv.Restart(ctx))
	require.NoError(t, publishRetry(ctx, b, db.Pool, durableCh, "during"))
	ev := next(t, s)
	require.Equal(t, GapReconnect, ev.Gap)
	assert.Equal(t, "after restart", publishUntilDelivered(t, b, db.Pool, s, "after restart"))
	// The durable subscription caught up instead of reporting a gap.
	ev = next(t, d)
	assert.Equal(t, "during", string(ev.Payload))
	assert.EqualValues(t, 2, ev.ID)
	assert.GreaterOrEqual(t, b.Stats().Reconnects, int64(1))
}

func TestDurableResumeLosesNothing(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, fastCfg())
	ctx := ctxT(t)
	require.NoError(t, b.CreateStream(ctx, db.Pool, "log", StreamConfig{}))
	s := subscribe(t, b, "log", From(0))
	for i := 1; i <= 5; i++ {
		require.NoError(t, b.Publish(ctx, db.Pool, "log", fmt.Appendf(nil, "e%d", i)))
	}
	var lastID int64
	for i := 1; i <= 3; i++ {
		ev := next(t, s)
		require.Equal(t, fmt.Sprintf("e%d", i), string(ev.Payload))
		require.EqualValues(t, i, ev.ID)
		lastID = ev.ID
	}
	s.Close() // the consumer goes away having seen 3

	var batch []Message
	for i := 6; i <= 10; i++ {
		batch = append(batch, Message{Channel: "log", Payload: fmt.Appendf(nil, "e%d", i)})
	}
	require.NoError(t, b.PublishBatch(ctx, db.Pool, batch))
	big := strings.Repeat("L", 9000)
	require.NoError(t, b.Publish(ctx, db.Pool, "log", []byte(big))) // id 11, stored in the log only

	s = subscribe(t, b, "log", From(lastID))
	for i := 4; i <= 10; i++ {
		ev := next(t, s)
		require.Equal(t, fmt.Sprintf("e%d", i), string(ev.Payload))
		require.EqualValues(t, i, ev.ID)
	}
	ev := next(t, s)
	require.EqualValues(t, 11, ev.ID)
	require.Equal(t, big, string(ev.Payload))

	// Live, including a large one resolved from the log.
	require.NoError(t, b.Publish(ctx, db.Pool, "log", []byte("e12")))
	require.NoError(t, b.Publish(ctx, db.Pool, "log", []byte(big+"!")))
	ev = next(t, s)
	assert.Equal(t, Event{Channel: "log", ID: 12, Payload: []byte("e12")}, ev)
	ev = next(t, s)
	assert.EqualValues(t, 13, ev.ID)
	assert.Equal(t, big+"!", string(ev.Payload))
	requireEmpty(t, s)

	evs, err := b.ReadStream(ctx, db.Pool, "log", 10, 2)
	require.NoError(t, err)
	require.Len(t, evs, 2)
	assert.EqualValues(t, 11, evs[0].ID)
	assert.EqualValues(t, 12, evs[1].ID)

	// A disconnect while events are published: caught up, no gap.
	db.TerminateBackends(t)
	require.NoError(t, publishRetry(ctx, b, db.Pool, "log", "e14"))
	ev = next(t, s)
	assert.Equal(t, Event{Channel: "log", ID: 14, Payload: []byte("e14")}, ev)

	require.NoError(t, b.DropStream(ctx, db.Pool, "log"))
	_, err = b.Subscribe(ctx, "log", From(0))
	assert.ErrorIs(t, err, ErrNoStream)
}

func TestDurableIdsFollowCommitOrder(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{})
	ctx := ctxT(t)
	require.NoError(t, b.CreateStream(ctx, db.Pool, "orders", StreamConfig{}))
	s := subscribe(t, b, "orders", From(0))
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 25 {
				assert.NoError(t, pgxInTx(ctx, db.Pool, func(tx pgx.Tx) error {
					return b.Publish(ctx, tx, "orders", fmt.Appendf(nil, "w%d-%d", w, i))
				}))
			}
		})
	}
	wg.Wait()
	for i := 1; i <= 200; i++ {
		ev := next(t, s)
		require.EqualValues(t, i, ev.ID, "ids arrive dense and in order")
	}
}

// pgxInTx runs fn in a READ COMMITTED transaction, whatever
// JUSTPG_TEST_SESSION makes the default: concurrent publishers to a durable
// stream in transactions at stricter levels get serialization failures.
func pgxInTx(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, fn)
}

func TestStreamRetention(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{CleanupInterval: -1})
	ctx := ctxT(t)
	require.NoError(t, b.CreateStream(ctx, db.Pool, "short", StreamConfig{MaxLen: 3}))
	require.NoError(t, b.CreateStream(ctx, db.Pool, "aged", StreamConfig{MaxAge: time.Hour}))
	for i := 1; i <= 10; i++ {
		require.NoError(t, b.Publish(ctx, db.Pool, "short", fmt.Appendf(nil, "%d", i)))
		require.NoError(t, b.Publish(ctx, db.Pool, "aged", fmt.Appendf(nil, "%d", i)))
	}
	_, err := db.Pool.Exec(ctx, `UPDATE justpg.realtime_events SET created_at = now() - interval '2 hours'
		WHERE channel = 'aged' AND id <= 4`)
	require.NoError(t, err)
	res, err := b.Cleanup(ctx, db.Pool)
	require.NoError(t, err)
	assert.EqualValues(t, 7+4, res.Events)
	evs, err := b.ReadStream(ctx, db.Pool, "short", 0, 0)
	require.NoError(t, err)
	require.Len(t, evs, 3)
	assert.EqualValues(t, 8, evs[0].ID)

	s := subscribe(t, b, "short", From(2))
	ev := next(t, s)
	assert.Equal(t, GapTrimmed, ev.Gap)
	assert.EqualValues(t, 7, ev.ID)
	for i := 8; i <= 10; i++ {
		assert.EqualValues(t, i, next(t, s).ID)
	}
	// Changing the retention updates the stream.
	require.NoError(t, b.CreateStream(ctx, db.Pool, "short", StreamConfig{}))
	res, err = b.Cleanup(ctx, db.Pool)
	require.NoError(t, err)
	assert.Zero(t, res.Events)
}

func TestHotQueriesUseIndexes(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := ctxT(t)
	for _, c := range []struct{ sql, index string }{
		{`SELECT id, payload FROM justpg.realtime_events WHERE channel = 'c' AND id > 5 ORDER BY id LIMIT 10`, "realtime_events_pkey"},
		{`SELECT payload FROM justpg.realtime_payloads WHERE channel = 'c' AND id = 5`, "realtime_payloads_pkey"},
		{`DELETE FROM justpg.realtime_payloads WHERE created_at < now() - interval '1 hour'`, "realtime_payloads_created_at_idx"},
		{`UPDATE justpg.realtime_streams SET last_id = last_id + 1 WHERE channel = 'c'`, "realtime_streams_pkey"},
	} {
		var plan strings.Builder
		err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, `EXPLAIN `+c.sql)
			if err != nil {
				return err
			}
			lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
			plan.WriteString(strings.Join(lines, "\n"))
			return err
		})
		require.NoError(t, err)
		assert.Contains(t, plan.String(), c.index, c.sql)
	}
}

// TestPublishFastPath shows that a small payload on a channel without a
// stream is sent without calling the publishing function (counted with
// track_functions), that a channel with a stream still goes through it (its
// event is logged), and that such a channel gets exactly one notification
// per message (the bare pg_notify does not run as well).
func TestPublishFastPath(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := ctxT(t)
	b := startBroker(t, db.Pool, Config{})
	require.NoError(t, b.CreateStream(ctx, db.Pool, "logged", StreamConfig{}))
	// The calls of realtime_publish made by one Publish: the difference of
	// the backend's not yet reported counts around it.
	calls := func(ch string, payload string) int64 {
		var before, after int64
		const q = `SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions
			WHERE schemaname = 'justpg' AND funcname = 'realtime_publish'`
		require.NoError(t, pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL track_functions = 'pl'`); err != nil {
				return err
			}
			if err := tx.QueryRow(ctx, q).Scan(&before); err != nil {
				return err
			}
			if err := b.Publish(ctx, tx, ch, []byte(payload)); err != nil {
				return err
			}
			return tx.QueryRow(ctx, q).Scan(&after)
		}))
		return after - before
	}
	assert.Zero(t, calls("plain", "hello"), "a plain message is a bare pg_notify")
	assert.Equal(t, int64(1), calls("plain", "\x1eenvelope-like"), "a payload starting with 0x1e is escaped by the function")
	assert.Equal(t, int64(1), calls("plain", strings.Repeat("x", 8000)), "a large payload is stored by the function")

	s := subscribe(t, b, "logged")
	assert.Equal(t, int64(1), calls("logged", "one"))
	require.NoError(t, b.Publish(ctx, db.Pool, "logged", []byte("two")))
	ev := next(t, s)
	assert.Equal(t, Event{Channel: "logged", ID: 1, Payload: []byte("one")}, ev)
	ev = next(t, s)
	assert.Equal(t, Event{Channel: "logged", ID: 2, Payload: []byte("two")}, ev, "exactly one notification per stream message")
	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM justpg.realtime_events WHERE channel = 'logged'`).Scan(&n))
	assert.Equal(t, 2, n)
}

// TestPublishBatchFastPath: a batch of small payloads on channels without
// a stream is sent without calling the publishing functions, on one channel
// or several, in order; a batch that touches a stream channel (even one of
// several channels) or holds a large or 0x1e-prefixed payload goes through
// realtime_publish_many, which logs the stream's events.
func TestPublishBatchFastPath(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := ctxT(t)
	b := startBroker(t, db.Pool, Config{})
	require.NoError(t, b.CreateStream(ctx, db.Pool, "logged", StreamConfig{}))
	calls := func(msgs []Message) int64 {
		var before, after int64
		const q = `SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions
			WHERE schemaname = 'justpg' AND funcname IN ('realtime_publish', 'realtime_publish_many')`
		require.NoError(t, pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SET LOCAL track_functions = 'pl'`); err != nil {
				return err
			}
			if err := tx.QueryRow(ctx, q).Scan(&before); err != nil {
				return err
			}
			if err := b.PublishBatch(ctx, tx, msgs); err != nil {
				return err
			}
			return tx.QueryRow(ctx, q).Scan(&after)
		}))
		return after - before
	}
	a, c, logged := subscribe(t, b, "a"), subscribe(t, b, "c"), subscribe(t, b, "logged")
	var one, many []Message
	for i := range 30 {
		one = append(one, Message{Channel: "a", Payload: fmt.Appendf(nil, "one %d", i)})
		ch := "a"
		if i%3 == 1 {
			ch = "c"
		}
		many = append(many, Message{Channel: ch, Payload: fmt.Appendf(nil, "many %d", i)})
	}
	assert.Zero(t, calls(one), "one channel, small payloads: a bare pg_notify per message")
	assert.Zero(t, calls(many), "several channels, small payloads: a bare pg_notify per message")
	for i := range 30 {
		require.Equal(t, fmt.Sprintf("one %d", i), msg(t, a))
	}
	for i := range 30 {
		s := a
		if i%3 == 1 {
			s = c
		}
		require.Equal(t, fmt.Sprintf("many %d", i), msg(t, s))
	}

	mixed := []Message{{Channel: "a", Payload: []byte("m1")}, {Channel: "logged", Payload: []byte("m2")}, {Channel: "a", Payload: []byte("m3")}}
	assert.Positive(t, calls(mixed), "a stream channel in the batch: the function")
	assert.Equal(t, "m1", msg(t, a))
	assert.Equal(t, "m3", msg(t, a))
	assert.Equal(t, Event{Channel: "logged", ID: 1, Payload: []byte("m2")}, next(t, logged), "exactly one notification, with its id")
	assert.Positive(t, calls([]Message{{Channel: "logged", Payload: []byte("m4")}}), "a stream channel alone: the function")
	assert.Equal(t, Event{Channel: "logged", ID: 2, Payload: []byte("m4")}, next(t, logged))
	assert.Positive(t, calls([]Message{{Channel: "a", Payload: []byte("\x1eenv")}}), "an 0x1e payload: the function")
	assert.Equal(t, "\x1eenv", msg(t, a))
	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM justpg.realtime_events WHERE channel = 'logged'`).Scan(&n))
	assert.Equal(t, 2, n)
	assert.Zero(t, a.Buffered()+c.Buffered()+logged.Buffered(), "nothing delivered twice")
}

// TestIdlePing: an idle listener pings its connection (seen in
// pg_stat_activity as pgx's "-- ping"), and keeps delivering afterwards.
func TestIdlePing(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	cfg := fastCfg()
	cfg.PingInterval = 50 * time.Millisecond
	b := startBroker(t, db.Pool, cfg)
	s := subscribe(t, b, "idle")
	ctx := ctxT(t)
	require.Eventually(t, func() bool {
		var n int
		err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND query = '-- ping'`).Scan(&n)
		return err == nil && n > 0
	}, 15*time.Second, 20*time.Millisecond, "the idle listener pings")
	require.NoError(t, b.Publish(ctx, db.Pool, "idle", []byte("still here")))
	assert.Equal(t, "still here", msg(t, s))
	assert.Zero(t, b.Stats().Reconnects)
}

// A stream dropped (and created again) under a durable subscription, and a
// resume id beyond the stream's newest: a GapReset, then every event of the
// current log and live ones; nothing is dropped as "already seen".
func TestDurableStreamReset(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{})
	ctx := ctxT(t)
	require.NoError(t, b.CreateStream(ctx, db.Pool, "log", StreamConfig{}))
	s := subscribe(t, b, "log", From(0))
	for i := 1; i <= 3; i++ {
		require.NoError(t, b.Publish(ctx, db.Pool, "log", fmt.Appendf(nil, "old%d", i)))
		assert.Equal(t, Event{Channel: "log", ID: int64(i), Payload: fmt.Appendf(nil, "old%d", i)}, next(t, s))
	}

	require.NoError(t, b.DropStream(ctx, db.Pool, "log"))
	assert.Equal(t, Event{Channel: "log", Gap: GapReset}, next(t, s))
	require.NoError(t, b.Publish(ctx, db.Pool, "log", []byte("ephemeral")))
	assert.Equal(t, Event{Channel: "log", Payload: []byte("ephemeral")}, next(t, s))
	require.NoError(t, b.CreateStream(ctx, db.Pool, "log", StreamConfig{}))
	require.NoError(t, b.Publish(ctx, db.Pool, "log", []byte("new1")))
	assert.Equal(t, Event{Channel: "log", ID: 1, Payload: []byte("new1")}, next(t, s))
	requireEmpty(t, s)

	// A dropped stream that is gone: DropStream fails and sends nothing.
	require.NoError(t, b.DropStream(ctx, db.Pool, "log"))
	assert.Equal(t, Event{Channel: "log", Gap: GapReset}, next(t, s))
	assert.ErrorIs(t, b.DropStream(ctx, db.Pool, "log"), ErrNoStream)
	require.NoError(t, b.Publish(ctx, db.Pool, "log", []byte("after")))
	assert.Equal(t, Event{Channel: "log", Payload: []byte("after")}, next(t, s))
	requireEmpty(t, s)

	// Resuming beyond the newest id replays the current log from its start.
	require.NoError(t, b.CreateStream(ctx, db.Pool, "log", StreamConfig{}))
	require.NoError(t, b.Publish(ctx, db.Pool, "log", []byte("a")))
	require.NoError(t, b.Publish(ctx, db.Pool, "log", []byte("b")))
	r := subscribe(t, b, "log", From(3))
	assert.Equal(t, Event{Channel: "log", Gap: GapReset}, next(t, r))
	assert.Equal(t, Event{Channel: "log", ID: 1, Payload: []byte("a")}, next(t, r))
	assert.Equal(t, Event{Channel: "log", ID: 2, Payload: []byte("b")}, next(t, r))
	require.NoError(t, b.Publish(ctx, db.Pool, "log", []byte("c")))
	assert.Equal(t, Event{Channel: "log", ID: 3, Payload: []byte("c")}, next(t, r))
	requireEmpty(t, r)
	// and the subscription that followed all along saw the same.
	for i, p := range []string{"a", "b", "c"} {
		assert.Equal(t, Event{Channel: "log", ID: int64(i + 1), Payload: []byte(p)}, next(t, s))
	}
	assert.EqualValues(t, 3, b.Stats().Gaps, "three resets counted as gaps")
}
