package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Identity is what BridgeConfig.Authorize decides about a request.
type Identity struct {
	// ID names the client in logs (e.g. the user id).
	ID string
	// Channels the client receives from the moment it connects, such as
	// its own "user:42" channel. They cannot be left.
	Channels []string
	// CanJoin reports whether the client may join the room channel. It is
	// called for every join; nil allows no joins.
	CanJoin func(channel string) bool
}

// ErrForbidden may be returned (wrapped) by Authorize to answer 403
// instead of 401.
var ErrForbidden = errors.New("realtime: forbidden")

// BridgeConfig configures a Bridge.
type BridgeConfig struct {
	// Authorize maps a request to an identity (required). An error refuses
	// the connection with 401, or 403 when it wraps ErrForbidden.
	Authorize func(r *http.Request) (Identity, error)
	// MaxRooms limits the rooms a client may have joined at once (not
	// counting Identity.Channels) and the length of one join list; 0 means 32.
	MaxRooms int
	// QueueSize bounds the events waiting to be written to one client; a
	// client that lets it fill up is closed with a policy-violation status
	// (WebSocket 1008) or, for SSE, disconnected. 0 means 256.
	QueueSize int
	// WriteTimeout bounds each write to a client, and the wait for the
	// answer to a keepalive ping; a client that does not take a write (or
	// answer) in time is closed. A client closed for another reason (slow
	// consumer, shutdown) while a write to it is in progress gives that
	// write at most 250ms more before the socket is closed under it.
	// 0 means 10s.
	WriteTimeout time.Duration
	// PingInterval is the keepalive period (WebSocket ping, SSE comment);
	// 0 means 25s.
	PingInterval time.Duration
	// ReadLimit is the largest client message in bytes; bigger ones close
	// the socket (1009). 0 means 4096.
	ReadLimit int64
	// OriginPatterns are the cross-origin hosts allowed to open WebSockets
	// (see websocket.AcceptOptions); same-origin is always allowed.
	OriginPatterns []string
	// Logger receives connection problems; nil discards them.
	Logger *slog.Logger
}

// Bridge serves browsers over WebSocket (ServeHTTP) and Server-Sent Events
// (SSE), relaying the broker's messages to the channels each client may see.
//
// The WebSocket protocol is JSON text messages. A client sends
//
//	{"type": "join", "channel": "room:1"}                    join a room
//	{"type": "join", "channel": "room:1", "since": 41}      resume a durable room after id 41
//	{"type": "join", "channels": ["room:1", "room:2"]}      join several
//	{"type": "leave", "channel": "room:1"}
//
// and receives
//
//	{"type": "message", "channel": "room:1", "id": 42, "data": <payload>}
//	{"type": "gap", "channel": "room:1", "reason": "reconnect", "id": 41}
//	{"type": "joined", "channel": "room:1"}  /  {"type": "left", ...}
//	{"type": "error", "channel": "room:1", "error": "not allowed"}
//
// data is the payload itself when it is valid JSON, otherwise a JSON
// string; id is present for durable channels. Events of one channel arrive
// in publish order; events of different channels are relayed independently
// and may interleave differently. Identity channels are subscribed before
// the upgrade completes, so nothing published once the client has
// connected is missed. They may be
// resumed with the query parameter resume=<channel>:<id> (repeatable).
// Malformed JSON closes the socket with 1008 (policy violation); unknown,
// invalid or unauthorized joins get an error message.
type Bridge struct {
	b       *Broker
	cfg     BridgeConfig
	clients atomic.Int64

	// Shared rooms: every client of this process that joins a channel
	// without resuming shares one broker subscription and one relay
	// goroutine, which encodes each event once and hands the bytes to every
	// member's queue without blocking.
	roomsMu sync.Mutex
	rooms   map[string]*room

	// The last encoding per channel for clients that resume a durable
	// channel on their own subscription: the sockets of a room all receive
	// the same event (sharing its payload), so it is encoded once.
	encMu sync.Mutex
	enc   map[string]encoded
}

// room is one channel relayed to the members that joined it.
type room struct {
	channel string
	ready   chan struct{} // closed once sub (or err) is set
	sub     *Subscription
	err     error
	members []*client // copy-on-write, under Bridge.roomsMu
	done    chan struct{}
	// relaying is held while one event is handed to the members, so that
	// a member that left receives nothing once leaveRoom returns.
	relaying sync.Mutex
}

// joinRoom adds c to the shared room of ch, subscribing when c is its first
// member. It returns once the room receives messages.
//
// joined, when not nil, is called just before c can receive the room's
// events, so that a reply it queues precedes them.
func (br *Bridge) joinRoom(ctx context.Context, ch string, c *client, joined func()) (*room, error) {
	for {
		br.roomsMu.Lock()
		r, ok := br.rooms[ch]
		if !ok {
			r = &room{channel: ch, ready: make(chan struct{}), done: make(chan struct{})}
			if br.rooms == nil {
				br.rooms = map[string]*room{}
			}
			br.rooms[ch] = r
			r.members = []*client{c}
			br.roomsMu.Unlock()
			sub, err := br.b.Subscribe(ctx, ch, WithBuffer(max(br.cfg.QueueSize, 1024)), WithPolicy(DropAndGap))
			br.roomsMu.Lock()
			r.sub, r.err = sub, err
			if err != nil {
				delete(br.rooms, ch)
			}
			close(r.ready)
			br.roomsMu.Unlock()
			if err != nil {
				return nil, err
			}
			if joined != nil {
				joined()
			}
			go br.relay(r)
			return r, nil
		}
		br.roomsMu.Unlock()
		select {
		case <-r.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		br.roomsMu.Lock()
		if r.err != nil || br.rooms[ch] != r { // failed or emptied meanwhile: retry
			br.roomsMu.Unlock()
			continue
		}
		if joined != nil {
			joined()
		}
		r.members = append(slices.Clip(r.members), c)
		br.roomsMu.Unlock()
		return r, nil
	}
}

// leaveRoom removes c from r; the last member closes the subscription.
func (br *Bridge) leaveRoom(r *room, c *client) {
	br.roomsMu.Lock()
	i := slices.Index(r.members, c)
	if i < 0 {
		br.roomsMu.Unlock()
		return
	}
	r.members = slices.Delete(slices.Clone(r.members), i, i+1)
	last := len(r.members) == 0
	if last && br.rooms[r.channel] == r {
		delete(br.rooms, r.channel)
	}
	br.roomsMu.Unlock()
	if last {
		r.sub.Close()
		<-r.done
		return
	}
	// Wait for an event being relayed to the old member list.
	r.relaying.Lock()
	//lint:ignore SA2001 the empty critical section is the point: a barrier
	r.relaying.Unlock()
}

// Broadcast sends payload to the clients of this bridge that receive
// channel (room members and identity channels), without going through
// PostgreSQL: other processes do not see it and no stream logs it. It
// returns how many clients it was queued to. Clients that resumed a
// durable channel with an id read it on a subscription of their own and do
// not receive broadcasts.
func (br *Bridge) Broadcast(channel string, payload []byte) (int, error) {
	if err := ValidateChannel(channel); err != nil {
		return 0, err
	}
	br.roomsMu.Lock()
	r := br.rooms[channel]
	br.roomsMu.Unlock()
	if r == nil {
		return 0, nil
	}
	ev := Event{Channel: channel, Payload: payload}
	data, _ := json.Marshal(encodeEvent(ev))
	ev.Payload = nil
	f := &frame{ev: ev, data: data}
	r.relaying.Lock() // in order with the relayed events
	defer r.relaying.Unlock()
	br.roomsMu.Lock()
	members := r.members
	br.roomsMu.Unlock()
	n := 0
	for _, c := range members {
		if c.send(f) {
			n++
		}
	}
	return n, nil
}

// relay hands r's events to its members until the subscription ends.
func (br *Bridge) relay(r *room) {
	defer close(r.done)
	for {
		ev, err := r.sub.Next(context.Background())
		if err != nil {
			br.roomsMu.Lock()
			members := r.members
			if br.rooms[r.channel] == r {
				delete(br.rooms, r.channel)
			}
			br.roomsMu.Unlock()
			for _, c := range members { // the broker stopped
				c.fail(websocket.StatusGoingAway, "server shutting down")
			}
			return
		}
		b, _ := json.Marshal(encodeEvent(ev))
		ev.Payload = nil // members use data; SSE reads only the event's metadata
		// One frame, shared (read-only) by every member's queue.
		f := &frame{ev: ev, data: b}
		r.relaying.Lock()
		br.roomsMu.Lock()
		members := r.members
		br.roomsMu.Unlock()
		for _, c := range members {
			c.send(f)
		}
		r.relaying.Unlock()
	}
}

type encoded struct {
	payload *byte
	id      int64
	gap     GapReason
	bytes   []byte
}

// encode returns the JSON of ev, reusing the previous encoding when ev is
// the same delivery (same payload backing array) on the same channel.
func (br *Bridge) encode(ev Event) []byte {
	if len(ev.Payload) == 0 {
		b, _ := json.Marshal(encodeEvent(ev))
		return b
	}
	key := &ev.Payload[0]
	br.encMu.Lock()
	e, ok := br.enc[ev.Channel]
	br.encMu.Unlock()
	if ok && e.payload == key && e.id == ev.ID && e.gap == ev.Gap {
		return e.bytes
	}
	b, _ := json.Marshal(encodeEvent(ev))
	br.encMu.Lock()
	if br.enc == nil || len(br.enc) > 4096 {
		br.enc = map[string]encoded{}
	}
	br.enc[ev.Channel] = encoded{payload: key, id: ev.ID, gap: ev.Gap, bytes: b}
	br.encMu.Unlock()
	return b
}

// NewBridge returns a bridge relaying b's messages. b must be started before
// clients connect.
func NewBridge(b *Broker, cfg BridgeConfig) (*Bridge, error) {
	if b == nil {
		return nil, errors.New("realtime: NewBridge needs a broker")
	}
	if cfg.Authorize == nil {
		return nil, errors.New("realtime: BridgeConfig.Authorize is required")
	}
	if cfg.MaxRooms < 0 || cfg.QueueSize < 0 || cfg.WriteTimeout < 0 || cfg.PingInterval < 0 || cfg.ReadLimit < 0 {
		return nil, errors.New("realtime: BridgeConfig values must not be negative")
	}
	if cfg.MaxRooms == 0 {
		cfg.MaxRooms = 32
	}
	if cfg.QueueSize == 0 {
		cfg.QueueSize = 256
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.PingInterval == 0 {
		cfg.PingInterval = 25 * time.Second
	}
	if cfg.ReadLimit == 0 {
		cfg.ReadLimit = 4096
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Bridge{b: b, cfg: cfg}, nil
}

// Clients reports how many WebSocket and SSE clients are connected.
func (br *Bridge) Clients() int { return int(br.clients.Load()) }

// frame is one item of a client's queue: an event or a control reply. The
// queues hold pointers, and a room's event is one frame shared by all its
// members: a queue slot is then one word, so the queues of thousands of
// clients stay small for the garbage collector to scan.
type frame struct {
	ev   Event
	data []byte // ev already encoded (shared by the members of a room)
	ctl  *wireOut
}

// wakeFrame is queued (never written) to wake a WebSocket writer whose
// client failed while it waited for its queue.
var wakeFrame = &frame{}

type wireOut struct {
	Type    string          `json:"type"`
	Channel string          `json:"channel,omitempty"`
	ID      int64           `json:"id,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
	Reason  string          `json:"reason,omitempty"`
	Error   string          `json:"error,omitempty"`
}

type wireIn struct {
	Type     string   `json:"type"`
	Channel  string   `json:"channel"`
	Channels []string `json:"channels"`
	Since    *int64   `json:"since"`
}

func encodeEvent(ev Event) wireOut {
	if ev.IsGap() {
		return wireOut{Type: "gap", Channel: ev.Channel, ID: ev.ID, Reason: string(ev.Gap)}
	}
	w := wireOut{Type: "message", Channel: ev.Channel, ID: ev.ID}
	if len(ev.Payload) > 0 && json.Valid(ev.Payload) {
		w.Data = ev.Payload
	} else {
		w.Data, _ = json.Marshal(string(ev.Payload))
	}
	return w
}

// client is one connected browser (WebSocket or SSE).
type client struct {
	br     *Bridge
	id     Identity
	queue  chan *frame
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	subs   map[string]membership
	fixed  map[string]bool // identity channels
	closed bool
	code   websocket.StatusCode
	reason string
}

func (br *Bridge) newClient(ctx context.Context, id Identity) *client {
	c := &client{br: br, id: id, queue: make(chan *frame, br.cfg.QueueSize),
		subs: map[string]membership{}, fixed: map[string]bool{}}
	c.ctx, c.cancel = context.WithCancel(ctx)
	return c
}

// membership is how a client receives a channel: through the shared room,
// or, when it resumes a durable stream, on a subscription of its own.
type membership struct {
	room *room
	sub  *Subscription
}

func (c *client) drop(m membership) {
	if m.room != nil {
		c.br.leaveRoom(m.room, c)
	} else {
		m.sub.Close()
	}
}

// fail ends the client with a close status (the first reason wins).
func (c *client) fail(code websocket.StatusCode, reason string) {
	c.mu.Lock()
	if c.code == 0 {
		c.code, c.reason = code, reason
	}
	c.mu.Unlock()
	c.cancel()
}

// send queues a frame without blocking; a full queue ends the client.
func (c *client) send(f *frame) bool {
	select {
	case c.queue <- f:
		return true
	default:
		c.br.b.stats.dropped.Add(1)
		c.fail(websocket.StatusPolicyViolation, "slow consumer")
		return false
	}
}

func (c *client) reply(w wireOut) { c.send(&frame{ctl: &w}) }

// join subscribes the client to channel and starts relaying it.
//
// joined, when not nil, is called once the subscription is ready and before
// any of its events can reach the client's queue (for the "joined" reply).
func (c *client) join(ch string, since *int64, fixed bool, joined func()) error {
	if err := ValidateChannel(ch); err != nil {
		return err
	}
	c.mu.Lock()
	if _, ok := c.subs[ch]; ok {
		c.mu.Unlock()
		return nil
	}
	if !fixed && len(c.subs)-len(c.fixed) >= c.br.cfg.MaxRooms {
		c.mu.Unlock()
		return fmt.Errorf("realtime: room limit of %d reached", c.br.cfg.MaxRooms)
	}
	c.mu.Unlock()
	var m membership
	if since == nil {
		r, err := c.br.joinRoom(c.ctx, ch, c, joined)
		if err != nil {
			return err
		}
		m.room = r
	} else {
		s, err := c.br.b.Subscribe(c.ctx, ch, WithBuffer(c.br.cfg.QueueSize), WithPolicy(Disconnect), From(*since))
		if err != nil {
			return err
		}
		m.sub = s
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.drop(m)
		return ErrClosed
	}
	if _, dup := c.subs[ch]; dup { // joined concurrently
		c.mu.Unlock()
		c.drop(m) // for a room: removes this second membership only
		return nil
	}
	c.subs[ch] = m
	if fixed {
		c.fixed[ch] = true
	}
	c.mu.Unlock()
	if m.sub != nil {
		if joined != nil {
			joined()
		}
		c.wg.Go(func() { c.pump(m.sub) })
	}
	return nil
}

func (c *client) leave(ch string) bool {
	c.mu.Lock()
	m, ok := c.subs[ch]
	if !ok || c.fixed[ch] {
		c.mu.Unlock()
		return false
	}
	delete(c.subs, ch)
	c.mu.Unlock()
	c.drop(m)
	return true
}

// pump moves one subscription's events into the client's queue.
func (c *client) pump(s *Subscription) {
	for {
		ev, err := s.Next(c.ctx)
		if err != nil {
			c.mu.Lock()
			current := c.subs[s.channel].sub == s
			c.mu.Unlock()
			switch {
			case c.ctx.Err() != nil, !current: // client gone or room left
			case errors.Is(err, ErrSlowConsumer):
				c.fail(websocket.StatusPolicyViolation, "slow consumer")
			default: // the broker stopped
				c.fail(websocket.StatusGoingAway, "server shutting down")
			}
			return
		}
		if !c.send(&frame{ev: ev}) {
			return
		}
	}
}

// finish closes every subscription and waits for the pumps.
func (c *client) finish() {
	c.cancel()
	c.mu.Lock()
	c.closed = true
	subs := c.subs
	c.subs = map[string]membership{}
	c.mu.Unlock()
	for _, m := range subs {
		c.drop(m)
	}
	c.wg.Wait()
}

// start authorizes the request and subscribes the identity channels.
func (br *Bridge) start(w http.ResponseWriter, r *http.Request) (Identity, map[string]int64, bool) {
	id, err := br.cfg.Authorize(r)
	if err != nil {
		code := http.StatusUnauthorized
		if errors.Is(err, ErrForbidden) {
			code = http.StatusForbidden
		}
		http.Error(w, http.StatusText(code), code)
		return id, nil, false
	}
	for _, ch := range id.Channels {
		if err := ValidateChannel(ch); err != nil {
			br.cfg.Logger.Error("realtime: Authorize returned an invalid channel", "client", id.ID, "err", err)
			http.Error(w, "invalid identity channel", http.StatusInternalServerError)
			return id, nil, false
		}
	}
	resume, err := parseResume(r.URL.Query()["resume"])
	if err != nil {
		http.Error(w, "resume must be <channel>:<id>", http.StatusBadRequest)
		return id, nil, false
	}
	return id, resume, true
}

// parseResume reads resume=<channel>:<id> values (the channel may itself
// contain colons; the id follows the last one).
func parseResume(vals []string) (map[string]int64, error) {
	resume := map[string]int64{}
	for _, v := range vals {
		i := strings.LastIndexByte(v, ':')
		if i <= 0 {
			return nil, fmt.Errorf("realtime: resume %q has no <channel>:<id> form", v)
		}
		n, err := strconv.ParseInt(v[i+1:], 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("realtime: resume %q has a bad id", v)
		}
		if err := ValidateChannel(v[:i]); err != nil {
			return nil, err
		}
		resume[v[:i]] = n
	}
	return resume, nil
}

func sincePtr(m map[string]int64, ch string) *int64 {
	if v, ok := m[ch]; ok {
		return &v
	}
	return nil
}

// ServeHTTP upgrades the request to a WebSocket and serves the client until
// it leaves, is too slow, or the broker stops.
func (br *Bridge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id, resume, ok := br.start(w, r)
	if !ok {
		return
	}
	c := br.newClient(context.WithoutCancel(r.Context()), id)
	// Identity channels are joined before the upgrade completes, so that
	// anything published once the client's Dial has returned reaches it.
	// A failure is still reported as a close status, which browsers expose
	// (an HTTP error before the upgrade would reach scripts as a bare
	// "error" event).
	// (Not for a request that is no upgrade at all: Accept refuses it.)
	var joinErr error
	if upgradeRequested(r) {
		for _, ch := range id.Channels {
			if joinErr = c.join(ch, sincePtr(resume, ch), true, nil); joinErr != nil {
				break
			}
		}
	}
	// Compression stays off: room events are encoded once and written as
	// is to every socket; per-socket deflate would cost more than it saves
	// on small messages.
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		OriginPatterns:  br.cfg.OriginPatterns,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		c.finish()
		return // Accept wrote the HTTP error
	}
	conn.SetReadLimit(br.cfg.ReadLimit)
	br.clients.Add(1)
	defer br.clients.Add(-1)
	if joinErr != nil {
		c.finish()
		code, reason := websocket.StatusInternalError, "subscribe failed"
		if errors.Is(joinErr, ErrNotRunning) {
			code, reason = websocket.StatusTryAgainLater, "server not ready"
		} else if errors.Is(joinErr, ErrNoStream) {
			code, reason = websocket.StatusPolicyViolation, "resume on a channel without a stream"
		}
		_ = conn.Close(code, reason)
		return
	}

	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		c.readLoop(conn)
	}()
	pingDone := make(chan struct{})
	go func() {
		defer close(pingDone)
		c.pingLoop(conn)
	}()
	c.writeLoop(conn)
	c.finish()
	c.mu.Lock()
	code, reason := c.code, c.reason
	c.mu.Unlock()
	if code == 0 {
		code = websocket.StatusNormalClosure
	}
	br.cfg.Logger.Debug("realtime: websocket closing", "client", id.ID, "code", code, "reason", reason)
	_ = conn.Close(code, reason)
	<-readerDone
	<-pingDone // a ping waiting for its pong ends with the connection
}

// upgradeRequested reports whether r asks for a WebSocket upgrade.
func upgradeRequested(r *http.Request) bool {
	for _, v := range r.Header.Values("Upgrade") {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "websocket") {
				return true
			}
		}
	}
	return false
}

func (c *client) readLoop(conn *websocket.Conn) {
	for {
		// Not c.ctx: cancelling a Read closes the socket at once, before the
		// writer can send its close status. Close ends this Read instead.
		typ, data, err := conn.Read(context.Background())
		if err != nil {
			if s := websocket.CloseStatus(err); s == websocket.StatusMessageTooBig {
				c.fail(websocket.StatusMessageTooBig, "message too big")
			}
			c.cancel()
			return
		}
		var in wireIn
		if typ != websocket.MessageText || json.Unmarshal(data, &in) != nil {
			c.fail(websocket.StatusPolicyViolation, "malformed message: expected a JSON object")
			return
		}
		switch in.Type {
		case "join":
			chans := in.Channels
			if in.Channel != "" {
				chans = append([]string{in.Channel}, chans...)
			}
			if len(chans) == 0 || len(chans) > c.br.cfg.MaxRooms {
				c.reply(wireOut{Type: "error", Error: fmt.Sprintf("join needs 1 to %d channels", c.br.cfg.MaxRooms)})
				continue
			}
			for _, ch := range chans {
				c.handleJoin(ch, in.Since)
			}
		case "leave":
			if c.leave(in.Channel) {
				c.reply(wireOut{Type: "left", Channel: in.Channel})
			} else {
				c.reply(wireOut{Type: "error", Channel: in.Channel, Error: "not joined"})
			}
		default:
			c.reply(wireOut{Type: "error", Error: fmt.Sprintf("unknown message type %q", in.Type)})
		}
	}
}

func (c *client) handleJoin(ch string, since *int64) {
	if err := ValidateChannel(ch); err != nil {
		c.reply(wireOut{Type: "error", Channel: ch, Error: "invalid channel name"})
		return
	}
	if c.id.CanJoin == nil || !c.id.CanJoin(ch) {
		c.reply(wireOut{Type: "error", Channel: ch, Error: "not allowed"})
		return
	}
	replied := false
	joined := func() {
		replied = true
		c.reply(wireOut{Type: "joined", Channel: ch})
	}
	if err := c.join(ch, since, false, joined); err != nil {
		msg := "join failed"
		switch {
		case errors.Is(err, ErrNoStream):
			msg = "channel has no stream to resume"
		case strings.Contains(err.Error(), "room limit"):
			msg = err.Error()
		}
		c.reply(wireOut{Type: "error", Channel: ch, Error: msg})
		return
	}
	if !replied { // already joined
		c.reply(wireOut{Type: "joined", Channel: ch})
	}
}

// writeLoop writes the client's queue to the socket until the client ends.
//
// The hot path is one channel receive and one socket write per frame, with
// no timer work: writes run without a context (the websocket package would
// register and remove a callback on a cancellable one for every write), the
// write timeout is enforced by a watchdog (see watchWrites) that reads the
// start time of the write in progress, and keepalive pings run on their own
// goroutine (pingLoop). Frames already queued are written one after the
// other without parking in between.
func (c *client) writeLoop(conn *websocket.Conn) {
	done := c.ctx.Done()
	var w writeWatch
	w.start(c.br.cfg.WriteTimeout, func() {
		c.fail(websocket.StatusPolicyViolation, "write timeout")
		_ = conn.CloseNow()
	})
	defer w.stop()
	// When the client fails for another reason (slow consumer, shutdown):
	// a writer waiting for its queue is woken with the wake frame (if the
	// queue is full instead, the writer is not waiting and checks done
	// before its next write), and a write in progress gets abortGrace to
	// finish before the watchdog closes the socket under it. (The write
	// may already be complete, its writer not yet back from the system
	// call: closing at once would lose the close status.)
	stopAbort := context.AfterFunc(c.ctx, func() {
		select {
		case c.queue <- wakeFrame:
		default:
		}
		w.shorten(min(abortGrace, c.br.cfg.WriteTimeout))
	})
	defer stopAbort()
	for {
		// One channel to wait on (no select over several): the queue.
		f := <-c.queue
		for f != nil {
			if f == wakeFrame {
				return
			}
			b := f.data
			switch {
			case f.ctl != nil:
				b, _ = json.Marshal(f.ctl)
			case b == nil:
				b = c.br.encode(f.ev)
			}
			w.started.Store(monoNow())
			select {
			case <-done: // failed meanwhile: the abort may have missed this write
				w.started.Store(0)
				return
			default:
			}
			err := conn.Write(context.Background(), websocket.MessageText, b)
			w.started.Store(0)
			if err != nil {
				c.fail(websocket.StatusPolicyViolation, "write timeout")
				return
			}
			select {
			case f = <-c.queue:
			default:
				f = nil
			}
		}
	}
}

// abortGrace is how long a write in progress may still take once its
// client failed for another reason than the write itself.
const abortGrace = 250 * time.Millisecond

// monoBase anchors monoNow.
var monoBase = time.Now()

// monoNow is a monotonic clock reading in nanoseconds, never 0.
func monoNow() int64 { return int64(time.Since(monoBase)) + 1 }

// writeWatch enforces BridgeConfig.WriteTimeout for one socket with a single
// timer that is not touched by the writes: the writer publishes the start
// time of the write in progress (0 when idle), and the timer, when it fires,
// closes the socket if that write is older than the timeout, or re-arms for
// the moment it would be (a full timeout ahead when idle). A write that
// blocks is thus closed WriteTimeout after it started, as with a timer armed
// per write.
type writeWatch struct {
	started atomic.Int64 // monoNow() at the start of the write in progress, or 0

	mu      sync.Mutex
	t       *time.Timer
	timeout time.Duration
	stopped bool
}

// start arms the watchdog: onTimeout runs (once) when a write has been in
// progress for timeout.
func (w *writeWatch) start(timeout time.Duration, onTimeout func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timeout = timeout
	w.t = time.AfterFunc(timeout, func() {
		if w.expired() {
			onTimeout()
		}
	})
}

// shorten lowers the timeout (for the write in progress and any later one)
// and checks at once.
func (w *writeWatch) shorten(timeout time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || timeout >= w.timeout {
		return
	}
	w.timeout = timeout
	w.t.Reset(0)
}

// expired reports whether the write in progress is older than the timeout,
// and otherwise re-arms the timer for the moment it would be.
func (w *writeWatch) expired() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return false
	}
	timeout := w.timeout
	next := timeout
	if s := w.started.Load(); s != 0 {
		age := time.Duration(monoNow() - s)
		if age >= timeout {
			w.stopped = true
			return true
		}
		next = timeout - age
	}
	w.t.Reset(next)
	return false
}

// stop disarms the watchdog; onTimeout does not start after it returns.
func (w *writeWatch) stop() {
	w.mu.Lock()
	w.stopped = true
	w.t.Stop()
	w.mu.Unlock()
}

// pingLoop sends a keepalive ping every PingInterval until the client ends;
// a ping not answered within WriteTimeout fails the client. It runs beside
// the writer (the websocket package serializes frames), so a ping waiting
// for its pong never holds up the client's events.
func (c *client) pingLoop(conn *websocket.Conn) {
	t := time.NewTicker(c.br.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		// Not derived from c.ctx: a context cancelled in the middle of the
		// ping's write makes the websocket package drop the connection
		// without the close status the writer is about to send.
		// It ends early when ServeHTTP closes the connection.
		ctx, cancel := context.WithTimeout(context.Background(), c.br.cfg.WriteTimeout)
		err := conn.Ping(ctx)
		cancel()
		if err != nil {
			if c.ctx.Err() == nil {
				c.fail(websocket.StatusGoingAway, "ping timeout")
			}
			return
		}
	}
}
