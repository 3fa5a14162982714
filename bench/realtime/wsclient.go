package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
)

var flagFanClient = flag.String("fanout-client", defaultFanClient(), "fan-out light clients: epoll (GOMAXPROCS event loops read all sockets) or goroutine (one goroutine per client)")

func defaultFanClient() string {
	if epollAvailable {
		return "epoll"
	}
	return "goroutine"
}

// lightWS is a minimal WebSocket client for the fan-out run: a thousand of
// them share two cores with the server under test, so each read must cost
// as little as possible. It reads unfragmented text frames into one reused
// buffer (servers do not mask), writes masked text frames, and answers
// nothing else: the bench's bridge pings every 25s, far beyond a run.
//
// It reads without a speculative read system call: Go's reader tries a read
// first and waits for the poller only when that returns EAGAIN, so with one
// message per wake-up every message cost a second, empty read. lightWS
// waits for readability first unless its last read filled the buffer (the
// poller is edge-triggered: data that arrives after a read that took all
// there was signals again).
type lightWS struct {
	conn net.Conn
	rc   syscall.RawConn
	rbuf []byte // received bytes, unread ones in rbuf[r:w]
	r, w int
	full bool // the last read filled rbuf: more may be waiting unsignalled
	buf  []byte
}

// dialLight performs the opening handshake on a plain TCP connection.
func dialLight(addr, path string) (*lightWS, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key) + "\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		return nil, err
	}
	r := bufio.NewReaderSize(conn, 4096)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		conn.Close()
		return nil, fmt.Errorf("handshake: %s", resp.Status)
	}
	rc, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		conn.Close()
		return nil, err
	}
	c := &lightWS{conn: conn, rc: rc, rbuf: make([]byte, 4096), buf: make([]byte, 0, 512), full: true}
	c.w, _ = r.Read(c.rbuf[:r.Buffered()]) // bytes read past the handshake
	return c, nil
}

// fill reads more bytes into rbuf.
func (c *lightWS) fill() error {
	if c.r == c.w {
		c.r, c.w = 0, 0
	} else if c.w == len(c.rbuf) {
		c.w = copy(c.rbuf, c.rbuf[c.r:c.w])
		c.r = 0
		if c.w == len(c.rbuf) {
			c.rbuf = append(c.rbuf, make([]byte, len(c.rbuf))...)
		}
	}
	skip := !c.full
	var n int
	var rerr error
	err := c.rc.Read(func(fd uintptr) bool {
		if skip { // wait for readability first
			skip = false
			return false
		}
		for {
			n, rerr = syscall.Read(int(fd), c.rbuf[c.w:])
			if rerr != syscall.EINTR {
				return rerr != syscall.EAGAIN
			}
		}
	})
	switch {
	case err != nil:
		return err
	case rerr != nil:
		return rerr
	case n <= 0:
		return io.EOF
	}
	c.full = c.w+n == len(c.rbuf)
	c.w += n
	return nil
}

// readFull copies the next len(p) received bytes into p.
func (c *lightWS) readFull(p []byte) error {
	for len(p) > 0 {
		if c.r == c.w {
			if err := c.fill(); err != nil {
				return err
			}
		}
		k := copy(p, c.rbuf[c.r:c.w])
		c.r += k
		p = p[k:]
	}
	return nil
}

// writeText sends one masked text frame (payload < 126 bytes).
func (c *lightWS) writeText(p []byte) error {
	if len(p) >= 126 {
		return errors.New("lightWS: payload too long")
	}
	f := make([]byte, 0, 6+len(p))
	f = append(f, 0x81, 0x80|byte(len(p)))
	mask := make([]byte, 4)
	_, _ = rand.Read(mask)
	f = append(f, mask...)
	for i, b := range p {
		f = append(f, b^mask[i%4])
	}
	_, err := c.conn.Write(f)
	return err
}

// read returns the payload of the next data frame, valid until the next
// call. A close frame ends the connection with io.EOF.
func (c *lightWS) read() ([]byte, error) {
	for {
		var h [2]byte
		if err := c.readFull(h[:]); err != nil {
			return nil, err
		}
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var e [2]byte
			if err := c.readFull(e[:]); err != nil {
				return nil, err
			}
			n = uint64(binary.BigEndian.Uint16(e[:]))
		case 127:
			var e [8]byte
			if err := c.readFull(e[:]); err != nil {
				return nil, err
			}
			n = binary.BigEndian.Uint64(e[:])
		}
		if n > 1<<20 {
			return nil, errors.New("lightWS: frame too large")
		}
		c.buf = c.buf[:0]
		if uint64(cap(c.buf)) < n {
			c.buf = make([]byte, 0, n)
		}
		c.buf = c.buf[:n]
		if err := c.readFull(c.buf); err != nil {
			return nil, err
		}
		switch h[0] & 0x0f {
		case 0x1, 0x2: // text, binary
			if h[0]&0x80 == 0 {
				return nil, errors.New("lightWS: fragmented message")
			}
			return c.buf, nil
		case 0x8:
			return nil, io.EOF
		}
		// ping/pong: ignored
	}
}

func (c *lightWS) close() { c.conn.Close() }
