package realtime

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// closeLog records why the bridge closed each socket (its Debug record
// "realtime: websocket closing").
type closeLog struct {
	mu      sync.Mutex
	reasons map[string]string
	codes   map[string]websocket.StatusCode
}

func newCloseLog() *closeLog {
	return &closeLog{reasons: map[string]string{}, codes: map[string]websocket.StatusCode{}}
}

func (l *closeLog) logger() *slog.Logger { return slog.New(closeLogHandler{l}) }

// reason returns the close reason logged for client id, if any.
func (l *closeLog) reason(id string) (string, websocket.StatusCode, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.reasons[id]
	return r, l.codes[id], ok
}

type closeLogHandler struct{ l *closeLog }

func (h closeLogHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h closeLogHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h closeLogHandler) WithGroup(string) slog.Handler            { return h }
func (h closeLogHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "realtime: websocket closing" {
		return nil
	}
	var id, reason string
	var code websocket.StatusCode
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "client":
			id = a.Value.String()
		case "reason":
			reason = a.Value.String()
		case "code":
			if c, ok := a.Value.Any().(websocket.StatusCode); ok {
				code = c
			}
		}
		return true
	})
	h.l.mu.Lock()
	h.l.reasons[id], h.l.codes[id] = reason, code
	h.l.mu.Unlock()
	return nil
}

// TestWriteWatch: the watchdog that replaced a timer per write never fires
// while no write is in progress, fires for a write in progress no earlier
// than the timeout after the write started (or the shortened timeout, once
// the client failed for another reason), and not at all once stopped.
func TestWriteWatch(t *testing.T) {
	t.Parallel()
	const timeout = 30 * time.Millisecond

	t.Run("idle", func(t *testing.T) {
		t.Parallel()
		var w writeWatch
		fired := make(chan struct{}, 1)
		w.start(timeout, func() { fired <- struct{}{} })
		time.Sleep(10 * timeout) // several re-arms
		w.stop()
		assert.Empty(t, fired, "no write in progress: nothing to time out")
	})

	t.Run("stuck write", func(t *testing.T) {
		t.Parallel()
		var w writeWatch
		fired := make(chan int64, 2)
		w.start(timeout, func() { fired <- monoNow() })
		defer w.stop()
		time.Sleep(timeout / 2) // the write starts between two checks
		began := monoNow()
		w.started.Store(began)
		select {
		case at := <-fired:
			assert.GreaterOrEqual(t, time.Duration(at-began), timeout, "closed before the write timeout")
		case <-time.After(10 * time.Second):
			t.Fatal("a stuck write was not timed out")
		}
		time.Sleep(5 * timeout)
		assert.Empty(t, fired, "fires once")
	})

	t.Run("writes that complete", func(t *testing.T) {
		t.Parallel()
		var w writeWatch
		fired := make(chan struct{}, 1)
		w.start(timeout, func() { fired <- struct{}{} })
		// Many short writes over several timeouts: none lasts the timeout.
		for end := time.Now().Add(8 * timeout); time.Now().Before(end); {
			w.started.Store(monoNow())
			w.started.Store(0)
			time.Sleep(time.Millisecond)
		}
		w.stop()
		assert.Empty(t, fired)
	})

	t.Run("shortened", func(t *testing.T) {
		t.Parallel()
		var w writeWatch
		fired := make(chan int64, 1)
		w.start(time.Hour, func() { fired <- monoNow() })
		defer w.stop()
		began := monoNow()
		w.started.Store(began)
		w.shorten(timeout) // the client failed: the write gets a grace period
		select {
		case at := <-fired:
			assert.GreaterOrEqual(t, time.Duration(at-began), timeout, "closed before the grace period")
		case <-time.After(10 * time.Second):
			t.Fatal("the shortened timeout did not fire")
		}
	})

	t.Run("finishes within the grace period", func(t *testing.T) {
		t.Parallel()
		var w writeWatch
		fired := make(chan struct{}, 1)
		w.start(time.Hour, func() { fired <- struct{}{} })
		w.started.Store(monoNow())
		w.shorten(200 * time.Millisecond)
		w.started.Store(0) // the write completes
		time.Sleep(400 * time.Millisecond)
		w.stop()
		assert.Empty(t, fired, "a write that completed is not closed")
	})

	t.Run("stopped", func(t *testing.T) {
		t.Parallel()
		var w writeWatch
		fired := make(chan struct{}, 1)
		w.start(timeout, func() { fired <- struct{}{} })
		w.started.Store(monoNow() - int64(time.Hour))
		w.stop()
		time.Sleep(5 * timeout)
		assert.Empty(t, fired, "a stopped watchdog does not fire")
	})
}

// TestWebSocketKeepalive: the bridge pings every PingInterval; a client
// that answers (any client that reads) stays connected and keeps receiving,
// one that never answers is closed once a ping waited WriteTimeout for its
// pong (1001, "ping timeout").
func TestWebSocketKeepalive(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, fastCfg())
	log := newCloseLog()
	br, srv := newBridgeServer(t, b, BridgeConfig{
		PingInterval: 20 * time.Millisecond,
		WriteTimeout: 300 * time.Millisecond,
		Logger:       log.logger(),
	})
	ctx := ctxT(t)
	live := dial(t, srv, "user=live")
	deaf := dial(t, srv, "user=deaf") // never reads: never answers a ping
	sendWire(t, live, map[string]any{"type": "join", "channel": "room:k"})
	require.Equal(t, "joined", readWire(t, live).Type)

	// The live client reads (and so answers pings) in the background.
	got := make(chan wireOut, 16)
	go func() {
		for {
			_, data, err := live.Read(ctx)
			if err != nil {
				close(got)
				return
			}
			var w wireOut
			if json.Unmarshal(data, &w) == nil {
				got <- w
			}
		}
	}()
	require.Eventually(t, func() bool { _, _, ok := log.reason("deaf"); return ok },
		20*time.Second, 10*time.Millisecond, "the client that never answers is closed")
	reason, code, _ := log.reason("deaf")
	assert.Equal(t, "ping timeout", reason)
	assert.Equal(t, websocket.StatusGoingAway, code)
	_ = deaf.CloseNow()
	require.Eventually(t, func() bool { return br.Clients() == 1 }, 20*time.Second, 10*time.Millisecond)

	// The live client was pinged all along (dozens of intervals) and stays.
	require.NoError(t, b.Publish(ctx, db.Pool, "room:k", []byte(`"still here"`)))
	select {
	case w, ok := <-got:
		require.True(t, ok, "the live client's socket ended")
		assert.Equal(t, "message", w.Type)
		assert.JSONEq(t, `"still here"`, string(w.Data))
	case <-time.After(15 * time.Second):
		t.Fatal("no message")
	}
	_, _, closed := log.reason("live")
	assert.False(t, closed, "the client that answers pings is not closed")
}
