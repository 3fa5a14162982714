//go:build unix

package realtime

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSlowWebSocketClientIsClosed(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	b := startBroker(t, db.Pool, Config{})
	log := newCloseLog()
	br, err := NewBridge(b, BridgeConfig{Authorize: testAuthorize, QueueSize: 500, WriteTimeout: 300 * time.Millisecond, Logger: log.logger()})
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(br)
	// Small kernel buffers, so that a client that does not read blocks the
	// server's writes after a few messages.
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if tc, ok := c.(*net.TCPConn); ok && s == http.StateNew {
			_ = tc.SetWriteBuffer(4096)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	ctx := ctxT(t)
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/?user="
	slow, _, err := websocket.Dial(ctx, wsURL+"slow", &websocket.DialOptions{HTTPClient: smallBufferClient()})
	require.NoError(t, err)
	defer slow.CloseNow()
	fast, _, err := websocket.Dial(ctx, wsURL+"fast", nil)
	require.NoError(t, err)
	defer fast.CloseNow()
	for _, c := range []*websocket.Conn{slow, fast} {
		sendWire(t, c, map[string]any{"type": "join", "channel": "room:flood"})
		require.Equal(t, "joined", readWire(t, c).Type)
	}
	const total = 300
	fastDone := make(chan int, 1)
	go func() {
		n := 0
		for n < total {
			if _, _, err := fast.Read(ctx); err != nil {
				break
			}
			n++
		}
		fastDone <- n
	}()
	// The slow client never reads: once the buffers fill, a write blocks
	// beyond WriteTimeout and the server closes the socket. The fast
	// client's queue absorbs the burst.
	var batch []Message
	for i := range total {
		// Distinct payloads: NOTIFY collapses identical ones in a transaction.
		batch = append(batch, Message{Channel: "room:flood", Payload: fmt.Appendf(nil, "%d %s", i, strings.Repeat("x", 2000))})
	}
	require.NoError(t, b.PublishBatch(ctx, db.Pool, batch))
	assert.Equal(t, total, <-fastDone, "the fast client got every message")
	require.Eventually(t, func() bool { return br.Clients() == 1 }, 20*time.Second, 10*time.Millisecond,
		"the slow client is disconnected, the fast one stays")
	// The queue (500) never filled: the write timeout closed it.
	reason, code, ok := log.reason("slow")
	require.True(t, ok)
	assert.Equal(t, "write timeout", reason)
	assert.Equal(t, websocket.StatusPolicyViolation, code)
	_, _, closed := log.reason("fast")
	assert.False(t, closed)
}

func smallBufferClient() *http.Client {
	dialer := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	return &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}}
}
