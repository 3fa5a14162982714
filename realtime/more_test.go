package realtime

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/justpg/justpg/internal/pgtest"
)

func TestTableChangesTrigger(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{})
	ctx := ctxT(t)
	_, err := db.Pool.Exec(ctx, `CREATE TABLE "Todo Items" (id int PRIMARY KEY, title text, done bool, secret text)`)
	require.NoError(t, err)
	tc := TableChanges{Table: "Todo Items", Channel: "todos", Key: []string{"id"}, Columns: []string{"title", "done"}}
	sql, err := b.TableChangesSQL(tc)
	require.NoError(t, err)
	assert.Contains(t, sql, `ON "public"."Todo Items"`)
	assert.Contains(t, sql, `"justpg"."realtime_table_change"('todos', '["id"]', '["title","done"]')`)
	require.NoError(t, b.InstallTableChanges(ctx, db.Pool, tc))
	require.NoError(t, b.InstallTableChanges(ctx, db.Pool, tc), "re-installing replaces the trigger")

	s := subscribe(t, b, "todos")
	type key struct {
		ID int `json:"id"`
	}
	type data struct {
		Title string `json:"title"`
		Done  bool   `json:"done"`
	}
	_, err = db.Pool.Exec(ctx, `INSERT INTO "Todo Items" VALUES (1, 'milk', false, 'hidden')`)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `UPDATE "Todo Items" SET done = true WHERE id = 1`)
	require.NoError(t, err)
	// Rolled back changes publish nothing.
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO "Todo Items" VALUES (2, 'x', false, '')`)
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))
	_, err = db.Pool.Exec(ctx, `DELETE FROM "Todo Items" WHERE id = 1`)
	require.NoError(t, err)

	want := []TableChange[key, data]{
		{Op: "INSERT", Schema: "public", Table: "Todo Items", Key: key{1}, Data: data{"milk", false}},
		{Op: "UPDATE", Schema: "public", Table: "Todo Items", Key: key{1}, Data: data{"milk", true}},
		{Op: "DELETE", Schema: "public", Table: "Todo Items", Key: key{1}, Data: data{"milk", true}},
	}
	for _, w := range want {
		ev := next(t, s)
		assert.NotContains(t, string(ev.Payload), "hidden", "only chosen columns are published")
		got, err := DecodeJSON[TableChange[key, data]](ev)
		require.NoError(t, err)
		assert.Equal(t, w, got)
	}
	requireEmpty(t, s)

	require.NoError(t, b.RemoveTableChanges(ctx, db.Pool, "", "Todo Items", ""))
	_, err = db.Pool.Exec(ctx, `INSERT INTO "Todo Items" VALUES (3, 'gone', false, '')`)
	require.NoError(t, err)
	require.NoError(t, b.Publish(ctx, db.Pool, "todos", []byte("marker")))
	assert.Equal(t, "marker", msg(t, s))

	// Bad input.
	for _, bad := range []TableChanges{
		{Table: "", Channel: "c", Key: []string{"id"}},
		{Table: "t", Channel: "bad channel", Key: []string{"id"}},
		{Table: "t", Channel: "c"},
		{Table: "t", Channel: "c", Key: []string{""}},
		{Table: "t", Channel: "c", Key: []string{"id"}, Trigger: strings.Repeat("x", 64)},
	} {
		_, err := b.TableChangesSQL(bad)
		assert.Error(t, err, "%+v", bad)
	}
	err = b.InstallTableChanges(ctx, db.Pool, TableChanges{Table: "Todo Items", Channel: "c", Key: []string{"id"}, Columns: []string{"nope"}})
	assert.ErrorContains(t, err, "nope")
}

// Two tenants write to their durable streams inside tenant-scoped
// transactions; with RLS on the package's tables neither sees, nor writes
// into, the other's log.
func TestTenantIsolationWithRLS(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := ctxT(t)
	role := "rt_" + strings.TrimPrefix(db.Name, "justpg_test_")
	_, err := db.Pool.Exec(ctx, `CREATE ROLE `+role+` LOGIN PASSWORD 'pw' NOSUPERUSER NOBYPASSRLS`)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = db.Pool.Exec(context.Background(), `DROP OWNED BY `+role)
		_, _ = db.Pool.Exec(context.Background(), `DROP ROLE `+role)
	})
	for _, tbl := range []string{"realtime_streams", "realtime_events", "realtime_payloads"} {
		_, err = db.Pool.Exec(ctx, `ALTER TABLE justpg.`+tbl+` ENABLE ROW LEVEL SECURITY;
			CREATE POLICY tenant ON justpg.`+tbl+` USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid))`)
		require.NoError(t, err)
	}
	_, err = db.Pool.Exec(ctx, `GRANT USAGE ON SCHEMA justpg TO `+role+`;
		GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA justpg TO `+role)
	require.NoError(t, err)

	cfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	pgtest.ApplyExecMode(t, cfg.ConnConfig)
	pgtest.ApplySession(t, cfg.ConnConfig)
	cfg.ConnConfig.User, cfg.ConnConfig.Password = role, "pw"
	cfg.MaxConns = 2
	app, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(app.Close)
	b, err := New(app, Config{})
	require.NoError(t, err)

	const tenantA, tenantB = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
	asTenant := func(tenant string, fn func(tx pgx.Tx)) {
		require.NoError(t, pgx.BeginFunc(ctx, app, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true)`, tenant)
			require.NoError(t, err)
			fn(tx)
			return nil
		}))
	}
	asTenant(tenantA, func(tx pgx.Tx) {
		require.NoError(t, b.CreateStream(ctx, tx, "a.log", StreamConfig{}))
		require.NoError(t, b.Publish(ctx, tx, "a.log", []byte("a1")))
		require.NoError(t, b.Publish(ctx, tx, "a.log", []byte(strings.Repeat("A", 9000))))
	})
	asTenant(tenantB, func(tx pgx.Tx) {
		require.NoError(t, b.CreateStream(ctx, tx, "b.log", StreamConfig{}))
		require.NoError(t, b.Publish(ctx, tx, "b.log", []byte("b1")))
		// B cannot append to A's log: A's stream is invisible, so this is
		// an ephemeral message.
		require.NoError(t, b.Publish(ctx, tx, "a.log", []byte("from b")))
	})
	asTenant(tenantA, func(tx pgx.Tx) {
		evs, err := b.ReadStream(ctx, tx, "a.log", 0, 0)
		require.NoError(t, err)
		require.Len(t, evs, 2)
		assert.Equal(t, "a1", string(evs[0].Payload))
		evs, err = b.ReadStream(ctx, tx, "b.log", 0, 0)
		require.NoError(t, err)
		assert.Empty(t, evs, "tenant A must not read tenant B's events")
	})
	asTenant(tenantB, func(tx pgx.Tx) {
		evs, err := b.ReadStream(ctx, tx, "b.log", 0, 0)
		require.NoError(t, err)
		require.Len(t, evs, 1)
		evs, err = b.ReadStream(ctx, tx, "a.log", 0, 0)
		require.NoError(t, err)
		assert.Empty(t, evs, "tenant B must not read tenant A's events")
	})
	// The rows carry their tenant (seen by the table owner).
	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM justpg.realtime_events
		WHERE (channel = 'a.log' AND tenant_id = $1) OR (channel = 'b.log' AND tenant_id = $2)`, tenantA, tenantB).Scan(&n))
	assert.Equal(t, 3, n)
}

// Not parallel: parallel tests are paused while it runs, so every goroutine
// it finds afterwards beyond the ignored ones would be a leak of the broker.
func TestNoGoroutineLeakAfterStop(t *testing.T) {
	db := newDB(t) // the shared server and its helpers exist before the snapshot
	defer verifyNoLeak(t, goleak.IgnoreCurrent())
	pool, err := pgxpool.New(context.Background(), db.URL)
	require.NoError(t, err)
	defer pool.Close()
	b, err := New(pool, Config{MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, CleanupInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	ctx := ctxT(t)
	require.NoError(t, b.Start(ctx))
	s1, err := b.Subscribe(ctx, "a")
	require.NoError(t, err)
	s2, err := b.Subscribe(ctx, "b", WithBuffer(1))
	require.NoError(t, err)
	require.NoError(t, b.Publish(ctx, pool, "b", []byte("1")))
	require.NoError(t, b.Publish(ctx, pool, "b", []byte("2")))
	db.TerminateBackends(t) // exercise the reconnect path
	ev, err := s1.Next(ctx)
	require.NoError(t, err)
	assert.Equal(t, GapReconnect, ev.Gap)
	time.Sleep(30 * time.Millisecond) // let the cleanup loop run
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, b.Stop(stopCtx))
	require.NoError(t, b.Stop(stopCtx), "Stop is idempotent")
	_, err = s2.Next(ctx) // buffered events first, then closed
	require.NoError(t, err)
	for {
		if _, err = s2.Next(ctx); err != nil {
			break
		}
	}
	assert.ErrorIs(t, err, ErrClosed)
	_, err = b.Subscribe(ctx, "c")
	assert.ErrorIs(t, err, ErrNotRunning)
	require.Eventually(t, func() bool { return pool.Stat().AcquiredConns() == 0 }, 10*time.Second, 10*time.Millisecond,
		"the listener connection is released")
	pool.Close()
}

// Stopping via the context given to Start also releases everything.
func TestStartContextCancelStops(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b, err := New(db.Pool, Config{})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	require.NoError(t, b.Start(ctx))
	s, err := b.Subscribe(ctxT(t), "x")
	require.NoError(t, err)
	cancel()
	_, err = s.Next(ctxT(t))
	assert.ErrorIs(t, err, ErrClosed)
	require.Eventually(t, func() bool { return db.Pool.Stat().AcquiredConns() == 0 }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, b.Stop(ctxT(t)))
}

func FuzzValidateChannel(f *testing.F) {
	for _, s := range []string{"", "a", "user:42", "room.lobby", "x y", `a"b`, "Ü", strings.Repeat("a", 63), strings.Repeat("a", 64), "a\x00b", "@-_.:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidateChannel(name)
		if err != nil {
			return
		}
		if len(name) == 0 || len(name) > 63 {
			t.Fatalf("accepted %q of length %d", name, len(name))
		}
		q, err := quoteChannel(name)
		if err != nil {
			t.Fatalf("valid %q does not quote: %v", name, err)
		}
		if q != `"`+name+`"` {
			t.Fatalf("valid %q quoted as %s: the charset must not need escaping", name, q)
		}
	})
}

var _ = pgtest.Main

func FuzzParseEnvelope(f *testing.F) {
	for _, s := range []string{"", "plain", "\x1e", "\x1eP", "\x1ePx", "\x1eR12", "\x1eR-1", "\x1ee3:hi", "\x1ee:x", "\x1eE9", "\x1eZ1", "\x1ee99999999999999999999:x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		kind, id, body := parseEnvelope(p)
		switch kind {
		case envPlain:
			if body != p || id != 0 {
				t.Fatalf("plain %q changed to %q", p, body)
			}
		case envEscaped:
			if "\x1eP"+body != p {
				t.Fatalf("escaped %q -> %q", p, body)
			}
		case envEvent:
			if id <= 0 || !strings.HasSuffix(p, ":"+body) {
				t.Fatalf("event %q -> %d %q", p, id, body)
			}
		case envStored, envBigEvent:
			if id <= 0 || body != "" {
				t.Fatalf("reference %q -> %d %q", p, id, body)
			}
		default:
			t.Fatalf("unknown kind %q for %q", kind, p)
		}
	})
}

func FuzzParseResumeAndLastEventID(f *testing.F) {
	for _, s := range []string{"", "room:1:5", "a=1&b=2", "room%3A1=3", "x:-1", ":5", "%zz", "bad name:1", "a=1&a=2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if m, err := parseResume([]string{s}); err == nil {
			for ch, id := range m {
				if ValidateChannel(ch) != nil || id < 0 {
					t.Fatalf("parseResume(%q) accepted %q=%d", s, ch, id)
				}
			}
		}
		if m, err := parseLastEventID(s); err == nil {
			for ch, id := range m {
				if ValidateChannel(ch) != nil || id < 0 {
					t.Fatalf("parseLastEventID(%q) accepted %q=%d", s, ch, id)
				}
			}
		}
	})
}

func TestResumeBacklogLongerThanBuffer(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{})
	ctx := ctxT(t)
	require.NoError(t, b.CreateStream(ctx, db.Pool, "backlog", StreamConfig{}))
	var batch []Message
	for i := 1; i <= 10; i++ {
		batch = append(batch, Message{Channel: "backlog", Payload: fmt.Appendf(nil, "%d", i)})
	}
	require.NoError(t, b.PublishBatch(ctx, db.Pool, batch))
	s := subscribe(t, b, "backlog", From(0), WithBuffer(3))
	for i := 1; i <= 3; i++ {
		assert.EqualValues(t, i, next(t, s).ID)
	}
	ev := next(t, s)
	assert.Equal(t, GapOverflow, ev.Gap)
	assert.EqualValues(t, 3, ev.ID)
	rest, err := b.ReadStream(ctx, db.Pool, "backlog", ev.ID, 0)
	require.NoError(t, err)
	require.Len(t, rest, 7)
	assert.EqualValues(t, 4, rest[0].ID)
	// Live events continue after the gap.
	require.NoError(t, b.Publish(ctx, db.Pool, "backlog", []byte("11")))
	assert.EqualValues(t, 11, next(t, s).ID)
}

// No goroutine of the bridge (socket writers, room relays, durable pumps)
// is left behind once its clients are gone and the broker stopped.
func TestNoGoroutineLeakBridge(t *testing.T) {
	db := newDB(t)
	defer verifyNoLeak(t, goleak.IgnoreCurrent())
	ctx := ctxT(t)
	pool, err := pgxpool.New(ctx, db.URL)
	require.NoError(t, err)
	defer pool.Close()
	b, err := New(pool, Config{CleanupInterval: -1})
	require.NoError(t, err)
	require.NoError(t, b.Start(ctx))
	require.NoError(t, b.CreateStream(ctx, pool, "room:log", StreamConfig{}))
	br, err := NewBridge(b, BridgeConfig{Authorize: testAuthorize})
	require.NoError(t, err)
	srv := httptest.NewServer(br)
	defer srv.Close()
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/?user="
	c1, _, err := websocket.Dial(ctx, wsURL+"a", nil)
	require.NoError(t, err)
	defer c1.CloseNow()
	c2, _, err := websocket.Dial(ctx, wsURL+"b", nil)
	require.NoError(t, err)
	defer c2.CloseNow()
	for _, c := range []*websocket.Conn{c1, c2} {
		sendWire(t, c, map[string]any{"type": "join", "channel": "room:x"})
		assert.Equal(t, "joined", readWire(t, c).Type)
	}
	sendWire(t, c2, map[string]any{"type": "join", "channel": "room:log", "since": 0})
	assert.Equal(t, "joined", readWire(t, c2).Type)
	require.NoError(t, b.Publish(ctx, pool, "room:x", []byte("1")))
	assert.Equal(t, "message", readWire(t, c1).Type)
	assert.Equal(t, "message", readWire(t, c2).Type)

	require.NoError(t, c1.Close(websocket.StatusNormalClosure, "bye"))
	require.NoError(t, b.Stop(ctx))
	// The socket ends with its close status even if the writer had not
	// yet returned from writing the last message when the broker stopped
	// (a write in progress is given a grace period, not closed under it).
	err = closeErr(t, c2)
	assert.Equal(t, websocket.StatusGoingAway, websocket.CloseStatus(err), "%v", err)
	require.Eventually(t, func() bool { return br.Clients() == 0 }, 10*time.Second, 10*time.Millisecond)
	srv.Close()
	pool.Close()
}

// The project's convention for background components under RLS: the
// listener runs on a separate "system" pool whose role has BYPASSRLS, while
// the app publishes inside tenant-scoped transactions on a pool whose role
// is subject to the policies. Stored large payloads and stream backlogs of
// every tenant are then resolved by the listener.
func TestListenerOnSystemPoolUnderRLS(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := ctxT(t)
	suffix := strings.TrimPrefix(db.Name, "justpg_test_")
	appRole, sysRole := "rta_"+suffix, "rts_"+suffix
	_, err := db.Pool.Exec(ctx, `CREATE ROLE `+appRole+` LOGIN PASSWORD 'pw' NOSUPERUSER NOBYPASSRLS;
		CREATE ROLE `+sysRole+` LOGIN PASSWORD 'pw' NOSUPERUSER BYPASSRLS`)
	require.NoError(t, err)
	t.Cleanup(func() {
		for _, r := range []string{appRole, sysRole} {
			_, _ = db.Pool.Exec(context.Background(), `DROP OWNED BY `+r)
			_, _ = db.Pool.Exec(context.Background(), `DROP ROLE `+r)
		}
	})
	for _, tbl := range []string{"realtime_streams", "realtime_events", "realtime_payloads"} {
		_, err = db.Pool.Exec(ctx, `ALTER TABLE justpg.`+tbl+` ENABLE ROW LEVEL SECURITY;
			ALTER TABLE justpg.`+tbl+` FORCE ROW LEVEL SECURITY;
			CREATE POLICY tenant ON justpg.`+tbl+` USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid))`)
		require.NoError(t, err)
	}
	_, err = db.Pool.Exec(ctx, `GRANT USAGE ON SCHEMA justpg TO `+appRole+`, `+sysRole+`;
		GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA justpg TO `+appRole+`, `+sysRole)
	require.NoError(t, err)
	poolAs := func(role string) *pgxpool.Pool {
		cfg, err := pgxpool.ParseConfig(db.URL)
		require.NoError(t, err)
		pgtest.ApplyExecMode(t, cfg.ConnConfig)
		pgtest.ApplySession(t, cfg.ConnConfig)
		cfg.ConnConfig.User, cfg.ConnConfig.Password = role, "pw"
		cfg.MaxConns = 3
		p, err := pgxpool.NewWithConfig(ctx, cfg)
		require.NoError(t, err)
		t.Cleanup(p.Close)
		return p
	}
	app, system := poolAs(appRole), poolAs(sysRole)
	b := startBroker(t, system, Config{})

	const tenantA = "11111111-1111-1111-1111-111111111111"
	big := strings.Repeat("A", 9000)
	inTenant := func(fn func(tx pgx.Tx) error) {
		require.NoError(t, pgx.BeginFunc(ctx, app, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true)`, tenantA); err != nil {
				return err
			}
			return fn(tx)
		}))
	}
	inTenant(func(tx pgx.Tx) error { return b.CreateStream(ctx, tx, "t.a.log", StreamConfig{}) })
	live := subscribe(t, b, "t.a.big")
	inTenant(func(tx pgx.Tx) error {
		if err := b.Publish(ctx, tx, "t.a.log", []byte("e1")); err != nil {
			return err
		}
		if err := b.Publish(ctx, tx, "t.a.log", []byte(big)); err != nil {
			return err
		}
		return b.Publish(ctx, tx, "t.a.big", []byte(big))
	})
	assert.Equal(t, big, msg(t, live), "the system listener resolves the tenant's stored payload")

	// A durable subscription's backlog (read by the listener) holds both events.
	s := subscribe(t, b, "t.a.log", From(0))
	ev := next(t, s)
	assert.Equal(t, "e1", string(ev.Payload))
	ev = next(t, s)
	assert.Equal(t, big, string(ev.Payload))
	assert.Equal(t, int64(2), ev.ID)

	// Without a tenant, the app role sees none of it.
	var n int
	require.NoError(t, app.QueryRow(ctx, `SELECT count(*) FROM justpg.realtime_events`).Scan(&n))
	assert.Zero(t, n)
}

// verifyNoLeak fails if goroutines other than those in snapshot remain. It
// first gives them up to 15s to end (goleak alone retries for about a
// second, too short on a loaded machine for connections being torn down).
func verifyNoLeak(t *testing.T, snapshot goleak.Option) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for goleak.Find(snapshot) != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	goleak.VerifyNone(t, snapshot)
}

// TestEventRing: FIFO order across wrap-around and growth while wrapped,
// last, and release after a large burst.
func TestEventRing(t *testing.T) {
	var r eventRing
	ev := func(i int) Event { return Event{ID: int64(i)} }
	next := 0
	pushed := 0
	for round := range 50 {
		for range round%7 + 1 {
			pushed++
			r.push(ev(pushed))
			require.Equal(t, int64(pushed), r.last().ID)
		}
		for range round % 5 {
			got, ok := r.pop()
			if next == pushed {
				require.False(t, ok)
				continue
			}
			next++
			require.True(t, ok)
			require.Equal(t, int64(next), got.ID)
		}
	}
	for next < pushed {
		got, ok := r.pop()
		next++
		require.True(t, ok)
		require.Equal(t, int64(next), got.ID)
	}
	_, ok := r.pop()
	require.False(t, ok)
	require.Nil(t, r.last())
	for i := range 5000 {
		r.push(ev(i))
	}
	require.Equal(t, 5000, r.n)
	for range 5000 {
		_, ok := r.pop()
		require.True(t, ok)
	}
	assert.Nil(t, r.buf, "a drained large ring is released")
}
