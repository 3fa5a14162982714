package realtime

import (
	"context"
	"sync"
)

// GapReason says why messages may be missing before a gap event.
type GapReason string

// The reasons for a gap.
const (
	// GapReconnect: the listener connection was lost and re-established;
	// messages published meanwhile were not received. Subscriptions resumed
	// from a durable stream get the missed events instead of this gap.
	GapReconnect GapReason = "reconnect"
	// GapOverflow: the subscription's buffer was full and messages were
	// dropped (SlowPolicy DropAndGap).
	GapOverflow GapReason = "overflow"
	// GapTrimmed: a resumed durable stream no longer holds some events after
	// the requested id (retention removed them).
	GapTrimmed GapReason = "trimmed"
	// GapReset: the durable stream's ids started again (DropStream, perhaps
	// followed by CreateStream), or a resume id was beyond the stream's
	// newest id. The subscription continues from the start of the stream's
	// current log (ID 0), or live on a channel that no longer has a stream.
	GapReset GapReason = "reset"
	// GapUnresolved: a large payload could not be loaded (it expired before
	// the listener read it).
	GapUnresolved GapReason = "unresolved"
)

// Event is what a subscription receives: a message, or a gap signal telling
// the subscriber that messages may have been lost at this point so it should
// re-sync its state.
type Event struct {
	// Channel the event belongs to.
	Channel string
	// Payload of a message; nil for a gap.
	Payload []byte
	// ID is the stream id of a message on a durable channel (0 otherwise,
	// and 0 for an Ephemeral message on a durable channel: keep the last
	// ID > 0 as the resume position). For a gap on a durable channel it is
	// the last id delivered before the gap, so the subscriber can catch up
	// with ReadStream(ID).
	ID int64
	// Gap is empty for a message and the reason for a gap.
	Gap GapReason
}

// IsGap reports whether the event is a gap signal rather than a message.
func (e Event) IsGap() bool { return e.Gap != "" }

// SubscribeOption adjusts Subscribe.
type SubscribeOption func(*Subscription)

// From resumes a durable stream after lastID: the subscription first
// receives every retained event with an id greater than lastID, then live
// events, with none missing and none repeated. After a reconnect it catches
// up the same way instead of reporting a gap. From(0) replays everything
// retained. A backlog longer than the subscription's buffer is cut at the
// buffer size and followed by a gap (GapOverflow) whose ID is the last id
// queued; read the rest with ReadStream. Subscribing with From to a channel
// without a stream fails with ErrNoStream. A lastID beyond the stream's
// newest id (one from a stream that was dropped and created again, or a
// forged one) is reported as a GapReset and the subscription replays the
// stream from its start; a durable subscription also gets a GapReset when
// the stream is dropped while it listens.
func From(lastID int64) SubscribeOption {
	return func(s *Subscription) {
		if lastID < 0 {
			lastID = 0
		}
		s.durable, s.lastID = true, lastID
	}
}

// WithBuffer sets this subscription's buffer size (in events) instead of
// Config.BufferSize; n <= 0 keeps the default.
func WithBuffer(n int) SubscribeOption {
	return func(s *Subscription) {
		if n > 0 {
			s.size = n
		}
	}
}

// WithPolicy sets this subscription's slow-consumer policy instead of
// Config.SlowPolicy.
func WithPolicy(p SlowPolicy) SubscribeOption {
	return func(s *Subscription) {
		if p == DropAndGap || p == Disconnect {
			s.policy = p
		}
	}
}

// Subscription receives the events of one channel. Read them with Next; a
// subscription must be closed when no longer needed.
type Subscription struct {
	b       *Broker
	channel string
	size    int
	policy  SlowPolicy

	// Loop-owned (touched only by the broker's goroutine once registered).
	active  bool
	durable bool
	lastID  int64
	ready   chan error // receives the activation result once

	mu     sync.Mutex
	queue  eventRing
	notify chan struct{}
	closed bool
	err    error
}

// Channel returns the subscribed channel.
func (s *Subscription) Channel() string { return s.channel }

// Next returns the next event, waiting until one arrives, ctx is done, or
// the subscription is closed (ErrClosed, or ErrSlowConsumer under the
// Disconnect policy; events buffered before closing are returned first).
func (s *Subscription) Next(ctx context.Context) (Event, error) {
	for {
		s.mu.Lock()
		if ev, ok := s.queue.pop(); ok {
			s.mu.Unlock()
			return ev, nil
		}
		if s.closed {
			err := s.err
			s.mu.Unlock()
			return Event{}, err
		}
		s.mu.Unlock()
		select {
		case <-s.notify:
		case <-ctx.Done():
			return Event{}, ctx.Err()
		}
	}
}

// Buffered reports how many events wait to be read.
func (s *Subscription) Buffered() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queue.n
}

// Close ends the subscription; when it was the channel's last subscriber,
// the listener UNLISTENs the channel. Close is idempotent.
func (s *Subscription) Close() {
	if s.finish(ErrClosed) {
		s.b.remove(s)
	}
}

// finish marks the subscription closed with err; it reports whether this
// call closed it.
func (s *Subscription) finish(err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.closed, s.err = true, err
	s.signal()
	return true
}

func (s *Subscription) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// deliver queues a message (called by the broker loop). It reports false if
// the subscription must be dropped under the Disconnect policy.
func (s *Subscription) deliver(ev Event) (delivered, keep bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, true
	}
	if s.queue.n >= s.size {
		s.b.stats.dropped.Add(1)
		if s.policy == Disconnect {
			s.closed, s.err = true, ErrSlowConsumer
			s.signal()
			return false, false
		}
		if last := s.queue.last(); last == nil || !last.IsGap() {
			s.queue.push(Event{Channel: s.channel, Gap: GapOverflow, ID: s.lastID})
			s.b.stats.gaps.Add(1)
		}
		return false, true
	}
	s.queue.push(ev)
	s.b.stats.delivered.Add(1) // before the reader can see the event
	s.signal()
	return true, true
}

// gap queues a gap signal even when the buffer is full (one extra slot),
// unless the last queued event already is one.
func (s *Subscription) gap(reason GapReason) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if last := s.queue.last(); last != nil && last.IsGap() {
		return
	}
	s.queue.push(Event{Channel: s.channel, Gap: reason, ID: s.lastID})
	s.b.stats.gaps.Add(1)
	s.signal()
}

// eventRing is a subscription's FIFO queue: a ring that grows by doubling
// as needed (the subscription bounds its length) and is released when it
// drains after a large burst, so a steady stream of events reuses the same
// slots instead of reallocating.
type eventRing struct {
	buf     []Event
	head, n int
}

func (r *eventRing) push(ev Event) {
	if r.n == len(r.buf) {
		grown := make([]Event, max(8, 2*len(r.buf)))
		k := copy(grown, r.buf[r.head:])
		copy(grown[k:], r.buf[:r.head])
		r.buf, r.head = grown, 0
	}
	r.buf[(r.head+r.n)%len(r.buf)] = ev
	r.n++
}

func (r *eventRing) pop() (Event, bool) {
	if r.n == 0 {
		return Event{}, false
	}
	ev := r.buf[r.head]
	r.buf[r.head] = Event{}
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	if r.n == 0 {
		r.head = 0
		if len(r.buf) > 4096 {
			r.buf = nil
		}
	}
	return ev, true
}

// last returns the most recently pushed event still queued, or nil.
func (r *eventRing) last() *Event {
	if r.n == 0 {
		return nil
	}
	return &r.buf[(r.head+r.n-1)%len(r.buf)]
}
