package realtime

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// SSE returns a Server-Sent Events handler for one-way clients (EventSource).
// The client receives its Identity.Channels plus the rooms named by the
// query parameter channel (repeatable; each must pass Identity.CanJoin, at
// most MaxRooms). Events are sent as
//
//	event: message            (or "gap")
//	id: room%3A1=42&user%3A7=3
//	data: {"type":"message","channel":"room:1","id":42,"data":...}
//
// The id field carries the last seen id of every durable channel, so after
// a dropped connection the browser's automatic Last-Event-ID header resumes
// them all with nothing missed (a stream dropped meanwhile continues live
// after a "gap" event with reason "reset"); a Last-Event-ID not in this
// format is refused with 400. A comment line is sent every PingInterval
// as keepalive; a client that does not take a write within WriteTimeout or
// lets QueueSize events pile up is disconnected.
func (br *Bridge) SSE() http.Handler {
	return http.HandlerFunc(br.serveSSE)
}

func (br *Bridge) serveSSE(w http.ResponseWriter, r *http.Request) {
	id, resume, ok := br.start(w, r)
	if !ok {
		return
	}
	last, err := parseLastEventID(r.Header.Get("Last-Event-ID"))
	if err != nil {
		http.Error(w, "malformed Last-Event-ID", http.StatusBadRequest)
		return
	}
	for ch, n := range resume {
		last[ch] = n
	}
	rooms := r.URL.Query()["channel"]
	if len(rooms) > br.cfg.MaxRooms {
		http.Error(w, fmt.Sprintf("at most %d channels", br.cfg.MaxRooms), http.StatusBadRequest)
		return
	}
	for _, ch := range rooms {
		if err := ValidateChannel(ch); err != nil {
			http.Error(w, "invalid channel name", http.StatusBadRequest)
			return
		}
		if id.CanJoin == nil || !id.CanJoin(ch) {
			http.Error(w, "not allowed to join "+ch, http.StatusForbidden)
			return
		}
	}
	rc := http.NewResponseController(w)
	br.clients.Add(1)
	defer br.clients.Add(-1)
	c := br.newClient(r.Context(), id)
	defer c.finish()
	joined := map[string]bool{}
	join := func(ch string, fixed bool) bool {
		joined[ch] = true
		err := c.join(ch, sincePtr(last, ch), fixed, nil)
		// An id from Last-Event-ID comes from the browser on its own, so
		// one of a stream dropped meanwhile goes on live after a gap rather
		// than failing (an EventSource gives up for good on an error
		// status). An explicit resume parameter still fails.
		if _, explicit := resume[ch]; errors.Is(err, ErrNoStream) && !explicit {
			delete(last, ch)
			c.send(&frame{ev: Event{Channel: ch, Gap: GapReset}})
			err = c.join(ch, nil, fixed, nil)
		}
		switch {
		case err == nil:
			return true
		case errors.Is(err, ErrNoStream):
			http.Error(w, "channel "+ch+" has no stream to resume", http.StatusBadRequest)
		case errors.Is(err, ErrNotRunning):
			http.Error(w, "server not ready", http.StatusServiceUnavailable)
		default:
			http.Error(w, "subscribe failed", http.StatusInternalServerError)
		}
		return false
	}
	for _, ch := range id.Channels {
		if !join(ch, true) {
			return
		}
	}
	for _, ch := range rooms {
		if !join(ch, false) {
			return
		}
	}
	for ch := range last { // ids of channels this connection did not join
		if !joined[ch] {
			delete(last, ch)
		}
	}

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	write := func(fn func() error) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(br.cfg.WriteTimeout))
		if err := fn(); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write(func() error { _, err := fmt.Fprint(w, ": connected\n\n"); return err }) {
		return
	}
	ping := time.NewTicker(br.cfg.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case f := <-c.queue:
			if f.ctl != nil {
				continue
			}
			data := f.data
			if data == nil {
				data = br.encode(f.ev)
			}
			typ := "message"
			if f.ev.IsGap() {
				typ = "gap"
			}
			switch _, durable := last[f.ev.Channel]; {
			case f.ev.ID > 0 && !f.ev.IsGap():
				last[f.ev.Channel] = f.ev.ID
			case f.ev.Gap == GapReset && durable:
				last[f.ev.Channel] = 0 // the ids started again
			}
			ids := url.Values{}
			for ch, n := range last {
				ids.Set(ch, strconv.FormatInt(n, 10))
			}
			if !write(func() error {
				var err error
				if len(ids) > 0 {
					_, err = fmt.Fprintf(w, "event: %s\nid: %s\ndata: %s\n\n", typ, ids.Encode(), data)
				} else {
					_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", typ, data)
				}
				return err
			}) {
				return
			}
		case <-ping.C:
			if !write(func() error { _, err := fmt.Fprint(w, ": ping\n\n"); return err }) {
				return
			}
		}
	}
}

// parseLastEventID reads the id format the SSE handler writes: a URL query
// of channel=lastID pairs. An empty header means no ids.
func parseLastEventID(h string) (map[string]int64, error) {
	last := map[string]int64{}
	if h == "" {
		return last, nil
	}
	vals, err := url.ParseQuery(h)
	if err != nil {
		return nil, err
	}
	for ch, v := range vals {
		n, err := strconv.ParseInt(v[0], 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("realtime: bad id for %q", ch)
		}
		if err := ValidateChannel(ch); err != nil {
			return nil, err
		}
		last[ch] = n
	}
	return last, nil
}
