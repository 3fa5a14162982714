package realtime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testAuthorize: the user comes from the "user" query parameter (a real app
// would check a session); rooms "room:*" may be joined except "room:secret".
func testAuthorize(r *http.Request) (Identity, error) {
	u := r.URL.Query().Get("user")
	if u == "" {
		return Identity{}, errors.New("no user")
	}
	if u == "banned" {
		return Identity{}, fmt.Errorf("banned: %w", ErrForbidden)
	}
	return Identity{
		ID:       u,
		Channels: []string{"user:" + u},
		CanJoin: func(ch string) bool {
			return strings.HasPrefix(ch, "room:") && ch != "room:secret"
		},
	}, nil
}

func newBridgeServer(t *testing.T, b *Broker, cfg BridgeConfig) (*Bridge, *httptest.Server) {
	t.Helper()
	if cfg.Authorize == nil {
		cfg.Authorize = testAuthorize
	}
	br, err := NewBridge(b, cfg)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/ws", br)
	mux.Handle("/sse", br.SSE())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return br, srv
}

func dial(t *testing.T, srv *httptest.Server, query string) *websocket.Conn {
	t.Helper()
	u := "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws?" + query
	c, _, err := websocket.Dial(ctxT(t), u, nil)
	require.NoError(t, err)
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

func readWire(t *testing.T, c *websocket.Conn) wireOut {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	typ, data, err := c.Read(ctx)
	require.NoError(t, err)
	require.Equal(t, websocket.MessageText, typ)
	var w wireOut
	require.NoError(t, json.Unmarshal(data, &w), string(data))
	return w
}

func sendWire(t *testing.T, c *websocket.Conn, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	require.NoError(t, c.Write(ctxT(t), websocket.MessageText, b))
}

func closeStatus(t *testing.T, c *websocket.Conn) websocket.StatusCode {
	t.Helper()
	return websocket.CloseStatus(closeErr(t, c))
}

// closeErr reads until the socket ends and returns the error that ended it.
func closeErr(t *testing.T, c *websocket.Conn) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		if _, _, err := c.Read(ctx); err != nil {
			return err
		}
	}
}

func TestWebSocketEndToEnd(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{})
	br, srv := newBridgeServer(t, b, BridgeConfig{MaxRooms: 3})
	ctx := ctxT(t)

	// Refused before the upgrade.
	resp, err := http.Get(srv.URL + "/ws")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, err = http.Get(srv.URL + "/ws?user=banned")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)

	alice := dial(t, srv, "user=alice")
	bob := dial(t, srv, "user=bob")
	require.Eventually(t, func() bool { return br.Clients() == 2 && b.Stats().Subscriptions == 2 }, 10*time.Second, 10*time.Millisecond)

	// Per-user channel: only alice gets hers.
	require.NoError(t, PublishJSON(ctx, b, db.Pool, "user:alice", map[string]string{"note": "hi alice"}))
	w := readWire(t, alice)
	assert.Equal(t, "message", w.Type)
	assert.Equal(t, "user:alice", w.Channel)
	assert.JSONEq(t, `{"note":"hi alice"}`, string(w.Data))

	// Rooms.
	sendWire(t, alice, map[string]any{"type": "join", "channel": "room:lobby"})
	assert.Equal(t, wireOut{Type: "joined", Channel: "room:lobby"}, readWire(t, alice))
	sendWire(t, bob, map[string]any{"type": "join", "channels": []string{"room:lobby", "room:secret", "bad name"}})
	assert.Equal(t, wireOut{Type: "joined", Channel: "room:lobby"}, readWire(t, bob))
	assert.Equal(t, wireOut{Type: "error", Channel: "room:secret", Error: "not allowed"}, readWire(t, bob))
	assert.Equal(t, wireOut{Type: "error", Channel: "bad name", Error: "invalid channel name"}, readWire(t, bob))
	sendWire(t, bob, map[string]any{"type": "join", "channel": "other"})
	assert.Equal(t, wireOut{Type: "error", Channel: "other", Error: "not allowed"}, readWire(t, bob))

	require.NoError(t, b.Publish(ctx, db.Pool, "room:lobby", []byte("plain text")))
	for _, c := range []*websocket.Conn{alice, bob} {
		w := readWire(t, c)
		assert.Equal(t, wireOut{Type: "message", Channel: "room:lobby", Data: json.RawMessage(`"plain text"`)}, w)
	}

	// Oversized join list, unknown type, leaving, the room limit.
	sendWire(t, alice, map[string]any{"type": "join", "channels": []string{"room:1", "room:2", "room:3", "room:4"}})
	assert.Equal(t, "error", readWire(t, alice).Type)
	sendWire(t, alice, map[string]any{"type": "dance"})
	assert.Equal(t, wireOut{Type: "error", Error: `unknown message type "dance"`}, readWire(t, alice))
	sendWire(t, alice, map[string]any{"type": "join", "channels": []string{"room:1", "room:2", "room:3"}})
	assert.Equal(t, "joined", readWire(t, alice).Type)
	assert.Equal(t, "joined", readWire(t, alice).Type)
	w = readWire(t, alice)
	assert.Equal(t, "error", w.Type)
	assert.Contains(t, w.Error, "room limit of 3")
	sendWire(t, alice, map[string]any{"type": "leave", "channel": "room:lobby"})
	assert.Equal(t, wireOut{Type: "left", Channel: "room:lobby"}, readWire(t, alice))
	sendWire(t, alice, map[string]any{"type": "leave", "channel": "user:alice"})
	assert.Equal(t, "error", readWire(t, alice).Type, "identity channels cannot be left")
	require.NoError(t, b.Publish(ctx, db.Pool, "room:lobby", []byte(`{"n":2}`)))
	require.NoError(t, b.Publish(ctx, db.Pool, "user:alice", []byte(`{"n":3}`)))
	w = readWire(t, alice)
	assert.Equal(t, "user:alice", w.Channel, "alice left the lobby")
	assert.Equal(t, "room:lobby", readWire(t, bob).Channel)

	// Malformed JSON: policy close. (The socket is closed promptly; the
	// close frame itself is occasionally not observed by the client, which
	// then sees the connection end without a status.)
	require.NoError(t, bob.Write(ctx, websocket.MessageText, []byte("{not json")))
	err = closeErr(t, bob)
	require.NotErrorIs(t, err, context.DeadlineExceeded, "the server must close the socket")
	if st := websocket.CloseStatus(err); st != -1 {
		assert.Equal(t, websocket.StatusPolicyViolation, st)
	}
	// A message over the read limit: 1009.
	require.NoError(t, alice.Write(ctx, websocket.MessageText, []byte(`{"type":"join","channel":"`+strings.Repeat("x", 5000)+`"}`)))
	assert.Equal(t, websocket.StatusMessageTooBig, closeStatus(t, alice))
	require.Eventually(t, func() bool { return br.Clients() == 0 && b.Stats().Subscriptions == 0 }, 10*time.Second, 10*time.Millisecond)
}

func TestWebSocketResumeDurableRoom(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{})
	_, srv := newBridgeServer(t, b, BridgeConfig{})
	ctx := ctxT(t)
	require.NoError(t, b.CreateStream(ctx, db.Pool, "room:log", StreamConfig{}))
	require.NoError(t, b.CreateStream(ctx, db.Pool, "user:carol", StreamConfig{}))
	for i := 1; i <= 5; i++ {
		require.NoError(t, b.Publish(ctx, db.Pool, "room:log", fmt.Appendf(nil, `{"i":%d}`, i)))
	}
	require.NoError(t, b.Publish(ctx, db.Pool, "user:carol", []byte(`"u1"`)))
	require.NoError(t, b.Publish(ctx, db.Pool, "user:carol", []byte(`"u2"`)))

	c := dial(t, srv, "user=carol&resume="+url.QueryEscape("user:carol:1"))
	w := readWire(t, c)
	assert.Equal(t, wireOut{Type: "message", Channel: "user:carol", ID: 2, Data: json.RawMessage(`"u2"`)}, w)
	sendWire(t, c, map[string]any{"type": "join", "channel": "room:log", "since": 3})
	assert.Equal(t, "joined", readWire(t, c).Type)
	for i := 4; i <= 5; i++ {
		w := readWire(t, c)
		assert.EqualValues(t, i, w.ID)
		assert.JSONEq(t, fmt.Sprintf(`{"i":%d}`, i), string(w.Data))
	}
	sendWire(t, c, map[string]any{"type": "join", "channel": "room:nostream", "since": 3})
	assert.Equal(t, wireOut{Type: "error", Channel: "room:nostream", Error: "channel has no stream to resume"}, readWire(t, c))

	resp, err := http.Get(srv.URL + "/ws?user=carol&resume=nonsense")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

// Two "processes" (two brokers with their own pools and bridges) on one
// database: a room message published once reaches sockets on both.
func TestTwoBridgesDeliverRoomMessage(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	pool2, err := pgxpool.New(context.Background(), db.URL)
	require.NoError(t, err)
	t.Cleanup(pool2.Close)
	b1 := startBroker(t, db.Pool, Config{})
	b2 := startBroker(t, pool2, Config{})
	_, srv1 := newBridgeServer(t, b1, BridgeConfig{})
	_, srv2 := newBridgeServer(t, b2, BridgeConfig{})
	var socks []*websocket.Conn
	for i := range 3 {
		for _, srv := range []*httptest.Server{srv1, srv2} {
			c := dial(t, srv, fmt.Sprintf("user=u%d", i))
			sendWire(t, c, map[string]any{"type": "join", "channel": "room:shared"})
			require.Equal(t, "joined", readWire(t, c).Type)
			socks = append(socks, c)
		}
	}
	require.NoError(t, b2.Publish(ctxT(t), pool2, "room:shared", []byte(`{"text":"hello both"}`)))
	for _, c := range socks {
		w := readWire(t, c)
		assert.Equal(t, "room:shared", w.Channel)
		assert.JSONEq(t, `{"text":"hello both"}`, string(w.Data))
	}
}

func TestBridgeClosesSocketsWhenBrokerStops(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b, err := New(db.Pool, Config{})
	require.NoError(t, err)
	require.NoError(t, b.Start(context.Background()))
	_, srv := newBridgeServer(t, b, BridgeConfig{})
	t.Cleanup(func() { _ = b.Stop(context.Background()) }) // also if the test fails early
	c := dial(t, srv, "user=dave")
	require.Eventually(t, func() bool { return b.Stats().Subscriptions == 1 }, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, b.Stop(ctxT(t)))
	assert.Equal(t, websocket.StatusGoingAway, closeStatus(t, c))
	resp, err := http.Get(srv.URL + "/sse?user=dave")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)

	_, err = NewBridge(b, BridgeConfig{})
	assert.Error(t, err, "Authorize is required")
	_, err = NewBridge(nil, BridgeConfig{Authorize: testAuthorize})
	assert.Error(t, err)
	_, err = NewBridge(b, BridgeConfig{Authorize: testAuthorize, QueueSize: -1})
	assert.Error(t, err)
}

// sseEvent is one parsed SSE event.
type sseEvent struct {
	event, id string
	data      wireOut
}

func readSSE(t *testing.T, r *bufio.Reader) sseEvent {
	t.Helper()
	var ev sseEvent
	for {
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "":
			if ev.event != "" {
				return ev
			}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "event: "):
			ev.event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "id: "):
			ev.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.data))
		}
	}
}

func openSSE(t *testing.T, ctx context.Context, srv *httptest.Server, query, lastID string) (*http.Response, *bufio.Reader) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/sse?"+query, nil)
	require.NoError(t, err)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp, bufio.NewReader(resp.Body)
}

func TestSSEEndToEnd(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{})
	br, srv := newBridgeServer(t, b, BridgeConfig{PingInterval: 50 * time.Millisecond})
	ctx := ctxT(t)
	require.NoError(t, b.CreateStream(ctx, db.Pool, "room:news", StreamConfig{}))

	resp, err := http.Get(srv.URL + "/sse")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, err = http.Get(srv.URL + "/sse?user=erin&channel=room:secret")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp, err = http.Get(srv.URL + "/sse?user=erin&channel=bad%20name")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/sse?user=erin", nil)
	req.Header.Set("Last-Event-ID", "%zz")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)

	sctx, cancel := context.WithCancel(ctx)
	resp, r := openSSE(t, sctx, srv, "user=erin&channel=room:news", "")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	require.Eventually(t, func() bool { return br.Clients() == 1 }, 10*time.Second, 10*time.Millisecond)
	// (Order is kept per channel, not across channels: publish one at a time.)
	require.NoError(t, b.Publish(ctx, db.Pool, "room:news", []byte(`{"h":"one"}`)))
	ev := readSSE(t, r)
	assert.Equal(t, "message", ev.event)
	assert.Equal(t, "room%3Anews=1", ev.id)
	assert.JSONEq(t, `{"h":"one"}`, string(ev.data.Data))
	require.NoError(t, b.Publish(ctx, db.Pool, "user:erin", []byte(`personal`)))
	ev = readSSE(t, r)
	assert.Equal(t, "user:erin", ev.data.Channel)
	assert.Equal(t, "room%3Anews=1", ev.id, "ephemeral events repeat the durable ids")
	lastID := ev.id
	cancel() // the browser loses the connection
	require.Eventually(t, func() bool { return br.Clients() == 0 }, 10*time.Second, 10*time.Millisecond)

	require.NoError(t, b.Publish(ctx, db.Pool, "room:news", []byte(`{"h":"two"}`)))
	require.NoError(t, b.Publish(ctx, db.Pool, "room:news", []byte(`{"h":"three"}`)))
	// EventSource reconnects with Last-Event-ID: nothing is missed.
	_, r = openSSE(t, ctx, srv, "user=erin&channel=room:news", lastID)
	ev = readSSE(t, r)
	assert.EqualValues(t, 2, ev.data.ID)
	assert.JSONEq(t, `{"h":"two"}`, string(ev.data.Data))
	ev = readSSE(t, r)
	assert.EqualValues(t, 3, ev.data.ID)
	assert.Equal(t, "room%3Anews=3", ev.id)
}

// TestRoomSharesOneSubscription: the sockets of this process that join a
// room share one broker subscription, every member receives each message,
// a member that left receives nothing more, and the last one to leave ends
// the room's subscription.
func TestRoomSharesOneSubscription(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{})
	br, srv := newBridgeServer(t, b, BridgeConfig{})
	ctx := ctxT(t)

	const n = 20
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		conns[i] = dial(t, srv, fmt.Sprintf("user=u%d", i))
		sendWire(t, conns[i], map[string]any{"type": "join", "channel": "room:shared"})
		assert.Equal(t, wireOut{Type: "joined", Channel: "room:shared"}, readWire(t, conns[i]))
	}
	// n identity channels plus one subscription for the room.
	assert.Equal(t, n+1, b.Stats().Subscriptions)
	require.Equal(t, n, br.Clients())

	require.NoError(t, b.Publish(ctx, db.Pool, "room:shared", []byte(`{"k":1}`)))
	for _, c := range conns {
		assert.Equal(t, wireOut{Type: "message", Channel: "room:shared", Data: json.RawMessage(`{"k":1}`)}, readWire(t, c))
	}

	// conns[0] leaves; the next thing it receives is on its own channel,
	// published after the room's second message was relayed to the others.
	sendWire(t, conns[0], map[string]any{"type": "leave", "channel": "room:shared"})
	assert.Equal(t, wireOut{Type: "left", Channel: "room:shared"}, readWire(t, conns[0]))
	require.NoError(t, b.Publish(ctx, db.Pool, "room:shared", []byte(`{"k":2}`)))
	for _, c := range conns[1:] {
		assert.Equal(t, wireOut{Type: "message", Channel: "room:shared", Data: json.RawMessage(`{"k":2}`)}, readWire(t, c))
	}
	require.NoError(t, b.Publish(ctx, db.Pool, "user:u0", []byte(`"after"`)))
	assert.Equal(t, wireOut{Type: "message", Channel: "user:u0", Data: json.RawMessage(`"after"`)}, readWire(t, conns[0]))

	for _, c := range conns[1:] {
		sendWire(t, c, map[string]any{"type": "leave", "channel": "room:shared"})
		assert.Equal(t, "left", readWire(t, c).Type)
	}
	require.Eventually(t, func() bool { return b.Stats().Subscriptions == n }, 10*time.Second, 10*time.Millisecond,
		"the room's subscription ends with its last member")

	// Joining again opens a new room that works.
	sendWire(t, conns[3], map[string]any{"type": "join", "channel": "room:shared"})
	assert.Equal(t, "joined", readWire(t, conns[3]).Type)
	require.NoError(t, b.Publish(ctx, db.Pool, "room:shared", []byte(`3`)))
	assert.Equal(t, wireOut{Type: "message", Channel: "room:shared", Data: json.RawMessage(`3`)}, readWire(t, conns[3]))
}

// TestBroadcastToLocalSockets: Broadcast reaches the sockets of this bridge
// in the room (not others, not another bridge) without PostgreSQL.
func TestBroadcastToLocalSockets(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{})
	br, srv := newBridgeServer(t, b, BridgeConfig{})
	_, srv2 := newBridgeServer(t, b, BridgeConfig{})
	ctx := ctxT(t)

	in1, in2, out := dial(t, srv, "user=in1"), dial(t, srv, "user=in2"), dial(t, srv, "user=out")
	other := dial(t, srv2, "user=other") // same room, another bridge
	for _, c := range []*websocket.Conn{in1, in2, other} {
		sendWire(t, c, map[string]any{"type": "join", "channel": "room:local"})
		assert.Equal(t, "joined", readWire(t, c).Type)
	}
	n, err := br.Broadcast("room:local", []byte(`{"hello":"local"}`))
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	for _, c := range []*websocket.Conn{in1, in2} {
		assert.Equal(t, wireOut{Type: "message", Channel: "room:local", Data: json.RawMessage(`{"hello":"local"}`)}, readWire(t, c))
	}
	n, err = br.Broadcast("user:out", []byte("just you"))
	require.NoError(t, err)
	assert.Equal(t, 1, n, "identity channels are rooms too")
	assert.Equal(t, wireOut{Type: "message", Channel: "user:out", Data: json.RawMessage(`"just you"`)}, readWire(t, out))

	// The other bridge's socket got nothing: the next thing it reads is a
	// message published after the broadcast.
	require.NoError(t, b.Publish(ctx, db.Pool, "user:other", []byte(`"marker"`)))
	assert.Equal(t, wireOut{Type: "message", Channel: "user:other", Data: json.RawMessage(`"marker"`)}, readWire(t, other))

	n, err = br.Broadcast("room:nobody", []byte("x"))
	require.NoError(t, err)
	assert.Zero(t, n)
	_, err = br.Broadcast("bad name", []byte("x"))
	assert.ErrorIs(t, err, ErrInvalidChannel)
}

// An EventSource reconnecting with a Last-Event-ID whose stream was dropped
// meanwhile, or whose ids started again, goes on with a "reset" gap: it is
// not refused (a browser would stop reconnecting), and its next id no longer
// carries the stale number.
func TestSSEResumeAfterStreamReset(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{})
	br, srv := newBridgeServer(t, b, BridgeConfig{})
	ctx := ctxT(t)
	require.NoError(t, b.CreateStream(ctx, db.Pool, "room:news", StreamConfig{}))
	for i := 1; i <= 3; i++ {
		require.NoError(t, b.Publish(ctx, db.Pool, "room:news", fmt.Appendf(nil, "%d", i)))
	}
	require.NoError(t, b.DropStream(ctx, db.Pool, "room:news"))

	// Stream gone: live after a gap; ids of channels not joined are dropped.
	resp, r := openSSE(t, ctx, srv, "user=erin&channel=room:news", "room%3Anews=3&room%3Aother=9")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, sseEvent{event: "gap", data: wireOut{Type: "gap", Channel: "room:news", Reason: "reset"}}, readSSE(t, r))
	require.NoError(t, b.Publish(ctx, db.Pool, "room:news", []byte(`"live"`)))
	assert.Equal(t, sseEvent{event: "message", data: wireOut{Type: "message", Channel: "room:news", Data: json.RawMessage(`"live"`)}}, readSSE(t, r))
	resp.Body.Close()

	// Stream created again (ids from 1): the stale id 3 replays the new log.
	require.NoError(t, b.CreateStream(ctx, db.Pool, "room:news", StreamConfig{}))
	require.NoError(t, b.Publish(ctx, db.Pool, "room:news", []byte(`"n1"`)))
	require.Eventually(t, func() bool { return br.Clients() == 0 }, 10*time.Second, 10*time.Millisecond)
	resp, r = openSSE(t, ctx, srv, "user=erin&channel=room:news", "room%3Anews=3")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, sseEvent{event: "gap", id: "room%3Anews=0", data: wireOut{Type: "gap", Channel: "room:news", Reason: "reset"}}, readSSE(t, r))
	assert.Equal(t, sseEvent{event: "message", id: "room%3Anews=1", data: wireOut{Type: "message", Channel: "room:news", ID: 1, Data: json.RawMessage(`"n1"`)}}, readSSE(t, r))

	// An explicit resume parameter on a channel without a stream still fails.
	resp, _ = openSSE(t, ctx, srv, "user=erin&channel=room:none&resume=room:none:1", "")
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

func TestUpgradeRequested(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		vals []string
		want bool
	}{
		{nil, false},
		{[]string{"websocket"}, true},
		{[]string{"WebSocket"}, true},
		{[]string{"h2c, websocket"}, true},
		{[]string{"h2c", " websocket "}, true},
		{[]string{"h2c"}, false},
		{[]string{"websockets"}, false},
	} {
		r := httptest.NewRequest(http.MethodGet, "/ws", nil)
		for _, v := range tc.vals {
			r.Header.Add("Upgrade", v)
		}
		assert.Equal(t, tc.want, upgradeRequested(r), "Upgrade: %q", tc.vals)
	}
	// A plain GET by an authorized user is refused by the upgrade, and
	// leaves no subscription behind.
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{})
	br, srv := newBridgeServer(t, b, BridgeConfig{})
	resp, err := http.Get(srv.URL + "/ws?user=ann")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUpgradeRequired, resp.StatusCode)
	assert.Zero(t, br.Clients())
	b.mu.Lock()
	assert.Empty(t, b.subs)
	b.mu.Unlock()
}
