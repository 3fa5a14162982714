package realtime

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
)

func TestPgNotifyOID(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	var oid uint32
	require.NoError(t, db.Pool.QueryRow(ctxT(t), `SELECT 'pg_catalog.pg_notify(text, text)'::regprocedure::oid`).Scan(&oid))
	require.Equal(t, uint32(pgNotifyOID), oid)
}

// connect opens a connection of its own to db's database (as url's role).
func connect(t *testing.T, url string, tweak ...func(*pgx.ConnConfig)) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	pgtest.ApplyExecMode(t, cfg)
	pgtest.ApplySession(t, cfg)
	for _, f := range tweak {
		f(cfg)
	}
	c, err := pgx.ConnectConfig(ctxT(t), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

func TestEphemeralThroughEveryKindOfDB(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{})
	ctx := ctxT(t)
	s := subscribe(t, b, "room:eph")
	payloads := []string{
		"hello",
		"",
		"\x1estarts with the separator",
		strings.Repeat("x", maxInline), // the largest inline payload
		"\x1e" + strings.Repeat("y", maxInline-3),      // escaped, just fits
		"\x1e" + strings.Repeat("z", maxInline-2),      // escaped, too large: stored
		strings.Repeat("ü", 6000),                      // 12,000 bytes: stored
		`{"typing": true, "user": "o'brien; DROP --"}`, // quotes are data
	}
	publishAll := func(db DB) {
		t.Helper()
		for _, p := range payloads {
			require.NoError(t, b.Publish(ctx, db, "room:eph", []byte(p), Ephemeral()))
		}
	}
	receiveAll := func(how string) {
		t.Helper()
		for i, want := range payloads {
			got := next(t, s)
			require.False(t, got.IsGap(), "%s: gap %s", how, got.Gap)
			require.Equal(t, want, string(got.Payload), "%s: payload %d", how, i)
			require.Zero(t, got.ID)
		}
	}

	publishAll(db.Pool)
	receiveAll("pool")

	pc, err := db.Pool.Acquire(ctx)
	require.NoError(t, err)
	publishAll(pc)
	pc.Release()
	receiveAll("*pgxpool.Conn")

	conn := connect(t, db.URL)
	publishAll(conn)
	receiveAll("*pgx.Conn")

	// A transaction opened with SQL on a connection: the call joins it.
	_, err = conn.Exec(ctx, "BEGIN")
	require.NoError(t, err)
	publishAll(conn)
	_, err = conn.Exec(ctx, "ROLLBACK")
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "BEGIN")
	require.NoError(t, err)
	publishAll(conn)
	_, err = conn.Exec(ctx, "COMMIT")
	require.NoError(t, err)
	receiveAll("*pgx.Conn in BEGIN ... COMMIT (nothing of the rolled back one)")

	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	publishAll(tx)
	require.NoError(t, tx.Rollback(ctx))
	tx, err = conn.Begin(ctx)
	require.NoError(t, err)
	publishAll(tx)
	require.NoError(t, tx.Commit(ctx))
	receiveAll("pgx.Tx (nothing of the rolled back one)")

	// A marker proves nothing else was queued.
	require.NoError(t, b.Publish(ctx, db.Pool, "room:eph", []byte("end")))
	require.Equal(t, "end", msg(t, s))
	requireEmpty(t, s)

	// A transaction that is over refuses, as pgx does for any statement.
	err = b.Publish(ctx, tx, "room:eph", []byte("late"), Ephemeral())
	require.ErrorIs(t, err, pgx.ErrTxClosed)
}

func TestEphemeralIsNotLoggedInAStream(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{})
	ctx := ctxT(t)
	require.NoError(t, b.CreateStream(ctx, db.Pool, "orders", StreamConfig{}))
	s := subscribe(t, b, "orders", From(0))
	big := strings.Repeat("b", 9000)

	require.NoError(t, b.Publish(ctx, db.Pool, "orders", []byte("logged 1")))
	require.NoError(t, b.Publish(ctx, db.Pool, "orders", []byte("live only"), Ephemeral()))
	require.NoError(t, b.Publish(ctx, db.Pool, "orders", []byte(big), Ephemeral()))
	require.NoError(t, b.Publish(ctx, db.Pool, "orders", []byte("logged 2")))

	for _, want := range []struct {
		payload string
		id      int64
	}{{"logged 1", 1}, {"live only", 0}, {big, 0}, {"logged 2", 2}} {
		ev := next(t, s)
		require.False(t, ev.IsGap())
		require.Equal(t, want.payload, string(ev.Payload))
		require.Equal(t, want.id, ev.ID, "id of %.20q", want.payload)
	}
	evs, err := b.ReadStream(ctx, db.Pool, "orders", 0, 0)
	require.NoError(t, err)
	require.Len(t, evs, 2)
	assert.Equal(t, "logged 1", string(evs[0].Payload))
	assert.Equal(t, "logged 2", string(evs[1].Payload))

	// A subscriber resuming after id 1 gets the logged event only.
	r := subscribe(t, b, "orders", From(1))
	ev := next(t, r)
	require.Equal(t, "logged 2", string(ev.Payload))
	require.Equal(t, int64(2), ev.ID)
	requireEmpty(t, r)
}

// countingTracer counts the statements pgx sends on a connection.
type countingTracer struct{ n atomic.Int64 }

func (c *countingTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}

func (*countingTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func TestEphemeralUsesTheFunctionCall(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{})
	plain, err := New(db.Pool, Config{DisableFastPath: true})
	require.NoError(t, err)
	ctx := ctxT(t)
	s := subscribe(t, b, "fp")
	tr := &countingTracer{}
	conn := connect(t, db.URL, func(c *pgx.ConnConfig) { c.Tracer = tr })

	require.NoError(t, b.Publish(ctx, conn, "fp", []byte("function call"), Ephemeral()))
	require.Equal(t, "function call", msg(t, s))
	require.Zero(t, tr.n.Load(), "an ephemeral publish through a connection sent a statement")

	require.NoError(t, plain.Publish(ctx, conn, "fp", []byte("statement"), Ephemeral()))
	require.Equal(t, "statement", msg(t, s))
	require.Equal(t, int64(1), tr.n.Load(), "with DisableFastPath one statement")

	// Large payloads need a statement either way.
	require.NoError(t, b.Publish(ctx, conn, "fp", []byte(strings.Repeat("l", 8000)), Ephemeral()))
	require.Equal(t, strings.Repeat("l", 8000), msg(t, s))
	require.Equal(t, int64(2), tr.n.Load())
}

func TestEphemeralBadInputAndServerErrors(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{})
	ctx := ctxT(t)
	s := subscribe(t, b, "errs")

	require.ErrorIs(t, b.Publish(ctx, db.Pool, "bad channel", []byte("x"), Ephemeral()), ErrInvalidChannel)
	require.ErrorIs(t, b.Publish(ctx, db.Pool, "errs", []byte("nul\x00"), Ephemeral()), ErrInvalidPayload)
	require.ErrorIs(t, b.Publish(ctx, db.Pool, "errs", []byte{0xff, 0xfe}, Ephemeral()), ErrInvalidPayload)
	require.NoError(t, b.Publish(ctx, db.Pool, "errs", []byte("ok"), nil, Ephemeral()), "a nil option is ignored")
	require.Equal(t, "ok", msg(t, s))

	done, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, b.Publish(done, db.Pool, "errs", []byte("x"), Ephemeral()), context.Canceled)

	// A role that may not call pg_notify: the server's error comes back and
	// the connection stays usable, in and out of a transaction.
	role := pgx.Identifier{"notifier_" + strings.ReplaceAll(db.Name, "-", "_")}.Sanitize()
	_, err := db.Pool.Exec(ctx, fmt.Sprintf(`CREATE ROLE %s; REVOKE EXECUTE ON FUNCTION pg_notify(text, text) FROM PUBLIC`, role))
	require.NoError(t, err)
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), db.Server.AdminURL())
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP ROLE "+role)
			_ = c.Close(context.Background())
		}
	})
	conn := connect(t, db.URL)
	_, err = conn.Exec(ctx, "SET ROLE "+role)
	require.NoError(t, err)
	err = b.Publish(ctx, conn, "errs", []byte("denied"), Ephemeral())
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "42501", pgErr.Code, "permission denied")
	var one int
	require.NoError(t, conn.QueryRow(ctx, "SELECT 1").Scan(&one))
	require.Equal(t, byte('I'), conn.PgConn().TxStatus())

	_, err = conn.Exec(ctx, "BEGIN")
	require.NoError(t, err)
	require.ErrorAs(t, b.Publish(ctx, conn, "errs", []byte("denied"), Ephemeral()), &pgErr)
	require.Equal(t, byte('E'), conn.PgConn().TxStatus(), "pgconn saw the failed transaction")
	require.ErrorAs(t, b.Publish(ctx, conn, "errs", []byte("after"), Ephemeral()), &pgErr)
	require.Equal(t, "25P02", pgErr.Code, "in a failed transaction")
	_, err = conn.Exec(ctx, "ROLLBACK")
	require.NoError(t, err)

	// A connection in the middle of another operation is refused, and the
	// operation is not disturbed.
	busy := connect(t, db.URL)
	rows2, err := busy.Query(ctx, "SELECT g FROM generate_series(1, 3) g")
	require.NoError(t, err)
	require.ErrorIs(t, b.Publish(ctx, busy, "errs", []byte("busy"), Ephemeral()), errConnBusy)
	n := 0
	for rows2.Next() {
		n++
	}
	require.NoError(t, rows2.Err())
	require.Equal(t, 3, n)

	require.NoError(t, b.Publish(ctx, busy, "errs", []byte("end"), Ephemeral()))
	require.Equal(t, "end", msg(t, s))
	requireEmpty(t, s)
}

// stallProxy forwards one TCP connection to addr; while stalled it stops
// passing the server's bytes to the client.
type stallProxy struct {
	ln      net.Listener
	target  string
	stalled atomic.Bool
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &stallProxy{ln: ln, target: target}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	t.Cleanup(func() {
		p.stalled.Store(false)
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			track(c)
			track(s)
			wg.Go(func() { _, _ = io.Copy(s, c); s.Close() })
			wg.Go(func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := s.Read(buf)
					for p.stalled.Load() {
						time.Sleep(5 * time.Millisecond)
					}
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				c.Close()
			})
		}
	})
	return p
}

func TestEphemeralFaults(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{})
	ctx := ctxT(t)
	s := subscribe(t, b, "faults")

	// The connection's backend is killed: the call fails and the pool
	// drops the connection; the next publish works.
	pc, err := db.Pool.Acquire(ctx)
	require.NoError(t, err)
	var killed bool
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, pc.Conn().PgConn().PID()).Scan(&killed))
	require.True(t, killed)
	require.Eventually(t, func() bool {
		var n int
		_ = db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, pc.Conn().PgConn().PID()).Scan(&n)
		return n == 0
	}, 10*time.Second, 10*time.Millisecond)
	require.Error(t, b.Publish(ctx, pc, "faults", []byte("lost"), Ephemeral()))
	require.True(t, pc.Conn().IsClosed())
	require.ErrorIs(t, b.Publish(ctx, pc, "faults", []byte("lost"), Ephemeral()), errConnClosed)
	pc.Release()
	for range 3 {
		require.NoError(t, b.Publish(ctx, db.Pool, "faults", []byte("after kill"), Ephemeral()))
		require.Equal(t, "after kill", msg(t, s))
	}

	// The server stops answering mid-call: ctx ends the call, the
	// connection is closed rather than left with half a response.
	cfg, err := pgx.ParseConfig(db.URL)
	require.NoError(t, err)
	proxy := newStallProxy(t, fmt.Sprintf("%s:%d", cfg.Host, cfg.Port))
	conn := connect(t, db.URL, func(c *pgx.ConnConfig) {
		c.Host, c.Port = "127.0.0.1", uint16(proxy.ln.Addr().(*net.TCPAddr).Port)
		c.Fallbacks = nil
	})
	require.NoError(t, b.Publish(ctx, conn, "faults", []byte("through the proxy"), Ephemeral()))
	require.Equal(t, "through the proxy", msg(t, s))
	proxy.stalled.Store(true)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = b.Publish(short, conn, "faults", []byte("stalled"), Ephemeral())
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.False(t, pgconn.SafeToRetry(err), "the call was sent: retrying could publish twice")
	require.True(t, conn.IsClosed(), "a connection cut mid-call must not be reused")
	proxy.stalled.Store(false)
	// The server did run the call; its notification arrives.
	require.Equal(t, "stalled", msg(t, s))

	// A context that ends after the call completed leaves the connection
	// usable (its deadline cleared).
	conn2 := connect(t, db.URL)
	for i := range 200 {
		c, cancel := context.WithCancel(ctx)
		go cancel()
		err := b.Publish(c, conn2, "faults", []byte("race"), Ephemeral())
		if err != nil {
			require.ErrorIs(t, err, context.Canceled, "publish %d", i)
			if conn2.IsClosed() {
				conn2 = connect(t, db.URL)
			}
			continue
		}
		var one int
		require.NoError(t, conn2.QueryRow(ctx, "SELECT 1").Scan(&one), "publish %d left a bad connection", i)
	}
}

func TestEphemeralConcurrentPublishers(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{BufferSize: 4096})
	ctx := ctxT(t)
	s := subscribe(t, b, "many")
	const pubs, per = 8, 150
	errs := make(chan error, pubs)
	var wg sync.WaitGroup
	for p := range pubs {
		wg.Go(func() {
			for i := range per {
				if err := b.Publish(ctx, db.Pool, "many", fmt.Appendf(nil, "%d:%d", p, i), Ephemeral()); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	last := make([]int, pubs)
	for i := range last {
		last[i] = -1
	}
	for range pubs * per {
		var p, i int
		_, err := fmt.Sscanf(msg(t, s), "%d:%d", &p, &i)
		require.NoError(t, err)
		require.Equal(t, last[p]+1, i, "publisher %d out of order", p)
		last[p] = i
	}
	requireEmpty(t, s)
}

// TestPublishInEveryExecMode publishes through pools in each of pgx's query
// exec modes. In the exec and simple-protocol modes pgx does not learn the
// parameter types first and sends a []byte as bytea, so a payload passed
// as []byte to a text parameter arrived hex-encoded ("\x6869…").
func TestPublishInEveryExecMode(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{})
	plain, err := New(db.Pool, Config{DisableFastPath: true})
	require.NoError(t, err)
	ctx := ctxT(t)
	require.NoError(t, b.CreateStream(ctx, db.Pool, "modes:durable", StreamConfig{}))
	live := subscribe(t, b, "modes:live")
	durable := subscribe(t, b, "modes:durable", From(0))
	big := strings.Repeat("ß", 5000) // 10,000 bytes: stored
	for _, mode := range pgtest.ExecModes {
		cfg, err := pgxpool.ParseConfig(db.URL)
		require.NoError(t, err)
		cfg.ConnConfig.DefaultQueryExecMode = mode
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		require.NoError(t, err)
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		type pub struct {
			br    *Broker
			db    DB
			ch, p string
			opts  []PublishOption
		}
		for i, p := range []pub{
			{b, pool, "modes:live", "plain", nil},
			{b, pool, "modes:live", "\x1eescaped", nil},
			{b, pool, "modes:live", big, nil},
			{b, pool, "modes:live", "ephemeral", []PublishOption{Ephemeral()}},
			{b, pool, "modes:live", big + "e", []PublishOption{Ephemeral()}},
			{plain, pool, "modes:live", "statement", []PublishOption{Ephemeral()}},
			{b, tx, "modes:live", "in a transaction", []PublishOption{Ephemeral()}},
			{b, pool, "modes:durable", "logged", nil},
			{b, pool, "modes:durable", big + "d", nil},
		} {
			require.NoError(t, p.br.Publish(ctx, p.db, p.ch, []byte(p.p), p.opts...), "%v: publish %d", mode, i)
		}
		require.NoError(t, tx.Commit(ctx))
		require.NoError(t, b.PublishBatch(ctx, pool, []Message{{"modes:live", []byte("batch 1")}, {"modes:live", []byte("batch 2")}}))
		for _, want := range []string{"plain", "\x1eescaped", big, "ephemeral", big + "e", "statement", "in a transaction", "batch 1", "batch 2"} {
			require.Equal(t, want, msg(t, live), "%v", mode)
		}
		for _, want := range []string{"logged", big + "d"} {
			ev := next(t, durable)
			require.Equal(t, want, string(ev.Payload), "%v", mode)
			require.Positive(t, ev.ID)
		}
		pool.Close()
	}
	evs, err := b.ReadStream(ctx, db.Pool, "modes:durable", 0, 0)
	require.NoError(t, err)
	require.Len(t, evs, 10)
	for i, ev := range evs {
		require.Equal(t, map[bool]string{true: "logged", false: big + "d"}[i%2 == 0], string(ev.Payload))
	}
}
