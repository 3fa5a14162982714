package main

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
)

// lightWS is a minimal WebSocket client for the fan-out run: a thousand of
// them share two cores with the server under test, so each read must cost
// as little as possible. It reads unfragmented text frames into one reused
// buffer (servers do not mask), writes masked text frames, and answers
// nothing else: the bench's bridge pings every 25s, far beyond a run.
type lightWS struct {
	conn net.Conn
	r    *bufio.Reader
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
	return &lightWS{conn: conn, r: r, buf: make([]byte, 0, 512)}, nil
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
		if _, err := io.ReadFull(c.r, h[:]); err != nil {
			return nil, err
		}
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var e [2]byte
			if _, err := io.ReadFull(c.r, e[:]); err != nil {
				return nil, err
			}
			n = uint64(binary.BigEndian.Uint16(e[:]))
		case 127:
			var e [8]byte
			if _, err := io.ReadFull(c.r, e[:]); err != nil {
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
		if _, err := io.ReadFull(c.r, c.buf); err != nil {
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
