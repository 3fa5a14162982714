package main

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/realtime"
)

// fanTarget is a server the fan-out clients connect to: addr to dial and
// send to deliver message payload to every client that joined.
type fanTarget struct {
	addr  string
	send  func(ctx context.Context, payload string) error
	close func()
}

// bridgeTarget is justpg's path: a publish through PostgreSQL, the broker's
// listener, the bridge's room and one queue and writer per socket.
func bridgeTarget(b *realtime.Broker, pool *pgxpool.Pool) (fanTarget, error) {
	br, err := realtime.NewBridge(b, realtime.BridgeConfig{
		Authorize: func(r *http.Request) (realtime.Identity, error) {
			return realtime.Identity{ID: r.URL.Query().Get("u"), CanJoin: func(string) bool { return true }}, nil
		},
		QueueSize: 1024,
	})
	if err != nil {
		return fanTarget{}, err
	}
	srv := httptest.NewServer(br)
	return fanTarget{
		addr: strings.TrimPrefix(srv.URL, "http://"),
		send: func(ctx context.Context, p string) error {
			return b.Publish(ctx, pool, "room:fanout", []byte(p))
		},
		close: srv.Close,
	}, nil
}

// floorTarget is the least a server can do for the same fan-out, as a
// reference measured in the same run on the same sockets: no PostgreSQL,
// no WebSocket library, no queue or goroutine per socket. The frame a
// bridge client would receive is built once and written to every socket by
// GOMAXPROCS goroutines. What it measures is the machine: loopback TCP
// writes and the clients' reads on the same cores.
func floorTarget() (fanTarget, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fanTarget{}, err
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				if err := floorHandshake(c); err != nil {
					c.Close()
					return
				}
				mu.Lock() // joined before the reply, as in a bridge's room
				conns = append(conns, c)
				mu.Unlock()
				_, _ = c.Write(floorFrame([]byte(`{"type":"joined","channel":"room:fanout"}`)))
			})
		}
	})
	return fanTarget{
		addr: ln.Addr().String(),
		send: func(ctx context.Context, p string) error {
			f := floorFrame([]byte(`{"type":"message","channel":"room:fanout","data":"` + p + `"}`))
			mu.Lock()
			cs := conns
			mu.Unlock()
			k := runtime.GOMAXPROCS(0)
			errs := make([]error, k)
			var ww sync.WaitGroup
			for j := range k {
				ww.Go(func() {
					for i := j; i < len(cs); i += k {
						if _, err := cs[i].Write(f); err != nil && errs[j] == nil {
							errs[j] = err
						}
					}
				})
			}
			ww.Wait()
			return errors.Join(errs...)
		},
		close: func() {
			ln.Close()
			mu.Lock()
			for _, c := range conns {
				c.Close()
			}
			mu.Unlock()
			wg.Wait()
		},
	}, nil
}

// floorHandshake answers a client's opening handshake and reads its join
// message.
func floorHandshake(c net.Conn) error {
	r := bufio.NewReader(c)
	req, err := http.ReadRequest(r)
	if err != nil {
		return err
	}
	key := req.Header.Get("Sec-WebSocket-Key")
	if key == "" {
		return errors.New("floor: not a WebSocket handshake")
	}
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n"
	if _, err := io.WriteString(c, resp); err != nil {
		return err
	}
	// The join: one masked text frame with a payload under 126 bytes.
	var h [6]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return err
	}
	if h[0] != 0x81 || h[1]&0x80 == 0 || h[1]&0x7f >= 126 {
		return fmt.Errorf("floor: unexpected frame % x", h[:2])
	}
	_, err = io.ReadFull(r, make([]byte, h[1]&0x7f))
	return err
}

// floorFrame is p as one unmasked text frame (payload under 64 KiB).
func floorFrame(p []byte) []byte {
	f := []byte{0x81, byte(len(p))}
	if len(p) >= 126 {
		f = []byte{0x81, 126, byte(len(p) >> 8), byte(len(p))}
	}
	return append(f, p...)
}
