package realtime_test

// Black-box review of package realtime: only the exported API, as a user who
// `go get`s it would use it. Every test is named TestBlackBox... and runs in
// parallel on its own database.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/realtime"
)

// ---------------------------------------------------------------- helpers

var bbMigrated = pgtest.WithSetup("realtime", func(ctx context.Context, pool *pgxpool.Pool) error {
	return realtime.Migrate(ctx, pool)
})

func bbDB(t *testing.T, opts ...pgtest.Option) *pgtest.DB {
	t.Helper()
	return pgtest.NewDB(t, append([]pgtest.Option{bbMigrated}, opts...)...)
}

// bbPool opens a second pool on db, with an application_name so its
// backends can be found in pg_stat_activity.
func bbPool(t *testing.T, db *pgtest.DB, app string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(db.URL)
	if err != nil {
		t.Fatal(err)
	}
	pgtest.ApplyExecMode(t, cfg.ConnConfig)
	pgtest.ApplySession(t, cfg.ConnConfig)
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func bbFastCfg() realtime.Config {
	return realtime.Config{MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, PingTimeout: 2 * time.Second}
}

func bbBroker(t *testing.T, pool *pgxpool.Pool, cfg realtime.Config) *realtime.Broker {
	t.Helper()
	b, err := realtime.New(pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return b
}

func bbCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func bbSub(t *testing.T, b *realtime.Broker, ch string, opts ...realtime.SubscribeOption) *realtime.Subscription {
	t.Helper()
	s, err := b.Subscribe(bbCtx(t), ch, opts...)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", ch, err)
	}
	t.Cleanup(s.Close)
	return s
}

func bbNext(t *testing.T, s *realtime.Subscription) realtime.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ev, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("Next on %s: %v", s.Channel(), err)
	}
	return ev
}

func bbMsg(t *testing.T, s *realtime.Subscription) string {
	t.Helper()
	ev := bbNext(t, s)
	if ev.IsGap() {
		t.Fatalf("got a gap (%s) instead of a message on %s", ev.Gap, s.Channel())
	}
	return string(ev.Payload)
}

func bbPublish(t *testing.T, b *realtime.Broker, db realtime.DB, ch, payload string) {
	t.Helper()
	if err := b.Publish(bbCtx(t), db, ch, []byte(payload)); err != nil {
		t.Fatalf("Publish(%q, %d bytes): %v", ch, len(payload), err)
	}
}

// bbMarker publishes a marker and reads until it arrives, returning what came
// before it.
func bbUntilMarker(t *testing.T, b *realtime.Broker, db realtime.DB, s *realtime.Subscription) []realtime.Event {
	t.Helper()
	marker := fmt.Sprintf("marker-%d", time.Now().UnixNano())
	bbPublish(t, b, db, s.Channel(), marker)
	var got []realtime.Event
	for {
		ev := bbNext(t, s)
		if !ev.IsGap() && string(ev.Payload) == marker {
			return got
		}
		got = append(got, ev)
	}
}

func short(s string) string {
	if len(s) > 40 {
		return fmt.Sprintf("%q...(%d bytes)", s[:40], len(s))
	}
	return fmt.Sprintf("%q", s)
}

// ---------------------------------------------------------------- channel names

func TestBlackBoxValidateChannel(t *testing.T) {
	t.Parallel()
	ok := []string{
		"a", "user:42", "room.lobby", "orders-eu", "a_b", "x@y", "Foo", "FOO", "0",
		strings.Repeat("a", 63),
	}
	bad := []string{
		"", " ", "a b", "a\"b", "a;b", "a'b", "room;DROP TABLE x", `x"; NOTIFY evil; --`,
		"a\x00b", "a\nb", "a/b", "a*b", "a,b", "a#b", "a$b", "é", "usér:1", "日本",
		strings.Repeat("a", 64), strings.Repeat("a", 1000),
		strings.Repeat("a", 61) + "é", // 63 bytes, but not ASCII
		strings.Repeat("a", 62) + "é", // 64 bytes
		"\xff", "a\tb",
	}
	for _, name := range ok {
		if err := realtime.ValidateChannel(name); err != nil {
			t.Errorf("ValidateChannel(%s) = %v, want nil", short(name), err)
		}
	}
	for _, name := range bad {
		err := realtime.ValidateChannel(name)
		if !errors.Is(err, realtime.ErrInvalidChannel) {
			t.Errorf("ValidateChannel(%s) = %v, want ErrInvalidChannel", short(name), err)
		}
	}
	if realtime.MaxChannelLen != 63 {
		t.Errorf("MaxChannelLen = %d, want 63", realtime.MaxChannelLen)
	}
}

func TestBlackBoxChannelNamesEndToEnd(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	b := bbBroker(t, db.Pool, realtime.Config{})
	ctx := bbCtx(t)

	bad := []string{"", strings.Repeat("a", 64), `x"; NOTIFY evil; --`, "a;b", "room'1", strings.Repeat("a", 61) + "é", "a b"}
	for _, name := range bad {
		if err := b.Publish(ctx, db.Pool, name, []byte("x")); !errors.Is(err, realtime.ErrInvalidChannel) {
			t.Errorf("Publish(%s) = %v, want ErrInvalidChannel", short(name), err)
		}
		if err := b.PublishBatch(ctx, db.Pool, []realtime.Message{{Channel: "ok", Payload: []byte("x")}, {Channel: name, Payload: []byte("x")}}); !errors.Is(err, realtime.ErrInvalidChannel) {
			t.Errorf("PublishBatch(%s) = %v, want ErrInvalidChannel", short(name), err)
		}
		if err := realtime.PublishJSON(ctx, b, db.Pool, name, 1); !errors.Is(err, realtime.ErrInvalidChannel) {
			t.Errorf("PublishJSON(%s) = %v, want ErrInvalidChannel", short(name), err)
		}
		if s, err := b.Subscribe(ctx, name); !errors.Is(err, realtime.ErrInvalidChannel) {
			t.Errorf("Subscribe(%s) = %v, want ErrInvalidChannel", short(name), err)
			if s != nil {
				s.Close()
			}
		}
		if err := b.CreateStream(ctx, db.Pool, name, realtime.StreamConfig{}); !errors.Is(err, realtime.ErrInvalidChannel) {
			t.Errorf("CreateStream(%s) = %v, want ErrInvalidChannel", short(name), err)
		}
		if _, err := b.ReadStream(ctx, db.Pool, name, 0, 10); !errors.Is(err, realtime.ErrInvalidChannel) {
			t.Errorf("ReadStream(%s) = %v, want ErrInvalidChannel", short(name), err)
		}
	}
	if st := b.Stats(); st.Subscriptions != 0 || st.Channels != 0 {
		t.Errorf("after refused subscribes: %+v", st)
	}

	// The longest name works end to end and does not collide with a name
	// sharing its 63-byte prefix (which is refused anyway).
	long := strings.Repeat("L", 62) + "1"
	s := bbSub(t, b, long)
	bbPublish(t, b, db.Pool, long, "long-ok")
	if got := bbMsg(t, s); got != "long-ok" {
		t.Errorf("63-byte channel: got %q", got)
	}

	// Case-sensitive: "Foo" and "foo" are two channels.
	upper := bbSub(t, b, "Foo")
	lower := bbSub(t, b, "foo")
	bbPublish(t, b, db.Pool, "Foo", "to-Foo")
	bbPublish(t, b, db.Pool, "foo", "to-foo")
	if got := bbMsg(t, upper); got != "to-Foo" {
		t.Errorf("Foo received %q first", got)
	}
	if got := bbMsg(t, lower); got != "to-foo" {
		t.Errorf("foo received %q first", got)
	}
	if rest := bbUntilMarker(t, b, db.Pool, upper); len(rest) != 0 {
		t.Errorf("Foo received extra events %v", rest)
	}
	if rest := bbUntilMarker(t, b, db.Pool, lower); len(rest) != 0 {
		t.Errorf("foo received extra events %v", rest)
	}
	// Durable streams are case-sensitive too.
	if err := b.CreateStream(ctx, db.Pool, "Case.S", realtime.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Subscribe(ctx, "case.s", realtime.From(0)); !errors.Is(err, realtime.ErrNoStream) {
		t.Errorf("From on case.s (stream is Case.S) = %v, want ErrNoStream", err)
	}
	// Special characters of the allowed set work end to end.
	for _, name := range []string{"a_b-c.d:e@f", "UPPER:lower.9", "-", "@", "..", "::"} {
		s := bbSub(t, b, name)
		bbPublish(t, b, db.Pool, name, "hi "+name)
		if got := bbMsg(t, s); got != "hi "+name {
			t.Errorf("channel %q: got %q", name, got)
		}
	}
}

// ---------------------------------------------------------------- payloads

func TestBlackBoxPayloadSizes(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	b := bbBroker(t, db.Pool, realtime.Config{})
	ctx := bbCtx(t)
	ch := "payload:sizes"
	s := bbSub(t, b, ch, realtime.WithBuffer(64))
	longCh := strings.Repeat("c", 63)
	ls := bbSub(t, b, longCh, realtime.WithBuffer(64))

	var payloads []string
	for _, n := range []int{0, 1, 7990, 7998, 7999, 8000, 8001, 8002, 9000, 16000, 1 << 20} {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte('a' + i%26)
		}
		payloads = append(payloads, string(p))
	}
	// Multi-byte UTF-8 around the limit: 2-byte, 3-byte and 4-byte runes.
	payloads = append(payloads,
		strings.Repeat("é", 3999),     // 7998 bytes
		strings.Repeat("é", 4000),     // 8000 bytes
		strings.Repeat("€", 2666)+"a", // 7999 bytes
		strings.Repeat("€", 2667),     // 8001 bytes
		strings.Repeat("😀", 2000),     // 8000 bytes
		"x"+strings.Repeat("😀", 2000), // 8001 bytes
		"\x1e",                        // the large-payload marker byte
		"\x1e1",                       // marker followed by an id
		"\x1e00000000-0000-0000-0000-000000000000",
		"\x1e\x1e",
		"\x01\x02\x7f binary-ish but valid",
		`{"json":true}`,
		"\\x00 not a nul",
	)
	for _, p := range payloads {
		bbPublish(t, b, db.Pool, ch, p)
		bbPublish(t, b, db.Pool, longCh, p)
	}
	for i, p := range payloads {
		if got := bbMsg(t, s); got != p {
			t.Errorf("Publish #%d (%d bytes): got %s, want %s", i, len(p), short(got), short(p))
		}
		if got := bbMsg(t, ls); got != p {
			t.Errorf("Publish on 63-byte channel #%d (%d bytes): got %s, want %s", i, len(p), short(got), short(p))
		}
	}

	// The same through PublishBatch, through a transaction.
	var msgs []realtime.Message
	for _, p := range payloads {
		msgs = append(msgs, realtime.Message{Channel: ch, Payload: []byte(p)})
	}
	if err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error { return b.PublishBatch(ctx, tx, msgs) }); err != nil {
		t.Fatalf("PublishBatch: %v", err)
	}
	for i, p := range payloads {
		if got := bbMsg(t, s); got != p {
			t.Errorf("PublishBatch #%d (%d bytes): got %s, want %s", i, len(p), short(got), short(p))
		}
	}
	// Empty payload is a message, not a gap.
	bbPublish(t, b, db.Pool, ch, "")
	if ev := bbNext(t, s); ev.IsGap() || len(ev.Payload) != 0 {
		t.Errorf("empty payload: got %+v", ev)
	}
	if rest := bbUntilMarker(t, b, db.Pool, s); len(rest) != 0 {
		t.Errorf("extra events: %d", len(rest))
	}
}

func TestBlackBoxInvalidPayloads(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	b := bbBroker(t, db.Pool, realtime.Config{})
	ctx := bbCtx(t)
	ch := "payload:bad"
	s := bbSub(t, b, ch)
	bad := [][]byte{
		[]byte("a\x00b"),
		{0xff, 0xfe},
		[]byte("\xc3("),
		append([]byte(strings.Repeat("a", 9000)), 0),
		append([]byte(strings.Repeat("a", 9000)), 0xff),
		{0x00},
		[]byte("\xed\xa0\x80"), // UTF-16 surrogate encoded in UTF-8
	}
	for _, p := range bad {
		if err := b.Publish(ctx, db.Pool, ch, p); !errors.Is(err, realtime.ErrInvalidPayload) {
			t.Errorf("Publish(%q...) = %v, want ErrInvalidPayload", p[:min(len(p), 8)], err)
		}
		err := b.PublishBatch(ctx, db.Pool, []realtime.Message{{Channel: ch, Payload: []byte("fine")}, {Channel: ch, Payload: p}})
		if !errors.Is(err, realtime.ErrInvalidPayload) {
			t.Errorf("PublishBatch(%q...) = %v, want ErrInvalidPayload", p[:min(len(p), 8)], err)
		}
	}
	// Nothing of the refused batches went out (one statement, all or none).
	if rest := bbUntilMarker(t, b, db.Pool, s); len(rest) != 0 {
		t.Errorf("refused publishes delivered %d events", len(rest))
	}
	// A refused publish inside a transaction leaves it usable? At least the
	// caller can roll back and nothing is delivered.
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Publish(ctx, tx, ch, []byte("in tx"))
	_ = b.Publish(ctx, tx, ch, []byte{0})
	_ = tx.Rollback(ctx)
	if rest := bbUntilMarker(t, b, db.Pool, s); len(rest) != 0 {
		t.Errorf("rolled-back tx delivered %d events", len(rest))
	}
	// Empty and nil batches are no-ops.
	if err := b.PublishBatch(ctx, db.Pool, nil); err != nil {
		t.Errorf("PublishBatch(nil) = %v", err)
	}
}

type bbOrder struct {
	ID    int               `json:"id"`
	Total string            `json:"total"`
	Tags  []string          `json:"tags,omitempty"`
	Meta  map[string]string `json:"meta,omitempty"`
}

func TestBlackBoxJSONHelpers(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	b := bbBroker(t, db.Pool, realtime.Config{})
	ctx := bbCtx(t)
	s := bbSub(t, b, "json:1")

	want := bbOrder{ID: 7, Total: "12.50", Tags: []string{"a", "é", "\u0000x"}, Meta: map[string]string{"k": "v"}}
	if err := realtime.PublishJSON(ctx, b, db.Pool, "json:1", want); err != nil {
		t.Fatal(err)
	}
	got, err := realtime.DecodeJSON[bbOrder](bbNext(t, s))
	if err != nil || got.ID != want.ID || got.Total != want.Total || len(got.Tags) != 3 || got.Tags[2] != "\u0000x" || got.Meta["k"] != "v" {
		t.Errorf("DecodeJSON = %+v, %v; want %+v", got, err, want)
	}

	// A large JSON value (stored payload) round-trips.
	big := bbOrder{ID: 8, Total: strings.Repeat("9", 20000)}
	if err := realtime.PublishJSON(ctx, b, db.Pool, "json:1", big); err != nil {
		t.Fatal(err)
	}
	if got, err := realtime.DecodeJSON[bbOrder](bbNext(t, s)); err != nil || got.Total != big.Total {
		t.Errorf("large JSON: %v, %d bytes", err, len(got.Total))
	}

	// Other type parameters.
	if err := realtime.PublishJSON(ctx, b, db.Pool, "json:1", "plain string"); err != nil {
		t.Fatal(err)
	}
	if got, err := realtime.DecodeJSON[string](bbNext(t, s)); err != nil || got != "plain string" {
		t.Errorf("string: %q %v", got, err)
	}
	if err := realtime.PublishJSON[*bbOrder](ctx, b, db.Pool, "json:1", nil); err != nil {
		t.Fatal(err)
	}
	if ev := bbNext(t, s); string(ev.Payload) != "null" {
		t.Errorf("nil pointer: payload %q", ev.Payload)
	}
	// A value JSON cannot encode is an error, and nothing is sent.
	if err := realtime.PublishJSON(ctx, b, db.Pool, "json:1", map[string]any{"f": func() {}}); err == nil {
		t.Error("PublishJSON(func) succeeded")
	}
	if err := realtime.PublishJSON(ctx, b, db.Pool, "json:1", make(chan int)); err == nil {
		t.Error("PublishJSON(chan) succeeded")
	}

	// Batch keeps order, including duplicates (NOTIFY folds identical pairs
	// in one transaction; documented, so only check what is promised).
	var vs []bbOrder
	for i := range 50 {
		o := bbOrder{ID: i}
		if i%10 == 3 {
			o.Total = strings.Repeat("x", 9000) // large ones in between
		}
		vs = append(vs, o)
	}
	if err := realtime.PublishJSONBatch(ctx, b, db.Pool, "json:1", vs); err != nil {
		t.Fatal(err)
	}
	for i := range vs {
		got, err := realtime.DecodeJSON[bbOrder](bbNext(t, s))
		if err != nil || got.ID != i || got.Total != vs[i].Total {
			t.Fatalf("batch #%d: got id %d (%v)", i, got.ID, err)
		}
	}
	if err := realtime.PublishJSONBatch[int](ctx, b, db.Pool, "json:1", nil); err != nil {
		t.Errorf("empty JSON batch: %v", err)
	}
	// DecodeJSON fails on a gap and on a non-JSON payload.
	if _, err := realtime.DecodeJSON[bbOrder](realtime.Event{Channel: "json:1", Gap: realtime.GapOverflow}); err == nil {
		t.Error("DecodeJSON on a gap succeeded")
	}
	if _, err := realtime.DecodeJSON[bbOrder](realtime.Event{Channel: "json:1", Payload: []byte("not json")}); err == nil {
		t.Error("DecodeJSON on non-JSON succeeded")
	}
}

// ---------------------------------------------------------------- transactions and batches

func TestBlackBoxTransactionOrderAndRollback(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	b := bbBroker(t, db.Pool, realtime.Config{})
	ctx := bbCtx(t)
	ch := "tx:order"
	durable := "tx:durable"
	if err := b.CreateStream(ctx, db.Pool, durable, realtime.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	s := bbSub(t, b, ch, realtime.WithBuffer(2000))
	ds := bbSub(t, b, durable, realtime.WithBuffer(2000))

	// Rolled back: small, large, batch, JSON, durable: nothing delivered,
	// and no durable id consumed visibly.
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{ch, durable} {
		bbPublish(t, b, tx, c, "rb-small")
		bbPublish(t, b, tx, c, "rb-large"+strings.Repeat("z", 10000))
		if err := b.PublishBatch(ctx, tx, []realtime.Message{{Channel: c, Payload: []byte("rb-batch")}}); err != nil {
			t.Fatal(err)
		}
		if err := realtime.PublishJSON(ctx, b, tx, c, "rb-json"); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// Subtransaction rolled back inside a committed transaction.
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		bbPublish(t, b, tx, ch, "outer-1")
		sp, err := tx.Begin(ctx)
		if err != nil {
			return err
		}
		bbPublish(t, b, sp, ch, "savepoint-rolled-back")
		bbPublish(t, b, sp, ch, "savepoint-rolled-back-large"+strings.Repeat("q", 9000))
		if err := sp.Rollback(ctx); err != nil {
			return err
		}
		bbPublish(t, b, tx, ch, "outer-2")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := bbMsg(t, s); got != "outer-1" {
		t.Errorf("got %s, want outer-1", short(got))
	}
	if got := bbMsg(t, s); got != "outer-2" {
		t.Errorf("got %s, want outer-2 (savepoint rollback leaked?)", short(got))
	}
	if rest := bbUntilMarker(t, b, db.Pool, ds); len(rest) != 0 {
		t.Errorf("durable: rolled back tx delivered %d events", len(rest))
	}
	if evs, err := b.ReadStream(ctx, db.Pool, durable, 0, 0); err != nil || len(evs) != 1 {
		t.Errorf("durable log after rollback: %d events (%v), want only the marker", len(evs), err)
	}

	// Many messages in one transaction, mixing Publish, large payloads,
	// batches and JSON, on an ephemeral and a durable channel.
	const n = 400
	var want []string
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		for i := 0; i < n; i++ {
			p := fmt.Sprintf("m%04d", i)
			switch i % 7 {
			case 3:
				p += strings.Repeat("L", 8500)
			case 5:
				p += "-batch"
			}
			want = append(want, p)
			var err error
			if i%7 == 5 {
				err = b.PublishBatch(ctx, tx, []realtime.Message{{Channel: ch, Payload: []byte(p)}, {Channel: durable, Payload: []byte(p)}})
			} else {
				if err = b.Publish(ctx, tx, ch, []byte(p)); err == nil {
					err = b.Publish(ctx, tx, durable, []byte(p))
				}
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var lastID int64
	for i := 0; i < n; i++ {
		if got := bbMsg(t, s); got != want[i] {
			t.Fatalf("ephemeral #%d: got %s want %s", i, short(got), short(want[i]))
		}
		ev := bbNext(t, ds)
		if ev.IsGap() || string(ev.Payload) != want[i] || ev.ID <= lastID {
			t.Fatalf("durable #%d: got %s id %d (last %d) gap %q", i, short(string(ev.Payload)), ev.ID, lastID, ev.Gap)
		}
		lastID = ev.ID
	}

	// Identical pairs in one transaction: folded on an ephemeral channel
	// (documented), kept on a durable channel.
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		for range 3 {
			bbPublish(t, b, tx, ch, "dup")
			bbPublish(t, b, tx, durable, "dup")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := bbMsg(t, s); got != "dup" {
		t.Errorf("got %q", got)
	}
	if rest := bbUntilMarker(t, b, db.Pool, s); len(rest) != 0 {
		t.Logf("note: ephemeral duplicates delivered %d more times", len(rest))
	}
	ids := map[int64]bool{}
	for range 3 {
		ev := bbNext(t, ds)
		if string(ev.Payload) != "dup" || ids[ev.ID] {
			t.Errorf("durable duplicate: %+v", ev)
		}
		ids[ev.ID] = true
	}
}

func TestBlackBoxPublishBatchMixed(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	b := bbBroker(t, db.Pool, realtime.Config{})
	ctx := bbCtx(t)
	chans := []string{"batch:a", "batch:b", "batch:c", "batch:durable"}
	if err := b.CreateStream(ctx, db.Pool, "batch:durable", realtime.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	subs := map[string]*realtime.Subscription{}
	for _, c := range chans {
		subs[c] = bbSub(t, b, c, realtime.WithBuffer(1000))
	}
	want := map[string][]string{}
	var msgs []realtime.Message
	for i := range 300 {
		c := chans[(i*7+i/3)%len(chans)]
		p := fmt.Sprintf("%s#%03d", c, i)
		if i%5 == 0 {
			p += strings.Repeat("B", 8000+i)
		}
		if i%11 == 0 {
			p = "\x1e" + p // marker-prefixed payload, documented as accepted
		}
		want[c] = append(want[c], p)
		msgs = append(msgs, realtime.Message{Channel: c, Payload: []byte(p)})
	}
	if err := b.PublishBatch(ctx, db.Pool, msgs); err != nil {
		t.Fatal(err)
	}
	// All-small batch (fast path) too.
	var small []realtime.Message
	for i := range 100 {
		c := chans[i%3]
		p := fmt.Sprintf("small-%s-%d", c, i)
		want[c] = append(want[c], p)
		small = append(small, realtime.Message{Channel: c, Payload: []byte(p)})
	}
	if err := b.PublishBatch(ctx, db.Pool, small); err != nil {
		t.Fatal(err)
	}
	for _, c := range chans {
		var lastID int64
		for i, w := range want[c] {
			ev := bbNext(t, subs[c])
			if ev.IsGap() || string(ev.Payload) != w {
				t.Fatalf("%s #%d: got %s gap %q, want %s", c, i, short(string(ev.Payload)), ev.Gap, short(w))
			}
			if c == "batch:durable" {
				if ev.ID <= lastID {
					t.Fatalf("%s #%d: id %d after %d", c, i, ev.ID, lastID)
				}
				lastID = ev.ID
			}
		}
		if rest := bbUntilMarker(t, b, db.Pool, subs[c]); len(rest) != 0 {
			t.Errorf("%s: %d extra events", c, len(rest))
		}
	}
}

// ---------------------------------------------------------------- subscriptions

func TestBlackBoxSubscribeChurn(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	b := bbBroker(t, db.Pool, realtime.Config{})
	ctx := bbCtx(t)

	// A long-lived subscriber of churn:0 must not lose anything while other
	// subscriptions of the same channel come and go (UNLISTEN on "last" leave
	// must not hit it).
	keeper := bbSub(t, b, "churn:0", realtime.WithBuffer(10000))
	stopPublishing := bbPublishLoop(t, b, db.Pool, "churn:0", 0)

	var wg sync.WaitGroup
	for g := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 15 {
				ch := fmt.Sprintf("churn:%d", (g+i)%4)
				s, err := b.Subscribe(ctx, ch)
				if err != nil {
					t.Errorf("Subscribe: %v", err)
					return
				}
				if i%3 == 0 {
					go s.Close() // close from another goroutine
				} else {
					s.Close()
					s.Close()
				}
			}
		}()
	}
	wg.Wait()
	published := stopPublishing()

	for i := 0; i < published; i++ {
		ev := bbNext(t, keeper)
		if ev.IsGap() || string(ev.Payload) != strconv.Itoa(i) {
			t.Fatalf("keeper #%d: got %q gap %q", i, ev.Payload, ev.Gap)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := b.Stats()
		if st.Subscriptions == 1 && st.Channels == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after churn: %+v, want 1 subscription on 1 channel", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Channels left by everyone still work when subscribed again.
	for i := 1; i < 4; i++ {
		ch := fmt.Sprintf("churn:%d", i)
		s := bbSub(t, b, ch)
		bbPublish(t, b, db.Pool, ch, "again")
		if got := bbMsg(t, s); got != "again" {
			t.Errorf("%s after churn: %q", ch, got)
		}
	}
}

func TestBlackBoxSubscriptionLifecycle(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	ctx := bbCtx(t)

	nb, err := realtime.New(db.Pool, realtime.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nb.Subscribe(ctx, "life:1"); !errors.Is(err, realtime.ErrNotRunning) {
		t.Errorf("Subscribe before Start = %v, want ErrNotRunning", err)
	}
	// Publishing works before Start.
	if err := nb.Publish(ctx, db.Pool, "life:1", []byte("x")); err != nil {
		t.Errorf("Publish before Start: %v", err)
	}
	if err := nb.Start(ctx); err != nil {
		t.Fatal(err)
	}

	s, err := nb.Subscribe(ctx, "life:1")
	if err != nil {
		t.Fatal(err)
	}
	if s.Channel() != "life:1" {
		t.Errorf("Channel() = %q", s.Channel())
	}
	// Next with a cancelled context returns its error promptly.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Next(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Next(cancelled) = %v, want context.Canceled", err)
	}
	tctx, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	if _, err := s.Next(tctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Next(deadline) = %v, want DeadlineExceeded", err)
	}
	cancel2()
	// A subscription still works after a cancelled Next.
	bbPublish(t, nb, db.Pool, "life:1", "still")
	if got := bbMsg(t, s); got != "still" {
		t.Errorf("after cancelled Next: %q", got)
	}
	// Buffered events are returned after Close? Doc: Next returns ErrClosed
	// after Close; "events buffered before closing are returned first".
	s.Close()
	s.Close()
	if _, err := s.Next(ctx); !errors.Is(err, realtime.ErrClosed) {
		t.Errorf("Next after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Next(ctx); !errors.Is(err, realtime.ErrClosed) {
		t.Errorf("second Next after Close = %v, want ErrClosed", err)
	}

	// Subscribe with an already-cancelled context fails and leaks nothing.
	if s2, err := nb.Subscribe(cctx, "life:cancelled"); err == nil {
		s2.Close()
		t.Log("note: Subscribe with a cancelled ctx succeeded")
	}

	// Stop while subscribers wait in Next: all get ErrClosed, no hang.
	var waiters []*realtime.Subscription
	for i := range 5 {
		w, err := nb.Subscribe(ctx, fmt.Sprintf("life:w%d", i%2))
		if err != nil {
			t.Fatal(err)
		}
		waiters = append(waiters, w)
	}
	errs := make(chan error, len(waiters))
	for _, w := range waiters {
		go func() {
			_, err := w.Next(context.Background()) // no deadline: Stop must end it
			errs <- err
		}()
	}
	time.Sleep(50 * time.Millisecond)
	stopCtx, cancel3 := context.WithTimeout(ctx, 10*time.Second)
	defer cancel3()
	if err := nb.Stop(stopCtx); err != nil {
		t.Errorf("Stop: %v", err)
	}
	for range waiters {
		select {
		case err := <-errs:
			if !errors.Is(err, realtime.ErrClosed) {
				t.Errorf("Next during Stop = %v, want ErrClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Next still waiting 10s after Stop")
		}
	}
	for _, w := range waiters {
		w.Close() // after Stop: no panic, no hang
	}
	if _, err := nb.Subscribe(ctx, "life:1"); !errors.Is(err, realtime.ErrNotRunning) {
		t.Errorf("Subscribe after Stop = %v, want ErrNotRunning", err)
	}
	// A second Stop does not hang.
	done := make(chan struct{})
	go func() {
		_ = nb.Stop(stopCtx)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("second Stop hangs")
	}
	// Publishing still works after Stop.
	if err := nb.Publish(ctx, db.Pool, "life:1", []byte("after stop")); err != nil {
		t.Errorf("Publish after Stop: %v", err)
	}
	// The listener connection went back to the pool: the pool can be closed
	// and nothing is LISTENing anymore.
	var listening int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'listen %' AND pid <> pg_backend_pid()`).Scan(&listening); err != nil {
		t.Fatal(err)
	}
	if listening != 0 {
		t.Errorf("%d sessions still show a LISTEN after Stop", listening)
	}
}

func TestBlackBoxStopViaStartContext(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	b, err := realtime.New(db.Pool, realtime.Config{})
	if err != nil {
		t.Fatal(err)
	}
	startCtx, cancel := context.WithCancel(context.Background())
	if err := b.Start(startCtx); err != nil {
		t.Fatal(err)
	}
	s, err := b.Subscribe(bbCtx(t), "startctx:1")
	if err != nil {
		t.Fatal(err)
	}
	cancel() // "keeps running ... until Stop or until ctx is done"
	errc := make(chan error, 1)
	go func() {
		_, err := s.Next(context.Background())
		errc <- err
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, realtime.ErrClosed) {
			t.Errorf("Next after Start's ctx ended = %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Next still waiting 10s after Start's context was cancelled")
	}
	stopCtx, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	_ = b.Stop(stopCtx)
}

func TestBlackBoxSlowConsumer(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	b := bbBroker(t, db.Pool, realtime.Config{})
	ctx := bbCtx(t)
	ch := "slow:1"
	fast := bbSub(t, b, ch, realtime.WithBuffer(1000))
	drop := bbSub(t, b, ch, realtime.WithBuffer(4))
	disc := bbSub(t, b, ch, realtime.WithBuffer(4), realtime.WithPolicy(realtime.Disconnect))

	var msgs []realtime.Message
	for i := range 20 {
		msgs = append(msgs, realtime.Message{Channel: ch, Payload: []byte(fmt.Sprintf("s%02d", i))})
	}
	if err := b.PublishBatch(ctx, db.Pool, msgs); err != nil {
		t.Fatal(err)
	}
	// The fast one gets everything (others never block it).
	for i := range 20 {
		if got := bbMsg(t, fast); got != fmt.Sprintf("s%02d", i) {
			t.Fatalf("fast #%d: %q", i, got)
		}
	}
	if b.Stats().Dropped == 0 {
		t.Error("Stats.Dropped = 0 after overflowing two subscribers")
	}

	// DropAndGap: a prefix of messages, one overflow gap, then live again.
	var prefix int
	for {
		ev := bbNext(t, drop)
		if ev.IsGap() {
			if ev.Gap != realtime.GapOverflow {
				t.Errorf("gap reason %q, want overflow", ev.Gap)
			}
			break
		}
		if string(ev.Payload) != fmt.Sprintf("s%02d", prefix) {
			t.Fatalf("drop #%d: %q", prefix, ev.Payload)
		}
		prefix++
	}
	if prefix == 0 || prefix > 4 {
		t.Errorf("DropAndGap delivered %d messages before the gap with a buffer of 4", prefix)
	}
	if rest := bbUntilMarker(t, b, db.Pool, drop); len(rest) != 0 {
		t.Errorf("DropAndGap: %d events after the gap (dropped ones delivered?)", len(rest))
	}
	if got := bbMsg(t, fast); !strings.HasPrefix(got, "marker-") {
		t.Errorf("fast: %q, want the marker", got)
	}

	// Disconnect: buffered events, then ErrSlowConsumer.
	var n int
	for {
		ev, err := disc.Next(ctx)
		if err != nil {
			if !errors.Is(err, realtime.ErrSlowConsumer) {
				t.Errorf("Disconnect: Next = %v, want ErrSlowConsumer", err)
			}
			break
		}
		if ev.IsGap() || string(ev.Payload) != fmt.Sprintf("s%02d", n) {
			t.Fatalf("disconnect #%d: %+v", n, ev)
		}
		n++
	}
	if n == 0 || n > 4 {
		t.Errorf("Disconnect returned %d buffered events with a buffer of 4", n)
	}
	if _, err := disc.Next(ctx); !errors.Is(err, realtime.ErrSlowConsumer) && !errors.Is(err, realtime.ErrClosed) {
		t.Errorf("Next again after disconnect = %v", err)
	}
	disc.Close()
	// Fast subscriber still live.
	bbPublish(t, b, db.Pool, ch, "live")
	if got := bbMsg(t, fast); got != "live" {
		t.Errorf("fast after overflow: %q", got)
	}
	if st := b.Stats(); st.Subscriptions != 2 {
		t.Errorf("Subscriptions = %d after a disconnect, want 2", st.Subscriptions)
	}
}

// TestBlackBoxNoGoroutineLeak runs its scenario in a child process so that the
// other parallel tests' goroutines do not disturb the count.
func TestBlackBoxNoGoroutineLeak(t *testing.T) {
	t.Parallel()
	if url := os.Getenv("BB_LEAK_DB_URL"); url != "" {
		t.Skip("child process")
	}
	db := bbDB(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestBlackBoxLeakChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "BB_LEAK_DB_URL="+db.URL)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestBlackBoxLeakChild") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func TestBlackBoxLeakChild(t *testing.T) {
	url := os.Getenv("BB_LEAK_DB_URL")
	if url == "" {
		t.Skip("runs as a child of TestBlackBoxNoGoroutineLeak")
	}
	t.Parallel()
	ctx := bbCtx(t)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	settle := func() int {
		runtime.GC()
		time.Sleep(20 * time.Millisecond)
		return runtime.NumGoroutine()
	}
	before := settle()
	for round := range 3 {
		b, err := realtime.New(pool, realtime.Config{CleanupInterval: 10 * time.Millisecond, PingInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := b.CreateStream(ctx, pool, "leak:d", realtime.StreamConfig{}); err != nil {
			t.Fatal(err)
		}
		var subs []*realtime.Subscription
		for i := range 10 {
			var opts []realtime.SubscribeOption
			ch := fmt.Sprintf("leak:%d", i%3)
			if i%4 == 0 {
				ch, opts = "leak:d", []realtime.SubscribeOption{realtime.From(0)}
			}
			s, err := b.Subscribe(ctx, ch, opts...)
			if err != nil {
				t.Fatal(err)
			}
			subs = append(subs, s)
		}
		// Waiters blocked in Next (with and without deadlines) while Stop runs.
		for i, s := range subs {
			go func() {
				if i%2 == 0 {
					_, _ = s.Next(context.Background())
				} else {
					c, cancel := context.WithTimeout(context.Background(), time.Hour)
					defer cancel()
					_, _ = s.Next(c)
				}
			}()
		}
		if err := b.Publish(ctx, pool, "leak:1", []byte(strings.Repeat("x", 9000))); err != nil {
			t.Fatal(err)
		}
		subs[1].Close()
		// A bridge with a WebSocket client and an SSE client.
		br, err := realtime.NewBridge(b, realtime.BridgeConfig{Authorize: func(r *http.Request) (realtime.Identity, error) {
			return realtime.Identity{ID: "u", Channels: []string{"leak:u"}, CanJoin: func(string) bool { return true }}, nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		mux.Handle("/ws", br)
		mux.Handle("/sse", br.SSE())
		srv := httptest.NewServer(mux)
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Write(ctx, websocket.MessageText, []byte(`{"type":"join","channel":"leak:room"}`))
		_, _, _ = c.Read(ctx)
		resp, err := http.Get(srv.URL + "/sse?channel=leak:room")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := b.Stop(stopCtx); err != nil {
			t.Errorf("round %d: Stop: %v", round, err)
		}
		cancel()
		_ = c.CloseNow()
		resp.Body.Close()
		srv.CloseClientConnections()
		srv.Close()
		http.DefaultClient.CloseIdleConnections()
	}
	var after int
	deadline := time.Now().Add(10 * time.Second)
	for {
		after = settle()
		if after <= before+1 || time.Now().After(deadline) {
			break
		}
	}
	if after > before+1 {
		buf := make([]byte, 1<<20)
		n := runtime.Stack(buf, true)
		t.Fatalf("goroutines: %d before, %d after 3 broker lifetimes\n%s", before, after, buf[:n])
	}
}

// ---------------------------------------------------------------- durable streams

func TestBlackBoxDurableResume(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	b := bbBroker(t, db.Pool, realtime.Config{})
	ctx := bbCtx(t)
	ch := "durable:resume"
	if _, err := b.Subscribe(ctx, ch, realtime.From(0)); !errors.Is(err, realtime.ErrNoStream) {
		t.Errorf("From on a channel without a stream = %v, want ErrNoStream", err)
	}
	if err := b.CreateStream(ctx, db.Pool, ch, realtime.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateStream(ctx, db.Pool, ch, realtime.StreamConfig{MaxLen: 100000}); err != nil {
		t.Errorf("CreateStream again (update retention): %v", err)
	}
	for i := range 5 {
		p := fmt.Sprintf("e%d", i)
		if i == 2 {
			p += strings.Repeat("#", 9000)
		}
		bbPublish(t, b, db.Pool, ch, p)
	}
	s := bbSub(t, b, ch, realtime.From(0))
	var ids []int64
	for i := range 5 {
		ev := bbNext(t, s)
		if ev.IsGap() || !strings.HasPrefix(string(ev.Payload), fmt.Sprintf("e%d", i)) {
			t.Fatalf("replay #%d: %+v", i, ev)
		}
		if len(ids) > 0 && ev.ID <= ids[len(ids)-1] {
			t.Fatalf("ids not increasing: %v then %d", ids, ev.ID)
		}
		ids = append(ids, ev.ID)
	}
	if len(s.Channel()) == 0 || s.Buffered() != 0 {
		t.Errorf("after replay: buffered %d", s.Buffered())
	}
	last := ids[len(ids)-1]
	s.Close()

	// Published while away, and concurrently with the resume: every id after
	// last exactly once, in order.
	const total = 300
	var pubWG sync.WaitGroup
	pubWG.Add(1)
	go func() {
		defer pubWG.Done()
		for i := 5; i < total; i++ {
			p := fmt.Sprintf("e%d", i)
			if i%50 == 0 {
				p += strings.Repeat("#", 9000)
			}
			if err := b.Publish(ctx, db.Pool, ch, []byte(p)); err != nil {
				t.Errorf("publish: %v", err)
				return
			}
		}
	}()
	time.Sleep(20 * time.Millisecond)
	r := bbSub(t, b, ch, realtime.From(last), realtime.WithBuffer(2000))
	prev := last
	for i := 5; i < total; i++ {
		ev := bbNext(t, r)
		if ev.IsGap() {
			t.Fatalf("resume: gap %q at #%d", ev.Gap, i)
		}
		want := fmt.Sprintf("e%d", i)
		if i%50 == 0 {
			want += strings.Repeat("#", 9000)
		}
		if ev.ID <= prev || string(ev.Payload) != want {
			t.Fatalf("resume #%d: payload %s id %d after %d", i, short(string(ev.Payload)), ev.ID, prev)
		}
		prev = ev.ID
	}
	pubWG.Wait()
	if rest := bbUntilMarker(t, b, db.Pool, r); len(rest) != 0 {
		t.Errorf("resume: %d duplicate/extra events", len(rest))
	}
	// ReadStream pages agree with what was delivered.
	var all []realtime.Event
	after := int64(0)
	for {
		page, err := b.ReadStream(ctx, db.Pool, ch, after, 64)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		after = page[len(page)-1].ID
	}
	if len(all) != total+1 { // + marker
		t.Errorf("ReadStream: %d events, want %d", len(all), total+1)
	}
	for i := 1; i < len(all); i++ {
		if all[i].ID <= all[i-1].ID {
			t.Fatalf("ReadStream ids not increasing at %d", i)
		}
	}
	if len(all) > 2 && string(all[2].Payload) != "e2"+strings.Repeat("#", 9000) {
		t.Errorf("ReadStream did not resolve a large payload: %s", short(string(all[2].Payload)))
	}
	// Resuming from the latest id gives only live events.
	s3 := bbSub(t, b, ch, realtime.From(all[len(all)-1].ID))
	bbPublish(t, b, db.Pool, ch, "live-only")
	if got := bbMsg(t, s3); got != "live-only" {
		t.Errorf("From(latest) first event %s, want live-only", short(got))
	}
	// A backlog longer than the buffer: cut, then GapOverflow with the last
	// id queued, as documented on From.
	s4 := bbSub(t, b, ch, realtime.From(0), realtime.WithBuffer(10))
	var lastQueued int64
	for {
		ev := bbNext(t, s4)
		if ev.IsGap() {
			if ev.Gap != realtime.GapOverflow || ev.ID != lastQueued {
				t.Errorf("backlog cut: gap %q id %d, want overflow id %d", ev.Gap, ev.ID, lastQueued)
			}
			break
		}
		lastQueued = ev.ID
	}
	// DropStream makes it ephemeral again.
	if err := b.DropStream(ctx, db.Pool, ch); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Subscribe(ctx, ch, realtime.From(0)); !errors.Is(err, realtime.ErrNoStream) {
		t.Errorf("From after DropStream = %v, want ErrNoStream", err)
	}
}

func TestBlackBoxDurableTrimmedAndGarbageIDs(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	b := bbBroker(t, db.Pool, realtime.Config{CleanupInterval: -1})
	ctx := bbCtx(t)
	ch := "durable:trim"
	if err := b.CreateStream(ctx, db.Pool, ch, realtime.StreamConfig{MaxLen: 3}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		bbPublish(t, b, db.Pool, ch, fmt.Sprintf("t%d", i))
	}
	all, err := b.ReadStream(ctx, db.Pool, ch, 0, 0)
	if err != nil || len(all) != 10 {
		t.Fatalf("ReadStream before cleanup: %d %v", len(all), err)
	}
	res, err := b.Cleanup(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	if res.Events != 7 {
		t.Errorf("Cleanup removed %d events, want 7", res.Events)
	}
	kept, err := b.ReadStream(ctx, db.Pool, ch, 0, 0)
	if err != nil || len(kept) != 3 || string(kept[0].Payload) != "t7" {
		t.Fatalf("after cleanup: %v %v", kept, err)
	}
	// Resume from an id that was trimmed: a GapTrimmed first, then the
	// retained events, nothing repeated.
	s := bbSub(t, b, ch, realtime.From(all[1].ID))
	ev := bbNext(t, s)
	if !ev.IsGap() || ev.Gap != realtime.GapTrimmed {
		t.Errorf("resume from trimmed id: first event %+v, want a GapTrimmed gap", ev)
	} else {
		ev = bbNext(t, s)
	}
	for i := 7; i < 10; i++ {
		if ev.IsGap() || string(ev.Payload) != fmt.Sprintf("t%d", i) {
			t.Fatalf("after trim gap, #%d: %+v", i, ev)
		}
		if i < 9 {
			ev = bbNext(t, s)
		}
	}
	if rest := bbUntilMarker(t, b, db.Pool, s); len(rest) != 0 {
		t.Errorf("extra events after trimmed resume: %v", rest)
	}
	// Resuming from the id just before the oldest retained one is no gap.
	s2 := bbSub(t, b, ch, realtime.From(kept[0].ID-1))
	if ev := bbNext(t, s2); ev.IsGap() || string(ev.Payload) != "t7" {
		t.Errorf("resume just before the oldest retained: %+v", ev)
	}

	// Garbage ids: negative, and far beyond the newest.
	if sn, err := b.Subscribe(ctx, ch, realtime.From(-12345)); err == nil {
		ev := bbNext(t, sn)
		if ev.IsGap() && ev.Gap != realtime.GapTrimmed {
			t.Errorf("From(-12345): gap %q", ev.Gap)
		}
		if !ev.IsGap() && string(ev.Payload) != "t7" {
			t.Errorf("From(-12345): first event %+v, want the oldest retained", ev)
		}
		sn.Close()
	}
	// (From beyond the newest id: see TestBlackBoxDurableResumeBeyondNewest.)

	// ReadStream edge cases.
	if _, err := b.ReadStream(ctx, db.Pool, "durable:none", 0, 10); err != nil && !errors.Is(err, realtime.ErrNoStream) {
		t.Errorf("ReadStream on a plain channel: %v", err)
	}
	if evs, err := b.ReadStream(ctx, db.Pool, ch, 0, 2); err != nil || len(evs) != 2 {
		t.Errorf("ReadStream limit 2: %d %v", len(evs), err)
	}
	if evs, err := b.ReadStream(ctx, db.Pool, ch, -1, -1); err != nil || len(evs) == 0 {
		t.Errorf("ReadStream(-1,-1): %d %v", len(evs), err)
	}

	// MaxAge retention.
	aged := "durable:aged"
	if err := b.CreateStream(ctx, db.Pool, aged, realtime.StreamConfig{MaxAge: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	bbPublish(t, b, db.Pool, aged, "old")
	time.Sleep(20 * time.Millisecond)
	if _, err := b.Cleanup(ctx, db.Pool); err != nil {
		t.Fatal(err)
	}
	if evs, err := b.ReadStream(ctx, db.Pool, aged, 0, 0); err != nil || len(evs) != 0 {
		t.Errorf("MaxAge: %d events remain (%v)", len(evs), err)
	}
	// Ids keep increasing after the log was emptied.
	bbPublish(t, b, db.Pool, aged, "new")
	if evs, err := b.ReadStream(ctx, db.Pool, aged, 0, 0); err != nil || len(evs) != 1 || evs[0].ID < 2 {
		t.Errorf("after trim, new event: %+v %v", evs, err)
	}
}

// From promises "every retained event with an id greater than lastID, then
// live events, with none missing". With lastID beyond the stream's newest id
// (a stale browser Last-Event-ID after DropStream+CreateStream restarted the
// ids at 1, or any forged id) the subscription is accepted and every live
// event is then silently dropped.
func TestBlackBoxDurableResumeBeyondNewest(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	b := bbBroker(t, db.Pool, realtime.Config{})
	ctx := bbCtx(t)
	ch := "durable:recreated"
	if err := b.CreateStream(ctx, db.Pool, ch, realtime.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		bbPublish(t, b, db.Pool, ch, "old")
	}
	old, err := b.ReadStream(ctx, db.Pool, ch, 0, 0)
	if err != nil || len(old) != 5 {
		t.Fatalf("ReadStream: %d %v", len(old), err)
	}
	lastSeen := old[4].ID
	if err := b.DropStream(ctx, db.Pool, ch); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateStream(ctx, db.Pool, ch, realtime.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	s, err := b.Subscribe(ctx, ch, realtime.From(lastSeen))
	if err != nil {
		return // refusing a resume point the stream never reached is fine
	}
	defer s.Close()
	bbPublish(t, b, db.Pool, ch, "new")
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if ev, err := s.Next(wctx); err != nil {
		t.Errorf("From(%d) on a stream whose newest id is lower: live event never delivered (%v)", lastSeen, err)
	} else {
		t.Logf("first event %+v", ev)
	}

	// The same through SSE, where the id comes from the browser.
	br, srv := bbBridge(t, b, realtime.BridgeConfig{})
	_ = br
	if err := b.CreateStream(ctx, db.Pool, "room:d", realtime.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	resp, sse := bbSSE(t, srv, "user=ann&channel=room:d", "room%3Ad=9223372036854775807")
	if resp.StatusCode != http.StatusOK {
		return
	}
	bbPublish(t, b, db.Pool, "room:d", `"live"`)
	select {
	case ev := <-sse.evs:
		t.Logf("SSE got %+v", ev)
	case <-time.After(5 * time.Second):
		t.Errorf("SSE with Last-Event-ID room:d=MaxInt64: live room event never delivered")
	}
}

// ---------------------------------------------------------------- faults

func listenerPIDs(t *testing.T, pool *pgxpool.Pool, app string) []int32 {
	t.Helper()
	rows, err := pool.Query(bbCtx(t), `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1`, app)
	if err != nil {
		t.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

func TestBlackBoxListenerKilled(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	app := "bb-listener"
	lpool := bbPool(t, db, app)
	b := bbBroker(t, lpool, bbFastCfg())
	ctx := bbCtx(t)
	if err := b.CreateStream(ctx, db.Pool, "kill:durable", realtime.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	eph := bbSub(t, b, "kill:eph")
	dur := bbSub(t, b, "kill:durable", realtime.From(0), realtime.WithBuffer(5000))

	// Publish continuously to the durable channel through the other pool.
	stopPublishing := bbPublishLoop(t, b, db.Pool, "kill:durable", time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	pids := listenerPIDs(t, db.Pool, app)
	if len(pids) == 0 {
		t.Fatal("no listener backend found")
	}
	for _, pid := range pids {
		if _, err := db.Pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
			t.Fatal(err)
		}
	}
	// The ephemeral subscriber gets a reconnect gap, then live messages.
	ev := bbNext(t, eph)
	if !ev.IsGap() || ev.Gap != realtime.GapReconnect {
		t.Errorf("ephemeral after kill: %+v, want a reconnect gap", ev)
	}
	got := ""
	for attempt := 0; attempt < 20 && got == ""; attempt++ {
		bbPublish(t, b, db.Pool, "kill:eph", "live")
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		ev, err := eph.Next(c)
		cancel()
		if err == nil && !ev.IsGap() {
			got = string(ev.Payload)
		}
	}
	if got != "live" {
		t.Errorf("ephemeral: no live message after reconnect")
	}
	time.Sleep(100 * time.Millisecond)
	published := stopPublishing()

	// The durable subscriber catches up: every message once, in order, and
	// no gap.
	for i := 0; i < published; i++ {
		ev := bbNext(t, dur)
		if ev.IsGap() || string(ev.Payload) != strconv.Itoa(i) {
			t.Fatalf("durable #%d of %d after kill: %+v", i, published, ev)
		}
	}
	if rest := bbUntilMarker(t, b, db.Pool, dur); len(rest) != 0 {
		t.Errorf("durable: %d extra events after reconnect: %v", len(rest), rest[0])
	}
	st := b.Stats()
	if st.Reconnects < 1 || !st.Connected {
		t.Errorf("Stats after reconnect: %+v", st)
	}
	// New subscriptions work after the reconnect.
	s := bbSub(t, b, "kill:new")
	bbPublish(t, b, db.Pool, "kill:new", "fresh")
	if got := bbMsg(t, s); got != "fresh" {
		t.Errorf("new subscription after reconnect: %q", got)
	}
}

// ---------------------------------------------------------------- table changes

func TestBlackBoxTableChanges(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	b := bbBroker(t, db.Pool, realtime.Config{})
	ctx := bbCtx(t)
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE "Todo Items" (id int PRIMARY KEY, "Title" text, done bool, secret text)`); err != nil {
		t.Fatal(err)
	}
	tc := realtime.TableChanges{Table: "Todo Items", Channel: "todos", Key: []string{"id"}, Columns: []string{"Title", "done"}}
	if err := b.InstallTableChanges(ctx, db.Pool, tc); err != nil {
		t.Fatalf("InstallTableChanges on a quoted table name: %v", err)
	}
	s := bbSub(t, b, "todos")
	type key struct {
		ID int `json:"id"`
	}
	type data struct {
		Title string `json:"Title"`
		Done  bool   `json:"done"`
	}
	_, _ = db.Pool.Exec(ctx, `INSERT INTO "Todo Items" VALUES (1, 'milk', false, 'pw')`)
	_, _ = db.Pool.Exec(ctx, `UPDATE "Todo Items" SET done = true WHERE id = 1`)
	tx, _ := db.Pool.Begin(ctx)
	_, _ = tx.Exec(ctx, `INSERT INTO "Todo Items" VALUES (2, 'rolled back', false, '')`)
	_ = tx.Rollback(ctx)
	_, _ = db.Pool.Exec(ctx, `INSERT INTO "Todo Items" VALUES (3, $1, false, '')`, strings.Repeat("big", 4000))
	_, _ = db.Pool.Exec(ctx, `DELETE FROM "Todo Items" WHERE id = 1`)
	for _, w := range []struct {
		op, title string
		id        int
		done      bool
	}{{"INSERT", "milk", 1, false}, {"UPDATE", "milk", 1, true}, {"INSERT", strings.Repeat("big", 4000), 3, false}, {"DELETE", "milk", 1, true}} {
		ev := bbNext(t, s)
		c, err := realtime.DecodeJSON[realtime.TableChange[key, data]](ev)
		if err != nil || c.Op != w.op || c.Key.ID != w.id || c.Data.Title != w.title || c.Data.Done != w.done || c.Table != "Todo Items" || c.Schema != "public" {
			t.Errorf("change: %+v %v, want %+v", c, err, w)
		}
		if strings.Contains(string(ev.Payload), "pw") {
			t.Errorf("unlisted column leaked: %s", ev.Payload)
		}
	}
	if rest := bbUntilMarker(t, b, db.Pool, s); len(rest) != 0 {
		t.Errorf("table changes: %d extra events (rolled back insert?)", len(rest))
	}
	// Hostile names are refused or quoted, never executed.
	for _, bad := range []realtime.TableChanges{
		{Table: `x"; DROP TABLE "Todo Items"; --`, Channel: "todos", Key: []string{"id"}},
		{Table: "Todo Items", Channel: "todos", Key: []string{`id"); DROP TABLE "Todo Items"; --`}},
		{Table: "Todo Items", Channel: `a";b`, Key: []string{"id"}},
		{Table: "Todo Items", Channel: "todos", Key: []string{"id"}, Trigger: `t"; DROP TABLE "Todo Items"; --`},
		{Table: "Todo Items", Channel: "todos", Key: []string{"nope"}},
		{Table: "Todo Items", Channel: "todos"},
		{Table: "", Channel: "todos", Key: []string{"id"}},
	} {
		if err := b.InstallTableChanges(ctx, db.Pool, bad); err == nil {
			t.Logf("accepted (quoted) TableChanges %+v", bad)
			if err := b.RemoveTableChanges(ctx, db.Pool, "", bad.Table, bad.Trigger); err != nil {
				t.Errorf("RemoveTableChanges(%q): %v", bad.Trigger, err)
			}
		}
		if sql, err := b.TableChangesSQL(bad); err == nil && strings.Contains(sql, `; DROP TABLE "Todo Items"`) && !strings.Contains(sql, `""; DROP`) {
			t.Errorf("TableChangesSQL(%+v) concatenates: %s", bad, sql)
		}
	}
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM "Todo Items"`).Scan(&n); err != nil {
		t.Fatalf("table gone after hostile names: %v", err)
	}
	if err := b.RemoveTableChanges(ctx, db.Pool, "", "Todo Items", ""); err != nil {
		t.Errorf("RemoveTableChanges: %v", err)
	}
	_, _ = db.Pool.Exec(ctx, `INSERT INTO "Todo Items" VALUES (9, 'after remove', false, '')`)
	if rest := bbUntilMarker(t, b, db.Pool, s); len(rest) != 0 {
		t.Errorf("after RemoveTableChanges: %d events", len(rest))
	}
}

// ---------------------------------------------------------------- WebSocket bridge

type bbWire struct {
	Type    string          `json:"type"`
	Channel string          `json:"channel"`
	ID      int64           `json:"id"`
	Data    json.RawMessage `json:"data"`
	Reason  string          `json:"reason"`
	Error   string          `json:"error"`
}

func bbAuthorize(r *http.Request) (realtime.Identity, error) {
	u := r.URL.Query().Get("user")
	if u == "" {
		return realtime.Identity{}, errors.New("no user")
	}
	return realtime.Identity{
		ID:       u,
		Channels: []string{"user:" + u},
		CanJoin: func(ch string) bool {
			return strings.HasPrefix(ch, "room:") && ch != "room:secret"
		},
	}, nil
}

func bbBridge(t *testing.T, b *realtime.Broker, cfg realtime.BridgeConfig) (*realtime.Bridge, *httptest.Server) {
	t.Helper()
	if cfg.Authorize == nil {
		cfg.Authorize = bbAuthorize
	}
	br, err := realtime.NewBridge(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", br)
	mux.Handle("/sse", br.SSE())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return br, srv
}

func bbDial(t *testing.T, srv *httptest.Server, query string) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.Dial(bbCtx(t), "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws?"+query, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", query, err)
	}
	c.SetReadLimit(1 << 22)
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

func bbRead(t *testing.T, c *websocket.Conn) bbWire {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	typ, data, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if typ != websocket.MessageText {
		t.Fatalf("message type %v", typ)
	}
	var w bbWire
	if err := json.Unmarshal(data, &w); err != nil {
		t.Fatalf("bad JSON from server: %v: %s", err, data)
	}
	return w
}

func bbSend(t *testing.T, c *websocket.Conn, s string) {
	t.Helper()
	if err := c.Write(bbCtx(t), websocket.MessageText, []byte(s)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func bbCloseStatus(t *testing.T, c *websocket.Conn) websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		if _, _, err := c.Read(ctx); err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

// bbUntilWire publishes a marker on ch and returns the messages read before it.
func bbUntilWire(t *testing.T, b *realtime.Broker, db realtime.DB, c *websocket.Conn, ch string) []bbWire {
	t.Helper()
	marker := fmt.Sprintf("%q", fmt.Sprintf("marker-%d", time.Now().UnixNano()))
	bbPublish(t, b, db, ch, marker)
	var got []bbWire
	for {
		w := bbRead(t, c)
		if w.Type == "message" && w.Channel == ch && string(w.Data) == marker {
			return got
		}
		got = append(got, w)
	}
}

func bbWaitSubs(t *testing.T, b *realtime.Broker, br *realtime.Bridge, clients, channels int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := b.Stats()
		if br.Clients() == clients && st.Channels == channels && st.Subscriptions == channels {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %d clients and %d channels: %d clients, %+v", clients, channels, br.Clients(), st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// bbWaitClients waits until the bridge has clients clients and the broker at
// least subs subscriptions (Stats.Subscriptions counts LISTENed ones).
func bbWaitClients(t *testing.T, b *realtime.Broker, br *realtime.Bridge, clients, subs int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for br.Clients() != clients || b.Stats().Subscriptions < subs {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %d clients, %d subscriptions: %d, %+v", clients, subs, br.Clients(), b.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A WebSocket client receives its identity channels "from the moment it
// connects": a message published once websocket.Dial has returned must reach
// it. (SSE gets this right: its subscription exists before the response
// headers are sent.)
func TestBlackBoxBridgeIdentityFromConnect(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	b := bbBroker(t, db.Pool, realtime.Config{})
	_, srv := bbBridge(t, b, realtime.BridgeConfig{})
	const clients = 40
	var lost []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 3 * clients { // up to 3 rounds of 40 concurrent clients: it is a race
		if i%clients == 0 {
			wg.Wait()
			if len(lost) > 0 {
				break
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprintf("u%d", i)
			c := bbDial(t, srv, "user="+user)
			if err := b.Publish(bbCtx(t), db.Pool, "user:"+user, []byte(`"welcome"`)); err != nil {
				t.Error(err)
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, _, err := c.Read(ctx); err != nil {
				mu.Lock()
				lost = append(lost, user)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(lost) > 0 {
		t.Errorf("%d clients never received the message published on their user channel right after connecting: %v (%+v)", len(lost), lost, b.Stats())
	}
}

func TestBlackBoxBridgeProtocolAbuse(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	b := bbBroker(t, db.Pool, realtime.Config{})
	br, srv := bbBridge(t, b, realtime.BridgeConfig{})

	if _, err := realtime.NewBridge(b, realtime.BridgeConfig{}); err == nil {
		t.Error("NewBridge without Authorize succeeded")
	}

	c := bbDial(t, srv, "user=alice")
	bbWaitSubs(t, b, br, 1, 1)
	// Unknown type, missing channel, invalid name, unauthorized room: error
	// messages, socket stays open.
	for _, m := range []struct{ send, ch string }{
		{`{"type":"subscribe","channel":"room:1"}`, ""},
		{`{"type":"join"}`, ""},
		{`{"type":"join","channel":""}`, ""},
		{`{"type":"join","channel":"room secret"}`, "room secret"},
		{`{"type":"join","channel":"room:secret"}`, "room:secret"},
		{`{"type":"join","channel":"user:bob"}`, "user:bob"},
		{`{"type":"join","channel":"` + strings.Repeat("r", 70) + `"}`, strings.Repeat("r", 70)},
		{`{"type":"JOIN","channel":"room:1"}`, ""},
		{`{"channel":"room:1"}`, ""},
		{`{"type":"join","channels":[]}`, ""},
	} {
		bbSend(t, c, m.send)
		w := bbRead(t, c)
		if w.Type != "error" {
			t.Errorf("%s -> %+v, want an error message", m.send, w)
		} else if m.ch != "" && w.Channel != m.ch {
			t.Errorf("%s -> error for channel %q", m.send, w.Channel)
		}
	}
	// Leaving a room not joined, and the identity channel (cannot be left).
	bbSend(t, c, `{"type":"leave","channel":"room:never"}`)
	if w := bbRead(t, c); w.Type != "error" && w.Type != "left" {
		t.Errorf("leave not joined -> %+v", w)
	}
	bbSend(t, c, `{"type":"leave","channel":"user:alice"}`)
	if w := bbRead(t, c); w.Type != "error" && w.Type != "left" {
		t.Errorf("leave identity -> %+v", w)
	}
	if rest := bbUntilWire(t, b, db.Pool, c, "user:alice"); len(rest) != 0 {
		t.Errorf("after leave attempts: %v", rest)
	}
	// Join twice, leave once: left; messages stop.
	bbSend(t, c, `{"type":"join","channel":"room:1"}`)
	if w := bbRead(t, c); w.Type != "joined" || w.Channel != "room:1" {
		t.Errorf("join: %+v", w)
	}
	bbSend(t, c, `{"type":"join","channel":"room:1"}`)
	if w := bbRead(t, c); w.Type != "joined" && w.Type != "error" {
		t.Errorf("join again: %+v", w)
	}
	if rest := bbUntilWire(t, b, db.Pool, c, "room:1"); len(rest) != 0 {
		t.Errorf("room:1 joined twice delivers extra: %v", rest)
	}
	bbSend(t, c, `{"type":"leave","channel":"room:1"}`)
	if w := bbRead(t, c); w.Type != "left" || w.Channel != "room:1" {
		t.Errorf("leave: %+v", w)
	}
	bbPublish(t, b, db.Pool, "room:1", `"after leave"`)
	if rest := bbUntilWire(t, b, db.Pool, c, "user:alice"); len(rest) != 0 {
		t.Errorf("after leave, received %v", rest)
	}
	// Payload encoding: JSON as is, anything else as a JSON string.
	bbSend(t, c, `{"type":"join","channel":"room:2"}`)
	bbRead(t, c)
	for _, p := range []string{`{"a":1}`, `not json`, `[1,2`, ``, `"str"`, `12`, ` {"spaced":true} `, "\x1e7", strings.Repeat("x", 9000), `<script>`, "tab\there"} {
		bbPublish(t, b, db.Pool, "room:2", p)
		w := bbRead(t, c)
		if w.Type != "message" || w.Channel != "room:2" {
			t.Fatalf("payload %s: %+v", short(p), w)
		}
		var back string
		if json.Valid([]byte(p)) && p != "" {
			var a, bb any
			_ = json.Unmarshal([]byte(p), &a)
			_ = json.Unmarshal(w.Data, &bb)
			if fmt.Sprint(a) != fmt.Sprint(bb) {
				t.Errorf("JSON payload %s relayed as %s", short(p), w.Data)
			}
		} else if err := json.Unmarshal(w.Data, &back); err != nil || back != p {
			t.Errorf("non-JSON payload %s relayed as %s", short(p), short(string(w.Data)))
		}
	}
	// A binary frame, then malformed JSON: 1008 (binary may be an error too).
	c2 := bbDial(t, srv, "user=bob")
	if err := c2.Write(bbCtx(t), websocket.MessageBinary, []byte(`{"type":"join","channel":"room:1"}`)); err != nil {
		t.Fatal(err)
	}
	c3 := bbDial(t, srv, "user=carol")
	bbSend(t, c3, `{"type":"join",`)
	if st := bbCloseStatus(t, c3); st != websocket.StatusPolicyViolation {
		t.Errorf("malformed JSON closed with %v, want 1008", st)
	}
	c4 := bbDial(t, srv, "user=dave")
	bbSend(t, c4, `{"type":"join","channel":"room:`+strings.Repeat("x", 5000)+`"}`)
	if st := bbCloseStatus(t, c4); st != websocket.StatusMessageTooBig {
		t.Errorf("huge message closed with %v, want 1009", st)
	}
	// Well-formed JSON of the wrong shape: an error message or 1008.
	for _, m := range []string{`{"type":"join","channel":42}`, `{"type":"join","channels":"room:1"}`, `[]`, `"join"`, `null`} {
		cm := bbDial(t, srv, "user=frank")
		bbSend(t, cm, m)
		ctx, cancel := context.WithTimeout(bbCtx(t), 15*time.Second)
		_, data, err := cm.Read(ctx)
		cancel()
		if err != nil {
			if st := websocket.CloseStatus(err); st != websocket.StatusPolicyViolation {
				t.Errorf("%s: closed with %v, want 1008", m, st)
			}
		} else if !strings.Contains(string(data), `"error"`) {
			t.Errorf("%s -> %s", m, data)
		}
		_ = cm.CloseNow()
	}
	c5 := bbDial(t, srv, "user=erin")
	bbSend(t, c5, `not json at all`)
	if st := bbCloseStatus(t, c5); st != websocket.StatusPolicyViolation {
		t.Errorf("non-JSON closed with %v, want 1008", st)
	}
	_ = c2.CloseNow()
	// alice is unaffected by the others' abuse.
	if rest := bbUntilWire(t, b, db.Pool, c, "room:2"); len(rest) != 0 {
		t.Errorf("alice after others' abuse: %v", rest)
	}
	// Unauthorized upgrade.
	resp, err := http.Get(srv.URL + "/ws")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no user: %d", resp.StatusCode)
	}
}

func TestBlackBoxBridgeManyRooms(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	b := bbBroker(t, db.Pool, realtime.Config{})
	br, srv := bbBridge(t, b, realtime.BridgeConfig{ReadLimit: 1 << 20})
	c := bbDial(t, srv, "user=alice")
	bbWaitSubs(t, b, br, 1, 1)

	// One join list of 10,000 rooms: refused beyond MaxRooms (32).
	rooms := make([]string, 10000)
	for i := range rooms {
		rooms[i] = fmt.Sprintf("room:%d", i)
	}
	msg, _ := json.Marshal(map[string]any{"type": "join", "channels": rooms})
	bbSend(t, c, string(msg))
	// The whole list is refused with one error (no partial join).
	joined := 0
	if w := bbRead(t, c); w.Type != "error" {
		t.Errorf("join list of 10000 -> %+v, want one error", w)
		if w.Type == "joined" {
			joined++
		}
	}
	if ch := b.Stats().Channels; ch > 33 {
		t.Errorf("broker listens on %d channels", ch)
	}

	// 10,000 single joins, read concurrently.
	var (
		mu           sync.Mutex
		joins, errsN int
	)
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			_, data, err := c.Read(ctx)
			cancel()
			if err != nil {
				t.Errorf("reading replies: %v (after %d joined, %d errors)", err, joins, errsN)
				return
			}
			var w bbWire
			_ = json.Unmarshal(data, &w)
			mu.Lock()
			switch w.Type {
			case "joined":
				joins++
			case "error":
				errsN++
			}
			done := joins+errsN == 10000
			mu.Unlock()
			if done {
				return
			}
		}
	}()
	// Windows of 100 requests (well under QueueSize 256 replies in flight):
	// a client pipelining without reading may legitimately be cut off.
	for i := range 10000 {
		if err := c.Write(bbCtx(t), websocket.MessageText, []byte(`{"type":"join","channel":"room:x`+strconv.Itoa(i)+`"}`)); err != nil {
			t.Fatalf("write #%d: %v", i, err)
		}
		if i%100 == 99 {
			for deadline := time.Now().Add(15 * time.Second); ; {
				mu.Lock()
				n := joins + errsN
				mu.Unlock()
				if n > i-20 || time.Now().After(deadline) {
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	<-readDone
	mu.Lock()
	if joined+joins > 32 {
		t.Errorf("%d rooms joined in total, MaxRooms is 32", joined+joins)
	}
	if joins+errsN != 10000 {
		t.Errorf("10000 joins got %d joined + %d errors", joins, errsN)
	}
	mu.Unlock()
	if ch := b.Stats().Channels; ch > 33 {
		t.Errorf("broker listens on %d channels", ch)
	}
	_ = c.Close(websocket.StatusNormalClosure, "")
	bbWaitSubs(t, b, br, 0, 0)
}

func TestBlackBoxBridgeUserIsolation(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	b := bbBroker(t, db.Pool, realtime.Config{})
	ctx := bbCtx(t)
	if err := b.CreateStream(ctx, db.Pool, "user:alice", realtime.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	bbPublish(t, b, db.Pool, "user:alice", `"alice-secret-1"`)
	br, srv := bbBridge(t, b, realtime.BridgeConfig{})

	alice := bbDial(t, srv, "user=alice")
	// bob tries every door to alice's channel.
	bob := bbDial(t, srv, "user=bob&resume="+url.QueryEscape("user:alice:0"))
	bob2 := bbDial(t, srv, "user=bob&user=alice")
	bbWaitClients(t, b, br, 3, 2)
	bbSend(t, bob, `{"type":"join","channel":"user:alice"}`)
	if w := bbRead(t, bob); w.Type != "error" {
		t.Errorf("bob join user:alice -> %+v", w)
	}
	bbSend(t, bob, `{"type":"join","channel":"user:alice","since":0}`)
	if w := bbRead(t, bob); w.Type != "error" {
		t.Errorf("bob join user:alice since 0 -> %+v", w)
	}
	bbSend(t, bob, `{"type":"join","channels":["room:ok","user:alice"]}`)
	for range 2 {
		if w := bbRead(t, bob); w.Channel == "user:alice" && w.Type != "error" {
			t.Errorf("bob join list with user:alice -> %+v", w)
		}
	}
	if n, err := br.Broadcast("user:alice", []byte(`"broadcast-to-alice"`)); err != nil || n != 1 {
		t.Errorf("Broadcast to alice reached %d clients (%v), want 1", n, err)
	}
	if w := bbRead(t, alice); string(w.Data) != `"broadcast-to-alice"` {
		t.Errorf("alice got %+v", w)
	}
	bbPublish(t, b, db.Pool, "user:alice", `"alice-secret-2"`)
	if w := bbRead(t, alice); string(w.Data) != `"alice-secret-2"` {
		t.Errorf("alice got %+v", w)
	}
	for name, c := range map[string]*websocket.Conn{"bob": bob, "bob2": bob2} {
		ch := "user:bob"
		for _, w := range bbUntilWire(t, b, db.Pool, c, ch) {
			if w.Channel == "user:alice" || strings.Contains(string(w.Data), "alice-secret") {
				t.Errorf("%s received alice's event: %+v", name, w)
			}
		}
	}

	// SSE: channel=user:alice and a forged Last-Event-ID.
	resp, err := http.Get(srv.URL + "/sse?user=bob&channel=user:alice")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusOK {
		sse := newSSEReader(resp)
		bbPublish(t, b, db.Pool, "user:alice", `"alice-secret-3"`)
		bbPublish(t, b, db.Pool, "user:bob", `"bob-end"`)
		for _, ev := range sse.until(t, `"bob-end"`) {
			if strings.Contains(ev.data, "alice-secret") {
				t.Errorf("SSE bob with channel=user:alice received %s", ev.data)
			}
		}
	}
	resp.Body.Close()

	// A durable room bob may not join, named in a resume parameter or a
	// Last-Event-ID, never reaches him.
	if err := b.CreateStream(ctx, db.Pool, "room:secret", realtime.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	bbPublish(t, b, db.Pool, "room:secret", `"room-secret-1"`)
	bobR := bbDial(t, srv, "user=bob&resume="+url.QueryEscape("room:secret:0"))
	respR, sseR := bbSSE(t, srv, "user=bob", "room%3Asecret=0")
	respR2, sseR2 := bbSSE(t, srv, "user=bob&channel=room:ok", "room%3Asecret=0&room%3Aok=0")
	t.Logf("SSE with Last-Event-ID room:secret: %d; with room:secret and room:ok: %d", respR.StatusCode, respR2.StatusCode)
	want := 4
	for _, r := range []*sseReader{sseR, sseR2} {
		if r != nil {
			want++
		}
	}
	bbWaitClients(t, b, br, want, 3)
	bbPublish(t, b, db.Pool, "room:secret", `"room-secret-2"`)
	for _, w := range bbUntilWire(t, b, db.Pool, bobR, "user:bob") {
		if strings.Contains(string(w.Data), "secret") {
			t.Errorf("bob (resume=room:secret:0) received %+v", w)
		}
	}
	for i, r := range []*sseReader{sseR, sseR2} {
		if r == nil {
			continue
		}
		bbPublish(t, b, db.Pool, "user:bob", fmt.Sprintf(`"bob-sse-end-%d"`, i))
		for _, ev := range r.until(t, fmt.Sprintf(`"bob-sse-end-%d"`, i)) {
			if strings.Contains(ev.data, "secret") {
				t.Errorf("SSE bob with Last-Event-ID room:secret received %s", ev.data)
			}
		}
	}

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/sse?user=bob", nil)
	req.Header.Set("Last-Event-ID", "user%3Aalice=0")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusOK {
		sse := newSSEReader(resp)
		bbPublish(t, b, db.Pool, "user:bob", `"bob-end-2"`)
		for _, ev := range sse.until(t, `"bob-end-2"`) {
			if strings.Contains(ev.data, "alice-secret") {
				t.Errorf("SSE bob with forged Last-Event-ID received %s", ev.data)
			}
		}
	}
	resp.Body.Close()
}

func TestBlackBoxTwoBridges(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	p1 := bbPool(t, db, "bb-proc-1")
	p2 := bbPool(t, db, "bb-proc-2")
	b1 := bbBroker(t, p1, realtime.Config{})
	b2 := bbBroker(t, p2, realtime.Config{})
	ctx := bbCtx(t)
	if err := b1.CreateStream(ctx, p1, "room:durable", realtime.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	br1, s1 := bbBridge(t, b1, realtime.BridgeConfig{})
	_, s2 := bbBridge(t, b2, realtime.BridgeConfig{})
	a := bbDial(t, s1, "user=alice")
	c := bbDial(t, s2, "user=carl")
	for _, conn := range []*websocket.Conn{a, c} {
		bbSend(t, conn, `{"type":"join","channels":["room:lobby","room:durable"]}`)
		for range 2 {
			if w := bbRead(t, conn); w.Type != "joined" {
				t.Fatalf("join: %+v", w)
			}
		}
	}
	// Published by process 1, by process 2, and by a plain pool.
	bbPublish(t, b1, p1, "room:lobby", `{"from":1}`)
	bbPublish(t, b2, p2, "room:lobby", `{"from":2}`)
	bbPublish(t, b1, db.Pool, "room:durable", `{"from":"d"}`)
	for name, conn := range map[string]*websocket.Conn{"alice@1": a, "carl@2": c} {
		got := map[string]bool{}
		for range 3 {
			w := bbRead(t, conn)
			got[w.Channel+string(w.Data)] = true
			if w.Channel == "room:durable" && w.ID == 0 {
				t.Errorf("%s: durable room message without id", name)
			}
		}
		for _, want := range []string{`room:lobby{"from":1}`, `room:lobby{"from":2}`, `room:durable{"from":"d"}`} {
			if !got[want] {
				t.Errorf("%s missed %s (got %v)", name, want, got)
			}
		}
	}
	// Broadcast reaches this process's sockets only.
	if n, err := br1.Broadcast("room:lobby", []byte(`{"bc":1}`)); err != nil || n != 1 {
		t.Errorf("Broadcast: %d, %v; want 1 client", n, err)
	}
	if w := bbRead(t, a); string(w.Data) != `{"bc":1}` || w.Channel != "room:lobby" {
		t.Errorf("alice broadcast: %+v", w)
	}
	bbPublish(t, b2, p2, "room:lobby", `"end-bc"`)
	for name, conn := range map[string]*websocket.Conn{"alice@1": a, "carl@2": c} {
		if w := bbRead(t, conn); string(w.Data) != `"end-bc"` {
			t.Errorf("%s: got %+v, want the end marker (broadcast leaked to another process?)", name, w)
		}
	}
	if _, err := br1.Broadcast("bad name", []byte("x")); !errors.Is(err, realtime.ErrInvalidChannel) {
		t.Errorf("Broadcast(bad name) = %v", err)
	}
	// Publishing through a single connection and a raw pgx.Conn works too.
	pc, err := p1.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bbPublish(t, b1, pc, "room:lobby", `{"via":"poolconn"}`)
	pc.Release()
	conn, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	bbPublish(t, b1, conn, "room:lobby", `{"via":"conn"}`)
	for _, conn := range []*websocket.Conn{a, c} {
		for _, want := range []string{`{"via":"poolconn"}`, `{"via":"conn"}`} {
			if w := bbRead(t, conn); string(w.Data) != want {
				t.Errorf("got %+v, want %s", w, want)
			}
		}
	}
}

// ---------------------------------------------------------------- SSE

type sseEvent struct{ event, id, data string }

type sseReader struct {
	sc   *bufio.Scanner
	evs  chan sseEvent
	done chan struct{}
}

func newSSEReader(resp *http.Response) *sseReader {
	r := &sseReader{sc: bufio.NewScanner(resp.Body), evs: make(chan sseEvent, 1000), done: make(chan struct{})}
	r.sc.Buffer(make([]byte, 1<<16), 1<<22)
	go func() {
		defer close(r.evs)
		var cur sseEvent
		for r.sc.Scan() {
			line := r.sc.Text()
			switch {
			case line == "":
				if cur.data != "" || cur.event != "" {
					r.evs <- cur
				}
				cur = sseEvent{}
			case strings.HasPrefix(line, ":"):
			case strings.HasPrefix(line, "event:"):
				cur.event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
			case strings.HasPrefix(line, "id:"):
				cur.id = strings.TrimSpace(strings.TrimPrefix(line, "id:"))
			case strings.HasPrefix(line, "data:"):
				if cur.data != "" {
					cur.data += "\n"
				}
				cur.data += strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")
			}
		}
	}()
	return r
}

func (r *sseReader) next(t *testing.T) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-r.evs:
		if !ok {
			t.Fatal("SSE stream ended")
		}
		return ev
	case <-time.After(15 * time.Second):
		t.Fatal("no SSE event within 15s")
	}
	return sseEvent{}
}

// until returns the events before the first one whose data contains marker.
func (r *sseReader) until(t *testing.T, marker string) []sseEvent {
	t.Helper()
	var out []sseEvent
	for {
		ev := r.next(t)
		if strings.Contains(ev.data, marker) {
			return out
		}
		out = append(out, ev)
	}
}

func bbSSE(t *testing.T, srv *httptest.Server, query, lastID string) (*http.Response, *sseReader) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/sse?"+query, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		return resp, nil
	}
	return resp, newSSEReader(resp)
}

func TestBlackBoxSSE(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	b := bbBroker(t, db.Pool, realtime.Config{})
	ctx := bbCtx(t)
	if err := b.CreateStream(ctx, db.Pool, "room:d", realtime.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	br, srv := bbBridge(t, b, realtime.BridgeConfig{})

	resp, sse := bbSSE(t, srv, "user=ann&channel=room:d&channel=room:e", "")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("SSE: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	bbWaitSubs(t, b, br, 1, 3)
	bbPublish(t, b, db.Pool, "room:d", `{"n":1}`)
	ev := sse.next(t)
	var w bbWire
	if err := json.Unmarshal([]byte(ev.data), &w); err != nil || ev.event != "message" || w.Channel != "room:d" || w.ID == 0 {
		t.Fatalf("SSE event %+v (%v)", ev, err)
	}
	lastID := ev.id
	if !strings.Contains(lastID, "room%3Ad=") {
		t.Errorf("SSE id %q does not carry room:d", lastID)
	}
	bbPublish(t, b, db.Pool, "room:e", "multi\nline\r\npayload")
	ev = sse.next(t)
	if err := json.Unmarshal([]byte(ev.data), &w); err != nil || w.Channel != "room:e" {
		t.Errorf("multi-line payload broke SSE framing: %+v (%v)", ev, err)
	} else {
		var s string
		if err := json.Unmarshal(w.Data, &s); err != nil || s != "multi\nline\r\npayload" {
			t.Errorf("multi-line payload: %q", w.Data)
		}
	}
	resp.Body.Close()
	bbWaitSubs(t, b, br, 0, 0)

	// Messages while away, then resume with the browser's Last-Event-ID.
	bbPublish(t, b, db.Pool, "room:d", `{"n":2}`)
	bbPublish(t, b, db.Pool, "room:d", `{"n":3}`)
	_, sse2 := bbSSE(t, srv, "user=ann&channel=room:d", lastID)
	if sse2 == nil {
		t.Fatal("resume refused")
	}
	for _, n := range []string{`{"n":2}`, `{"n":3}`} {
		ev := sse2.next(t)
		if !strings.Contains(ev.data, n) {
			t.Errorf("SSE resume: got %+v, want %s", ev, n)
		}
	}
	bbPublish(t, b, db.Pool, "room:d", `{"n":4}`)
	if ev := sse2.next(t); !strings.Contains(ev.data, `{"n":4}`) {
		t.Errorf("SSE resume then live: %+v", ev)
	}

	// Garbage Last-Event-ID values: never a server error; if accepted, live
	// events flow.
	for _, garbage := range []string{
		"garbage", "%%%", "room%3Ad=abc", "room%3Ad=-5", "room%3Ad=99999999999999999999999",
		"=&=&", "room%3Ad=1&room%3Ad=2", strings.Repeat("x=1&", 2000), "room%3Asecret=0", "bad%20name=1",
	} {
		resp, sse := bbSSE(t, srv, "user=ann&channel=room:d", garbage)
		t.Logf("Last-Event-ID %s: status %d", short(garbage), resp.StatusCode)
		if resp.StatusCode >= 500 {
			t.Errorf("Last-Event-ID %s: status %d", short(garbage), resp.StatusCode)
			continue
		}
		if sse == nil {
			continue
		}
		marker := fmt.Sprintf(`"g-%d"`, time.Now().UnixNano())
		bbPublish(t, b, db.Pool, "room:d", marker)
		for _, ev := range sse.until(t, marker) {
			if strings.Contains(ev.data, "secret") {
				t.Errorf("garbage id leaked: %+v", ev)
			}
		}
		resp.Body.Close()
	}

	// Unauthorized rooms and too many rooms.
	resp, _ = bbSSE(t, srv, "user=ann&channel=room:secret", "")
	if resp.StatusCode == http.StatusOK {
		t.Errorf("SSE with an unauthorized room: 200")
	}
	resp, _ = bbSSE(t, srv, "channel=room:d", "")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("SSE without a user: %d", resp.StatusCode)
	}
	q := "user=ann"
	for i := range 40 {
		q += fmt.Sprintf("&channel=room:%d", i)
	}
	resp, _ = bbSSE(t, srv, q, "")
	if resp.StatusCode == http.StatusOK {
		t.Errorf("SSE with 40 rooms (MaxRooms 32): 200")
	}
}

func TestBlackBoxBridgeDurableRoomsGapsAndSlowClients(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	app := "bb-bridge-listener"
	lpool := bbPool(t, db, app)
	b := bbBroker(t, lpool, bbFastCfg())
	ctx := bbCtx(t)
	if err := b.CreateStream(ctx, db.Pool, "room:log", realtime.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	br, srv := bbBridge(t, b, realtime.BridgeConfig{QueueSize: 8, WriteTimeout: 2 * time.Second})
	for i := range 3 {
		bbPublish(t, b, db.Pool, "room:log", fmt.Sprintf(`{"n":%d}`, i))
	}
	evs, err := b.ReadStream(ctx, db.Pool, "room:log", 0, 0)
	if err != nil || len(evs) != 3 {
		t.Fatalf("ReadStream: %v %v", evs, err)
	}

	c := bbDial(t, srv, "user=alice")
	bbWaitClients(t, b, br, 1, 1)
	// Resume a durable room after the first id: the two later events, in
	// order, with their ids; then live.
	bbSend(t, c, fmt.Sprintf(`{"type":"join","channel":"room:log","since":%d}`, evs[0].ID))
	var msgs []bbWire
	for len(msgs) < 2 {
		w := bbRead(t, c)
		if w.Type == "joined" {
			continue
		}
		msgs = append(msgs, w)
	}
	for i, w := range msgs {
		if w.Type != "message" || w.ID != evs[i+1].ID || string(w.Data) != fmt.Sprintf(`{"n":%d}`, i+1) {
			t.Errorf("resumed #%d: %+v", i, w)
		}
	}
	bbPublish(t, b, db.Pool, "room:log", `{"n":3}`)
	if w := bbRead(t, c); w.Type != "message" || string(w.Data) != `{"n":3}` || w.ID <= evs[2].ID {
		t.Errorf("live after resume: %+v", w)
	}
	bbSend(t, c, `{"type":"join","channel":"room:plain","since":1}`)
	if w := bbRead(t, c); w.Type != "error" || w.Channel != "room:plain" {
		t.Errorf("since on a channel without a stream: %+v", w)
	}
	bbSend(t, c, `{"type":"join","channel":"room:plain"}`)
	if w := bbRead(t, c); w.Type != "joined" {
		t.Errorf("join room:plain: %+v", w)
	}
	// Leaving the resumed room releases its own subscription.
	bbSend(t, c, `{"type":"leave","channel":"room:log"}`)
	if w := bbRead(t, c); w.Type != "left" || w.Channel != "room:log" {
		t.Errorf("leave: %+v", w)
	}
	bbWaitClients(t, b, br, 1, 2)
	if st := b.Stats(); st.Subscriptions != 2 || st.Channels != 2 {
		t.Errorf("after leaving the resumed room: %+v, want user:alice and room:plain", st)
	}

	// The listener's connection is killed: room and identity members get a
	// gap message, then live messages again.
	for _, pid := range listenerPIDs(t, db.Pool, app) {
		if _, err := db.Pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
			t.Fatal(err)
		}
	}
	gaps := map[string]string{}
	for len(gaps) < 2 {
		w := bbRead(t, c)
		if w.Type != "gap" {
			t.Fatalf("after kill: %+v, want gaps first", w)
		}
		gaps[w.Channel] = w.Reason
	}
	if gaps["user:alice"] != "reconnect" || gaps["room:plain"] != "reconnect" {
		t.Errorf("gaps: %v", gaps)
	}
	var live bool
	for attempt := 0; attempt < 20 && !live; attempt++ {
		bbPublish(t, b, db.Pool, "room:plain", fmt.Sprintf(`{"after":%d}`, attempt))
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, data, err := c.Read(rctx)
		cancel()
		if err != nil {
			t.Fatalf("no live message after reconnect: %v", err)
		}
		live = strings.Contains(string(data), `"after"`)
	}

	// A client that never reads is closed with 1008, others are unaffected.
	slow := bbDial(t, srv, "user=slow")
	bbSend(t, slow, `{"type":"join","channel":"room:plain"}`)
	if w := bbRead(t, slow); w.Type != "joined" {
		t.Fatalf("slow join: %+v", w)
	}
	// Paced publishing (4 at a time, waiting for the reading client) of
	// large messages, until the slow client's socket buffers and queue fill.
	big := strings.Repeat("y", 100_000)
	var read atomic.Int64
	readErr := make(chan error, 1)
	go func() {
		for {
			rctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			_, _, err := c.Read(rctx)
			cancel()
			if err != nil {
				readErr <- err
				return
			}
			read.Add(1)
		}
	}()
	sent := 0
	slowClosed := false
	for round := 0; round < 100 && !slowClosed; round++ {
		var batch []realtime.Message
		for range 4 {
			batch = append(batch, realtime.Message{Channel: "room:plain", Payload: []byte(fmt.Sprintf(`"%d-%s"`, sent, big))})
			sent++
		}
		if err := b.PublishBatch(ctx, db.Pool, batch); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(15 * time.Second); read.Load() < int64(sent); {
			select {
			case err := <-readErr:
				t.Fatalf("reading client cut off after %d of %d: %v", read.Load(), sent, err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("reading client stuck at %d of %d", read.Load(), sent)
			}
			time.Sleep(time.Millisecond)
		}
		slowClosed = br.Clients() == 1
	}
	if !slowClosed {
		t.Fatalf("slow client still connected after %d large messages", sent)
	}
	// The close frame can only reach it if its socket has room: a client
	// that reads nothing may see the connection dropped instead.
	if st := bbCloseStatus(t, slow); st != websocket.StatusPolicyViolation && st != -1 {
		t.Errorf("slow client closed with %v, want 1008", st)
	}
	bbWaitClients(t, b, br, 1, 2)
}

// A browser subscribed over SSE to a durable room reconnects with the
// Last-Event-ID the server gave it. If the stream was dropped meanwhile
// (DropStream: "the channel becomes ephemeral again"), the reconnect is
// refused with 400, which makes an EventSource give up for good.
func TestBlackBoxSSEResumeAfterDropStream(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	b := bbBroker(t, db.Pool, realtime.Config{})
	ctx := bbCtx(t)
	if err := b.CreateStream(ctx, db.Pool, "room:d", realtime.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	br, srv := bbBridge(t, b, realtime.BridgeConfig{})
	resp, sse := bbSSE(t, srv, "user=ann&channel=room:d", "")
	if sse == nil {
		t.Fatalf("SSE: %d", resp.StatusCode)
	}
	bbWaitClients(t, b, br, 1, 2)
	bbPublish(t, b, db.Pool, "room:d", `"one"`)
	ev := sse.next(t)
	resp.Body.Close()
	if err := b.DropStream(ctx, db.Pool, "room:d"); err != nil {
		t.Fatal(err)
	}
	resp2, sse2 := bbSSE(t, srv, "user=ann&channel=room:d", ev.id)
	if sse2 == nil {
		t.Fatalf("reconnect with Last-Event-ID %q after DropStream: status %d", ev.id, resp2.StatusCode)
	}
}

// Several processes publish to one durable channel at once while a
// subscriber resumes mid-way: it sees exactly the log, in id order.
func TestBlackBoxDurableConcurrentPublishers(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	b := bbBroker(t, db.Pool, realtime.Config{})
	other, err := realtime.New(db.Pool, realtime.Config{}) // another "process", publishing only
	if err != nil {
		t.Fatal(err)
	}
	ctx := bbCtx(t)
	ch := "durable:conc"
	if err := b.CreateStream(ctx, db.Pool, ch, realtime.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	const writers, each = 4, 40
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			pub := b
			if w%2 == 1 {
				pub = other
			}
			for i := range each {
				p := fmt.Sprintf("w%d-%d", w, i)
				var err error
				switch i % 3 {
				case 0:
					err = pub.Publish(ctx, db.Pool, ch, []byte(p))
				case 1:
					// READ COMMITTED whatever JUSTPG_TEST_SESSION makes the
					// default: concurrent publishers in transactions at
					// stricter levels get serialization failures to retry.
					err = pgx.BeginTxFunc(ctx, db.Pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
						return pub.PublishBatch(ctx, tx, []realtime.Message{{Channel: ch, Payload: []byte(p)}, {Channel: "conc:side", Payload: []byte(p)}})
					})
				default:
					err = pub.Publish(ctx, db.Pool, ch, []byte(p+strings.Repeat("+", 8100)))
				}
				if err != nil {
					t.Errorf("publish: %v", err)
					return
				}
			}
		}()
	}
	live := bbSub(t, b, ch, realtime.From(0), realtime.WithBuffer(1000))
	close(start)
	time.Sleep(30 * time.Millisecond)
	mid := bbSub(t, b, ch, realtime.From(0), realtime.WithBuffer(1000))
	wg.Wait()
	log, err := b.ReadStream(ctx, db.Pool, ch, 0, 10000)
	if err != nil || len(log) != writers*each {
		t.Fatalf("ReadStream: %d events, %v", len(log), err)
	}
	bbPublish(t, b, db.Pool, ch, "end")
	for name, s := range map[string]*realtime.Subscription{"live": live, "mid": mid} {
		for i, want := range log {
			ev := bbNext(t, s)
			if ev.IsGap() || ev.ID != want.ID || string(ev.Payload) != string(want.Payload) {
				t.Fatalf("%s #%d: got id %d %s gap %q, want id %d %s", name, i, ev.ID, short(string(ev.Payload)), ev.Gap, want.ID, short(string(want.Payload)))
			}
		}
		if got := bbMsg(t, s); got != "end" {
			t.Errorf("%s: extra event %s", name, short(got))
		}
	}
	// Per-writer order is kept in the log.
	next := map[string]int{}
	for _, e := range log {
		p := string(e.Payload)
		w, rest, _ := strings.Cut(p, "-")
		n, _ := strconv.Atoi(strings.TrimRight(rest, "+"))
		if n != next[w] {
			t.Fatalf("writer %s: event %d after %d", w, n, next[w]-1)
		}
		next[w]++
	}
}

// Stop closes the bridge's clients (WebSocket 1001, SSE stream ends) and new
// connections are refused, not left hanging.
func TestBlackBoxBridgeBrokerStop(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	b, err := realtime.New(db.Pool, realtime.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	br, srv := bbBridge(t, b, realtime.BridgeConfig{})
	c := bbDial(t, srv, "user=a")
	resp, sse := bbSSE(t, srv, "user=b&channel=room:1", "")
	if sse == nil {
		t.Fatalf("SSE: %d", resp.StatusCode)
	}
	bbWaitClients(t, b, br, 2, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if st := bbCloseStatus(t, c); st != websocket.StatusGoingAway {
		t.Errorf("WebSocket after Stop: %v, want 1001", st)
	}
	select {
	case _, ok := <-sse.evs:
		for ok {
			_, ok = <-sse.evs
		}
	case <-time.After(10 * time.Second):
		t.Error("SSE stream still open 10s after Stop")
	}
	for deadline := time.Now().Add(10 * time.Second); br.Clients() != 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("Clients() = %d 10s after Stop", br.Clients())
			break
		}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/sse?user=b", nil)
	if r, err := http.DefaultClient.Do(req); err != nil {
		t.Errorf("SSE after Stop: %v", err)
	} else {
		if r.StatusCode == http.StatusOK {
			t.Errorf("SSE after Stop: 200")
		}
		r.Body.Close()
	}
}

// Doc: identical (channel, payload) pairs published in one transaction on a
// channel without a stream are delivered once when the payload fits in a
// notification; larger payloads are stored per Publish and each delivered.
func TestBlackBoxIdenticalLargePayloadsInOneTx(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	b := bbBroker(t, db.Pool, realtime.Config{})
	ctx := bbCtx(t)
	s := bbSub(t, b, "dup:large")
	big := strings.Repeat("D", 9000)
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		for range 3 {
			if err := b.Publish(ctx, tx, "dup:large", []byte(big)); err != nil {
				return err
			}
			if err := b.Publish(ctx, tx, "dup:large", []byte("small")); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var large, small int
	for _, ev := range bbUntilMarker(t, b, db.Pool, s) {
		if len(ev.Payload) == len(big) {
			large++
		} else {
			small++
		}
	}
	if small != 1 || large != 3 {
		t.Errorf("identical pairs in one transaction: small delivered %d time(s), want 1; large %d times, want 3", small, large)
	}
}

func TestBlackBoxDurableOverflowGapAndLargePayloadRetention(t *testing.T) {
	t.Parallel()
	db := bbDB(t)
	b := bbBroker(t, db.Pool, realtime.Config{PayloadTTL: time.Millisecond, CleanupInterval: -1})
	ctx := bbCtx(t)
	ch := "durable:ovf"
	if err := b.CreateStream(ctx, db.Pool, ch, realtime.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	watch := bbSub(t, b, ch, realtime.WithBuffer(100))
	s := bbSub(t, b, ch, realtime.WithBuffer(4))
	var msgs []realtime.Message
	for i := range 20 {
		p := fmt.Sprintf("o%02d", i)
		if i == 10 {
			p += strings.Repeat("L", 12000)
		}
		msgs = append(msgs, realtime.Message{Channel: ch, Payload: []byte(p)})
	}
	if err := b.PublishBatch(ctx, db.Pool, msgs); err != nil {
		t.Fatal(err)
	}
	for range 20 {
		bbNext(t, watch)
	}
	// A gap on a durable channel carries the last id delivered before it,
	// and ReadStream(ID) returns exactly what was dropped.
	var last int64
	n := 0
	for {
		ev := bbNext(t, s)
		if ev.IsGap() {
			if ev.Gap != realtime.GapOverflow || ev.ID != last {
				t.Errorf("overflow gap %+v, want id %d", ev, last)
			}
			break
		}
		if ev.ID == 0 {
			t.Errorf("durable message without id: %+v", ev)
		}
		last = ev.ID
		n++
	}
	missed, err := b.ReadStream(ctx, db.Pool, ch, last, 0)
	if err != nil || n+len(missed) != 20 || string(missed[0].Payload) != string(msgs[n].Payload) {
		t.Errorf("catch-up after overflow: %d delivered + %d read (%v), want 20", n, len(missed), err)
	}
	// Expired large payloads are cleaned, but a durable event keeps its
	// payload for as long as the stream retains it.
	time.Sleep(20 * time.Millisecond)
	if _, err := b.Cleanup(ctx, db.Pool); err != nil {
		t.Fatal(err)
	}
	all, err := b.ReadStream(ctx, db.Pool, ch, 0, 0)
	if err != nil || len(all) != 20 || string(all[10].Payload) != string(msgs[10].Payload) {
		t.Errorf("after payload TTL cleanup: %d events, large one %d bytes (%v)", len(all), len(all[min(10, len(all)-1)].Payload), err)
	}
	r := bbSub(t, b, ch, realtime.From(all[9].ID))
	if ev := bbNext(t, r); ev.IsGap() || string(ev.Payload) != string(msgs[10].Payload) {
		t.Errorf("resume over a large event after payload TTL: gap %q, %d bytes", ev.Gap, len(ev.Payload))
	}
	// Ephemeral events have no id.
	e := bbSub(t, b, "plain:noid")
	bbPublish(t, b, db.Pool, "plain:noid", "x")
	if ev := bbNext(t, e); ev.ID != 0 {
		t.Errorf("ephemeral event id %d", ev.ID)
	}
	if st := b.Stats(); st.Gaps < 1 || st.Dropped < 1 {
		t.Errorf("Stats after overflow: %+v", st)
	}
}

// bbPublishLoop publishes "0", "1", ... to ch until the returned function is
// called (pausing between messages when pause > 0); that function returns
// how many were published.
func bbPublishLoop(t *testing.T, b *realtime.Broker, db realtime.DB, ch string, pause time.Duration) func() int {
	t.Helper()
	ctx := bbCtx(t)
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		i := 0
		defer func() { done <- i }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := b.Publish(ctx, db, ch, []byte(strconv.Itoa(i))); err != nil {
				t.Errorf("publish: %v", err)
				return
			}
			i++
			if pause > 0 {
				time.Sleep(pause)
			}
		}
	}()
	return func() int {
		close(stop)
		return <-done
	}
}
