package realtime

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Stats are the broker's counters since New.
type Stats struct {
	// Delivered counts events queued to subscriptions (one per subscriber).
	Delivered int64
	// Dropped counts events not queued because a buffer was full.
	Dropped int64
	// Reconnects counts successful re-connections after a lost connection.
	Reconnects int64
	// Gaps counts gap signals queued to subscriptions.
	Gaps int64
	// Subscriptions is the number of open subscriptions that receive
	// messages (their channel is LISTENed); Subscribe has returned for them.
	Subscriptions int
	// Channels is the number of channels with at least one subscription.
	Channels int
	// Connected reports whether the listener connection is up.
	Connected bool
}

type counters struct {
	delivered, dropped, reconnects, gaps atomic.Int64
}

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	b.mu.Lock()
	n := 0
	for _, list := range b.subs {
		for _, s := range list {
			if s.active {
				n++
			}
		}
	}
	st := Stats{Subscriptions: n, Channels: len(b.subs), Connected: b.connected}
	b.mu.Unlock()
	st.Delivered = b.stats.delivered.Load()
	st.Dropped = b.stats.dropped.Load()
	st.Reconnects = b.stats.reconnects.Load()
	st.Gaps = b.stats.gaps.Load()
	return st
}

// Start starts the listener: one goroutine and one connection taken from
// the pool, held until Stop. The listener keeps running (reconnecting with
// backoff when the connection is lost) until Stop or until ctx is done.
func (b *Broker) Start(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running || b.done != nil {
		return errors.New("realtime: Start called twice")
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	b.running, b.cancel, b.done = true, cancel, make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-ctx.Done():
			cancel()
		case <-lctx.Done():
		}
	})
	// Stopping interrupts the listener's wait (see loop.wait).
	stopWake := context.AfterFunc(lctx, func() {
		b.mu.Lock()
		if b.wake != nil {
			b.wake()
		}
		b.mu.Unlock()
	})
	wg.Go(func() {
		defer stopWake()
		b.run(lctx)
	})
	if b.cfg.CleanupInterval > 0 {
		wg.Go(func() { b.cleanupLoop(lctx) })
	}
	go func() {
		wg.Wait()
		close(b.done)
	}()
	return nil
}

// Stop stops the listener, closes every subscription (Next returns
// ErrClosed) and returns the connection to the pool after UNLISTEN *. It
// waits for the listener goroutine until ctx is done.
func (b *Broker) Stop(ctx context.Context) error {
	b.mu.Lock()
	cancel, done := b.cancel, b.done
	b.running = false
	b.mu.Unlock()
	if done == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("realtime: stopping: %w", ctx.Err())
	}
}

// Subscribe subscribes to channel. It returns once the listener connection
// is LISTENing on it (and, with From, once the stream's backlog is queued),
// so any message published after Subscribe returns is delivered. While the
// listener is reconnecting Subscribe waits, up to ctx.
func (b *Broker) Subscribe(ctx context.Context, channel string, opts ...SubscribeOption) (*Subscription, error) {
	if err := ValidateChannel(channel); err != nil {
		return nil, err
	}
	s := &Subscription{
		b: b, channel: channel, size: b.cfg.BufferSize, policy: b.cfg.SlowPolicy,
		ready: make(chan error, 1), notify: make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(s)
	}
	b.mu.Lock()
	if !b.running {
		b.mu.Unlock()
		return nil, ErrNotRunning
	}
	b.subs[channel] = append(slices.Clip(b.subs[channel]), s)
	b.pending = append(b.pending, s)
	b.poke()
	b.mu.Unlock()
	select {
	case err := <-s.ready:
		if err != nil {
			s.finish(err)
			b.remove(s)
			return nil, err
		}
		return s, nil
	case <-ctx.Done():
		s.Close()
		return nil, ctx.Err()
	}
}

// poke tells the loop that subscriptions changed; b.mu must be held.
func (b *Broker) poke() {
	b.dirty = true
	if b.wake != nil {
		b.wake()
	}
}

// remove unregisters s.
func (b *Broker) remove(s *Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	list := b.subs[s.channel]
	i := slices.Index(list, s)
	if i < 0 {
		return
	}
	if len(list) == 1 {
		delete(b.subs, s.channel)
	} else {
		b.subs[s.channel] = slices.Delete(slices.Clone(list), i, i+1)
	}
	b.pending = slices.DeleteFunc(b.pending, func(p *Subscription) bool { return p == s })
	b.poke()
}

// loop state owned by the run goroutine.
type loop struct {
	b         *Broker
	conn      *pgxpool.Conn
	listening map[string]bool
	armed     time.Time   // when the idle read deadline was last set; zero: none
	wakeFn    func()      // sets an expired read deadline; one per connection
	woken     atomic.Bool // b.woken, readable without b.mu
	// idleTimeout is the session's idle_session_timeout, which connect
	// turned off, to restore on shutdown; "" when there was none.
	idleTimeout string
}

// sqlConnect checks a new listener connection and turns its session's
// idle_session_timeout (PostgreSQL 14+) off, returning the value it had. A
// listener is idle by design and, busy, only receives: the server would end
// it every idle_session_timeout, each time with a gap for every subscriber.
const sqlConnect = `SELECT v, CASE WHEN v <> '0' THEN pg_catalog.set_config('idle_session_timeout', '0', false) END
FROM (SELECT pg_catalog.current_setting('idle_session_timeout', true) AS v) s`

func (b *Broker) run(ctx context.Context) {
	l := &loop{b: b}
	defer l.shutdown()
	attempt := 0
	everConnected := false
	for ctx.Err() == nil {
		if l.conn == nil {
			if err := l.connect(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				attempt++
				d := b.backoff(attempt)
				b.cfg.Logger.Warn("realtime: listener connect failed", "attempt", attempt, "retry_in", d, "err", err)
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return
				}
				continue
			}
			attempt = 0
			if everConnected {
				b.stats.reconnects.Add(1)
				if err := l.afterReconnect(ctx); err != nil {
					l.broken(ctx, err)
					continue
				}
				b.cfg.Logger.Info("realtime: listener reconnected")
			}
			everConnected = true
			b.setConnected(true)
		}
		if err := l.sync(ctx); err != nil {
			l.broken(ctx, err)
			continue
		}
		if err := l.wait(ctx); err != nil {
			l.broken(ctx, err)
		}
	}
}

// backoff returns the delay before attempt n (1-based): exponential from
// MinBackoff, capped at MaxBackoff, with "equal jitter" (half fixed, half
// random) so that many processes do not reconnect in lockstep.
func (b *Broker) backoff(n int) time.Duration {
	d := b.cfg.MinBackoff
	for i := 1; i < n && d < b.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, b.cfg.MaxBackoff)
	half := d / 2
	return half + rand.N(half+1)
}

func (b *Broker) setConnected(v bool) {
	b.mu.Lock()
	b.connected = v
	b.mu.Unlock()
}

func (l *loop) connect(ctx context.Context) error {
	actx, cancel := context.WithTimeout(ctx, l.b.cfg.PingTimeout+l.b.cfg.MaxBackoff)
	defer cancel()
	c, err := l.b.pool.Acquire(actx)
	if err != nil {
		return err
	}
	var idle *string
	if err := c.QueryRow(actx, sqlConnect).Scan(&idle, nil); err != nil {
		_ = c.Conn().Close(ctx)
		c.Release()
		return err
	}
	l.idleTimeout = ""
	if idle != nil && *idle != "0" {
		l.idleTimeout = *idle
	}
	l.conn, l.listening, l.armed = c, map[string]bool{}, time.Time{}
	nc := c.Conn().PgConn().Conn()
	l.wakeFn = func() { // called with b.mu held
		l.b.woken = true
		l.woken.Store(true)
		_ = nc.SetReadDeadline(time.Unix(1, 0))
	}
	return nil
}

// clearDeadline removes the read deadline wait sets, before the connection
// runs a statement (which has its own context) or after a wake.
func (l *loop) clearDeadline() {
	if l.conn != nil {
		_ = l.conn.Conn().PgConn().Conn().SetReadDeadline(time.Time{})
	}
	l.armed = time.Time{}
}

// broken drops a failed connection; the loop reconnects.
func (l *loop) broken(ctx context.Context, err error) {
	if ctx.Err() != nil || l.conn == nil {
		return
	}
	l.b.cfg.Logger.Warn("realtime: listener connection lost", "err", err)
	l.b.mu.Lock()
	l.resetWait()
	l.b.mu.Unlock()
	l.b.setConnected(false)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	_ = l.conn.Conn().Close(cctx)
	cancel()
	l.conn.Release()
	l.conn, l.listening = nil, nil
}

// shutdown releases the connection and closes every subscription.
func (l *loop) shutdown() {
	b := l.b
	b.mu.Lock()
	l.resetWait()
	b.mu.Unlock()
	if l.conn != nil {
		l.clearDeadline()
		ctx, cancel := context.WithTimeout(context.Background(), b.cfg.PingTimeout)
		_, err := l.conn.Exec(ctx, "UNLISTEN *")
		if err == nil && l.idleTimeout != "" {
			_, err = l.conn.Exec(ctx, `SELECT pg_catalog.set_config('idle_session_timeout', $1, false)`, l.idleTimeout)
		}
		if err != nil {
			_ = l.conn.Conn().Close(ctx)
		}
		cancel()
		l.conn.Release()
		l.conn = nil
	}
	b.mu.Lock()
	b.running, b.connected = false, false
	var all []*Subscription
	for _, list := range b.subs {
		all = append(all, list...)
	}
	b.subs, b.pending = map[string][]*Subscription{}, nil
	b.mu.Unlock()
	for _, s := range all {
		s.finish(ErrClosed)
		select {
		case s.ready <- ErrNotRunning:
		default:
		}
	}
}

// afterReconnect re-LISTENs every channel, catches durable subscriptions up
// and tells the others that messages may have been lost.
func (l *loop) afterReconnect(ctx context.Context) error {
	b := l.b
	b.mu.Lock()
	var active []*Subscription
	for _, list := range b.subs {
		for _, s := range list {
			if s.active {
				active = append(active, s)
			}
		}
	}
	b.dirty = true
	b.mu.Unlock()
	if err := l.sync(ctx); err != nil {
		return err
	}
	for _, s := range active {
		if s.durable {
			if err := l.catchUp(ctx, s); err != nil {
				if isConnErr(err) {
					return err
				}
				s.gap(GapReconnect) // e.g. the stream was dropped meanwhile
			}
		} else {
			s.gap(GapReconnect)
		}
	}
	return nil
}

// sync makes the connection's LISTEN set match the subscriptions, in one
// round trip, then activates pending subscriptions.
func (l *loop) sync(ctx context.Context) error {
	b := l.b
	b.mu.Lock()
	if !b.dirty {
		b.mu.Unlock()
		return nil
	}
	b.dirty = false
	var stmts []string
	want := make(map[string]bool, len(b.subs))
	for ch := range b.subs {
		want[ch] = true
		if !l.listening[ch] {
			q, _ := quoteChannel(ch) // validated in Subscribe
			stmts = append(stmts, "LISTEN "+q)
		}
	}
	for ch := range l.listening {
		if !want[ch] {
			q, _ := quoteChannel(ch)
			stmts = append(stmts, "UNLISTEN "+q)
		}
	}
	pending := b.pending
	b.pending = nil
	b.mu.Unlock()

	if len(stmts) > 0 || len(pending) > 0 {
		l.clearDeadline()
	}
	if len(stmts) > 0 {
		// Simple protocol, several statements, one round trip.
		octx, cancel := context.WithTimeout(ctx, b.cfg.PingTimeout)
		_, err := l.conn.Conn().PgConn().Exec(octx, strings.Join(stmts, "; ")).ReadAll()
		cancel()
		if err != nil {
			b.requeue(pending)
			return fmt.Errorf("LISTEN/UNLISTEN: %w", err)
		}
	}
	l.listening = want
	if b.onSync != nil {
		b.onSync(maps.Clone(want))
	}
	for i, s := range pending {
		if s.durable {
			if err := l.catchUp(ctx, s); err != nil {
				if isConnErr(err) {
					b.requeue(pending[i:])
					return err
				}
				s.ready <- err
				continue
			}
		}
		b.mu.Lock()
		s.active = true // under b.mu for Stats; the loop reads it freely
		b.mu.Unlock()
		s.ready <- nil
	}
	return nil
}

func (b *Broker) requeue(ps []*Subscription) {
	b.mu.Lock()
	b.pending = append(ps, b.pending...)
	b.dirty = true
	b.mu.Unlock()
}

// isConnErr reports whether err means the connection is unusable (as
// opposed to a statement that failed on a healthy connection).
func isConnErr(err error) bool {
	if errors.Is(err, ErrNoStream) {
		return false
	}
	var pgErr *pgconn.PgError
	return !errors.As(err, &pgErr) || pgErr.Severity == "FATAL" || pgErr.Severity == "PANIC"
}

// catchUp queues the retained events of s's stream after s.lastID. At most
// the subscription's buffer size is read; beyond that the overflow policy
// applies (a gap carrying the last queued id).
func (l *loop) catchUp(ctx context.Context, s *Subscription) error {
	b := l.b
	l.clearDeadline()
	// Bounded, so a dead connection cannot stall the listener.
	ctx, cancel := context.WithTimeout(ctx, 4*b.cfg.PingTimeout)
	defer cancel()
	var newest int64
	var first *int64
	if err := l.conn.QueryRow(ctx, `SELECT last_id, (SELECT min(id) FROM `+b.qEvents+` WHERE channel = $1 AND id > $2)
		FROM `+b.qStreams+` WHERE channel = $1`, s.channel, s.lastID).Scan(&newest, &first); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %q", ErrNoStream, s.channel)
		}
		return err
	}
	switch {
	case s.lastID > newest:
		// Ids the stream never reached: it was dropped and created again
		// (or the id was made up). Every retained event is news.
		s.lastID = 0
		s.gap(GapReset)
	case first == nil:
		return nil
	case s.lastID > 0 && *first > s.lastID+1:
		s.lastID = *first - 1
		s.gap(GapTrimmed)
	}
	rows, err := l.conn.Query(ctx, `SELECT id, payload FROM `+b.qEvents+`
		WHERE channel = $1 AND id > $2 ORDER BY id LIMIT $3`, s.channel, s.lastID, s.size+1)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var ev Event
		ev.Channel = s.channel
		if err := rows.Scan(&ev.ID, &ev.Payload); err != nil {
			return err
		}
		l.push(s, ev)
	}
	return rows.Err()
}

// push hands ev to s, applying de-duplication for durable streams.
func (l *loop) push(s *Subscription, ev Event) {
	b := l.b
	if ev.ID > 0 && s.durable {
		if ev.ID <= s.lastID {
			return
		}
	}
	ok, keep := s.deliver(ev)
	if ok && ev.ID > 0 {
		s.lastID = ev.ID
	}
	if !keep {
		b.remove(s)
	}
}

// wait waits for notifications (or a change of subscriptions, or the idle
// ping interval) and dispatches them, until a change of subscriptions, Stop,
// an idle ping or a statement on the connection sends it back to run.
//
// The wait itself runs without a cancellable context: pgx registers and
// removes a context callback on every call otherwise, which cost more than
// the rest of a notification's handling. Instead the connection carries a
// read deadline: PingInterval ahead (re-armed at most every PingInterval/2
// while busy, so a ping follows PingInterval/2 to PingInterval of silence),
// and set to the past by b.wake to interrupt the wait for a change of
// subscriptions or Stop. pgx keeps the connection and any partly read
// message on a read timeout. b.wake stays installed while notifications
// keep coming, so a busy listener takes no lock per notification beyond
// the one that finds the channel's subscribers.
func (l *loop) wait(ctx context.Context) error {
	b := l.b
	b.mu.Lock()
	if b.dirty || ctx.Err() != nil {
		b.mu.Unlock()
		return nil
	}
	b.wake, b.woken = l.wakeFn, false
	l.woken.Store(false)
	b.mu.Unlock()
	// unwait uninstalls the wake and reports whether it was called.
	unwait := func() bool {
		b.mu.Lock()
		b.wake = nil
		woken := b.woken
		b.mu.Unlock()
		if woken {
			l.clearDeadline()
		}
		return woken
	}
	for {
		if now := time.Now(); l.armed.IsZero() || now.Sub(l.armed) > b.cfg.PingInterval/2 {
			b.mu.Lock() // a wake must not be overwritten
			if !b.woken {
				l.armed = now
				_ = l.conn.Conn().PgConn().Conn().SetReadDeadline(now.Add(b.cfg.PingInterval))
			}
			b.mu.Unlock()
		}
		n, err := l.conn.Conn().WaitForNotification(context.Background())
		if err == nil && n != nil && !needsQuery(n.Payload) && !l.wokenNow() {
			// The common case: dispatch and keep waiting.
			if derr := l.dispatch(ctx, n); derr != nil {
				unwait()
				return derr
			}
			continue
		}
		woken := unwait()
		if n != nil {
			// Resolving a stored payload runs a statement on the
			// connection, so the wake is uninstalled first.
			if derr := l.dispatch(ctx, n); derr != nil {
				return derr
			}
		}
		if err == nil || ctx.Err() != nil {
			return nil
		}
		if l.conn.Conn().IsClosed() {
			return err
		}
		if woken {
			return nil
		}
		if pgconn.Timeout(err) || errors.Is(err, os.ErrDeadlineExceeded) {
			l.clearDeadline()
			pctx, pcancel := context.WithTimeout(ctx, b.cfg.PingTimeout)
			defer pcancel()
			if perr := l.conn.Ping(pctx); perr != nil {
				return fmt.Errorf("ping: %w", perr)
			}
			return nil
		}
		return err
	}
}

// wokenNow reports whether b.wake was called during the current wait.
func (l *loop) wokenNow() bool {
	return l.woken.Load()
}

// needsQuery reports whether a notification refers to a payload stored in
// a table (a large message or stream event), which dispatch loads with a
// statement on the listener connection.
func needsQuery(p string) bool {
	kind, _, _ := parseEnvelope(p)
	return kind == envStored || kind == envBigEvent
}

// resetWait forgets the current wait; b.mu must be held.
func (l *loop) resetWait() {
	l.b.wake = nil
}

// dispatch decodes a notification and queues it to the channel's active
// subscriptions.
func (l *loop) dispatch(ctx context.Context, n *pgconn.Notification) error {
	b := l.b
	b.mu.Lock()
	subs := b.subs[n.Channel]
	b.mu.Unlock()
	if len(subs) == 0 {
		return nil
	}
	kind, id, body := parseEnvelope(n.Payload)
	if kind == envReset {
		for _, s := range subs {
			if s.active && s.durable && s.lastID > 0 {
				s.lastID = 0
				s.gap(GapReset)
			}
		}
		return nil
	}
	ev, err := l.decode(ctx, n.Channel, kind, id, body)
	if err != nil {
		if isConnErr(err) {
			return err
		}
		b.cfg.Logger.Warn("realtime: resolving a notification", "channel", n.Channel, "err", err)
		for _, s := range subs {
			if s.active {
				s.gap(GapUnresolved)
			}
		}
		return nil
	}
	for _, s := range subs {
		if s.active {
			l.push(s, ev)
		}
	}
	return nil
}

var errUnresolved = &pgconn.PgError{Severity: "ERROR", Message: "realtime: stored payload not found"}

// envelope kinds written by realtime_publish (see the migration).
const (
	envPlain     = 0   // not an envelope: the payload as sent
	envEscaped   = 'P' // payload that itself starts with 0x1e
	envStored    = 'R' // large payload in realtime_payloads
	envEvent     = 'e' // stream event with inline payload
	envBigEvent  = 'E' // stream event stored only in realtime_events
	envReset     = 'X' // the channel's stream was dropped (sent by DropStream)
	envSeparator = 0x1e
)

// parseEnvelope splits a notification payload into its kind, id and body.
// Anything that is not a well-formed envelope is a plain payload, so
// notifications from other clients pass through unchanged.
func parseEnvelope(p string) (kind byte, id int64, body string) {
	if len(p) < 2 || p[0] != envSeparator {
		return envPlain, 0, p
	}
	rest := p[2:]
	switch p[1] {
	case envEscaped:
		return envEscaped, 0, rest
	case envReset:
		if rest == "" {
			return envReset, 0, ""
		}
	case envEvent:
		idStr, payload, ok := strings.Cut(rest, ":")
		n, err := strconv.ParseInt(idStr, 10, 64)
		if ok && err == nil && n > 0 {
			return envEvent, n, payload
		}
	case envStored, envBigEvent:
		n, err := strconv.ParseInt(rest, 10, 64)
		if err == nil && n > 0 {
			return p[1], n, ""
		}
	}
	return envPlain, 0, p
}

// decode builds the event of a parsed envelope (parseEnvelope), loading
// stored payloads on the listener connection.
func (l *loop) decode(ctx context.Context, channel string, kind byte, id int64, body string) (Event, error) {
	ev := Event{Channel: channel}
	var q string
	switch kind {
	case envPlain, envEscaped:
		ev.Payload = []byte(body)
		return ev, nil
	case envEvent:
		ev.ID, ev.Payload = id, []byte(body)
		return ev, nil
	case envBigEvent:
		ev.ID = id
		q = `SELECT payload FROM ` + l.b.qEvents + ` WHERE channel = $1 AND id = $2`
	default: // envStored
		q = `SELECT payload FROM ` + l.b.qPayloads + ` WHERE channel = $1 AND id = $2`
	}
	l.clearDeadline()
	qctx, cancel := context.WithTimeout(ctx, l.b.cfg.PingTimeout)
	defer cancel()
	if err := l.conn.QueryRow(qctx, q, channel, id).Scan(&ev.Payload); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return ev, errUnresolved
		}
		return ev, err
	}
	return ev, nil
}
