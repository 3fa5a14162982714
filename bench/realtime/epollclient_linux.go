//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"
)

// epollAvailable reports whether -fanout-client=epoll can run here.
const epollAvailable = true

// epollGroup reads some of the fan-out's WebSocket clients from one goroutine
// through an epoll set of its own, the way event-loop load generators do,
// instead of one goroutine per client parked in Go's poller. Each client
// still costs what a real one does: one read system call per wake-up, the
// frame header and the payload parsed, the receive time taken when its read
// returns (frames that arrived together share it). Clients of one group are
// served one after the other, so a client late in a wake-up's list is
// timestamped after the reads of those before it: this can only make the
// measured latency longer.
//
// The epoll descriptor itself is registered with Go's poller (an epoll set
// is readable when it has events), so the group's goroutine parks like any
// network reader and never holds an OS thread in a blocking epoll_wait.
type epollGroup struct {
	epfd  int
	file  *os.File
	rc    syscall.RawConn
	conns []*epollConn // by descriptor
	mu    sync.Mutex   // guards conns while clients are added
}

// epollConn is one client's socket and receive buffer.
type epollConn struct {
	fd   int
	buf  []byte // received bytes, unread ones in buf[r:w]
	r, w int
	want int // messages still expected
	// onMsg records one data frame's payload received at now.
	onMsg func(payload []byte, now time.Time) bool
}

func newEpollGroup() (*epollGroup, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return nil, err
	}
	f := os.NewFile(uintptr(epfd), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &epollGroup{epfd: epfd, file: f, rc: rc}, nil
}

// add takes over c's socket (c must not be used afterwards) and its bytes
// already received; onMsg is called for each of the next want data frames.
func (g *epollGroup) add(c *lightWS, want int, onMsg func([]byte, time.Time) bool) error {
	var fd int
	var derr error
	if err := c.rc.Control(func(s uintptr) { fd, derr = syscall.Dup(int(s)) }); err != nil {
		return err
	}
	if derr != nil {
		return derr
	}
	c.close() // the duplicate keeps the socket open, outside Go's poller
	syscall.CloseOnExec(fd)
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return err
	}
	ec := &epollConn{fd: fd, buf: make([]byte, 4096), want: want, onMsg: onMsg}
	ec.w = copy(ec.buf, c.rbuf[c.r:c.w])
	g.mu.Lock()
	if fd >= len(g.conns) {
		g.conns = append(g.conns, make([]*epollConn, fd+1-len(g.conns))...)
	}
	g.conns[fd] = ec
	g.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | -syscall.EPOLLET, Fd: int32(fd)}
	return syscall.EpollCtl(g.epfd, syscall.EPOLL_CTL_ADD, fd, &ev)
}

// run reads until every client got its messages or one fails; frames that
// arrived with the handshake's reply are parsed first.
func (g *epollGroup) run(deadline time.Time) error {
	defer g.close()
	_ = g.file.SetReadDeadline(deadline)
	left := 0
	for _, ec := range g.conns {
		if ec == nil {
			continue
		}
		if err := ec.parse(time.Now()); err != nil {
			return err
		}
		if ec.want > 0 {
			left++
		}
	}
	events := make([]syscall.EpollEvent, 256)
	for left > 0 {
		var n int
		var werr error
		err := g.rc.Read(func(fd uintptr) bool {
			for {
				n, werr = syscall.EpollWait(int(fd), events, 0)
				if werr != syscall.EINTR {
					break
				}
			}
			return werr != nil || n > 0
		})
		if err != nil {
			return fmt.Errorf("epoll wait: %w (%d clients still waiting)", err, left)
		}
		if werr != nil {
			return werr
		}
		for _, ev := range events[:n] {
			var ec *epollConn
			if int(ev.Fd) < len(g.conns) {
				ec = g.conns[ev.Fd]
			}
			if ec == nil || ec.want == 0 {
				continue
			}
			// Edge-triggered: a read that filled the buffer may have left
			// bytes that will not be signalled again.
			for {
				full, err := ec.fill()
				if err != nil {
					return err
				}
				if err := ec.parse(time.Now()); err != nil {
					return err
				}
				if !full || ec.want == 0 {
					break
				}
			}
			if ec.want == 0 {
				left--
			}
		}
	}
	return nil
}

// fill makes one read system call into the buffer and reports whether it
// filled it (more may be waiting).
func (ec *epollConn) fill() (full bool, err error) {
	if ec.r == ec.w {
		ec.r, ec.w = 0, 0
	} else if ec.w == len(ec.buf) {
		ec.w = copy(ec.buf, ec.buf[ec.r:ec.w])
		ec.r = 0
		if ec.w == len(ec.buf) {
			ec.buf = append(ec.buf, make([]byte, len(ec.buf))...)
		}
	}
	for {
		n, err := syscall.Read(ec.fd, ec.buf[ec.w:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return false, nil // spurious wake-up
		case err != nil:
			return false, err
		case n == 0:
			return false, io.EOF
		}
		ec.w += n
		return ec.w == len(ec.buf), nil
	}
}

// parse hands every complete data frame in the buffer to onMsg.
func (ec *epollConn) parse(now time.Time) error {
	for ec.want > 0 {
		b := ec.buf[ec.r:ec.w]
		if len(b) < 2 {
			return nil
		}
		hdr, n := 2, uint64(b[1]&0x7f)
		switch n {
		case 126:
			if len(b) < 4 {
				return nil
			}
			hdr, n = 4, uint64(binary.BigEndian.Uint16(b[2:4]))
		case 127:
			if len(b) < 10 {
				return nil
			}
			hdr, n = 10, binary.BigEndian.Uint64(b[2:10])
		}
		if n > 1<<20 {
			return errors.New("epoll client: frame too large")
		}
		if uint64(len(b)-hdr) < n {
			return nil // incomplete: wait for more
		}
		p := b[hdr : hdr+int(n)]
		ec.r += hdr + int(n)
		switch b[0] & 0x0f {
		case 0x1, 0x2:
			if b[0]&0x80 == 0 {
				return errors.New("epoll client: fragmented message")
			}
			if !ec.onMsg(p, now) {
				return errors.New("epoll client: unexpected message " + string(p))
			}
			ec.want--
		case 0x8:
			return io.EOF
		}
	}
	return nil
}

func (g *epollGroup) close() {
	for _, ec := range g.conns {
		if ec != nil {
			syscall.Close(ec.fd)
		}
	}
	g.file.Close()
}
