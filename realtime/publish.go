package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/justpg/justpg/internal/pgdb"
)

// maxInline is the largest payload (in bytes) that a notification carries
// as is; NOTIFY refuses 8000 bytes or more.
const maxInline = 7999

// Message is one message to publish.
type Message struct {
	Channel string
	Payload []byte
}

func validatePayload(p []byte) error {
	if bytes.IndexByte(p, 0) >= 0 {
		return fmt.Errorf("%w: contains a NUL byte", ErrInvalidPayload)
	}
	if !utf8.Valid(p) {
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidPayload)
	}
	return nil
}

// PublishOption adjusts one Publish.
type PublishOption func(*publishOptions)

type publishOptions struct {
	ephemeral bool
}

// Ephemeral publishes to live subscribers only: the message is never
// appended to a durable stream, even when the channel has one, and Publish
// does not look for the stream. Subscribers resumed with From receive it
// live with ID 0, and resuming later does not replay it (as with Ably's
// ephemeral messages or Centrifugo's skip_history). Use it for messages
// that are worthless after the moment (typing indicators, cursor
// positions, presence pings) and on channels that never have a stream.
//
// It is also the fastest way to publish. Through a *pgxpool.Pool,
// *pgxpool.Conn or *pgx.Conn, a payload that fits in a notification goes
// to the server as one call of pg_notify in PostgreSQL's function-call
// protocol message, which skips parsing, planning and the executor (see
// Config.DisableFastPath); through a pgx.Tx it is SELECT pg_notify($1, $2).
// Transaction semantics and payload limits are Publish's; like any message
// on a channel without a stream, identical ephemeral payloads under 8000
// bytes published in one transaction are delivered once (NOTIFY's
// de-duplication), even on a durable channel. A function call is not a
// statement: a pgx QueryTracer does not see it, and a ctx that ends during
// the call closes the connection (the server may still have run it; the
// error is not safe to retry) whatever context watcher the connection was
// configured with.
func Ephemeral() PublishOption {
	return func(o *publishOptions) { o.ephemeral = true }
}

// Publish sends payload to every subscriber of channel, in every process,
// through pg_notify. With db a transaction the message is delivered when it
// commits and never if it rolls back; messages of one transaction arrive in
// the order they were published.
//
// Payloads of any size are accepted: those beyond NOTIFY's 8000-byte limit
// are stored in realtime_payloads and resolved by the listener. When the
// channel has a durable stream (CreateStream) the message is also appended
// to its event log and receives the next id, unless it is Ephemeral.
//
// As with NOTIFY itself, identical (channel, payload) pairs published in one
// transaction on a channel without a stream are delivered once, when the
// payload fits in a notification (under 8000 bytes); larger payloads are
// stored one row per Publish and each is delivered. Events of a durable
// stream carry their id, so each is delivered.
func (b *Broker) Publish(ctx context.Context, db DB, channel string, payload []byte, opts ...PublishOption) error {
	if err := ValidateChannel(channel); err != nil {
		return err
	}
	if err := validatePayload(payload); err != nil {
		return err
	}
	var o publishOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	var err error
	if o.ephemeral {
		err = b.publishEphemeral(ctx, db, channel, payload)
	} else {
		q := b.sqlPublish
		if len(payload) > maxInline || (len(payload) > 0 && payload[0] == envSeparator) {
			q = b.sqlPublishSlow
		}
		// A string, not the []byte: pgx sends []byte as bytea in its
		// exec and simple-protocol modes, and the text would arrive
		// hex-encoded. On its own, a durable publish under REPEATABLE READ
		// or SERIALIZABLE fails when another publisher took the stream's
		// next id after its snapshot: it is run again (see pgdb.Retry).
		err = pgdb.Retry(ctx, db, func() error {
			_, err := db.Exec(ctx, q, channel, string(payload))
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("realtime: publishing to %q: %w", channel, err)
	}
	return nil
}

// PublishBatch sends many messages in one statement (one round trip), in
// slice order. Like Publish, a transaction delivers them all on commit.
//
// A batch whose payloads all fit in a notification as they are is sent as
// one set-based pg_notify over the arrays, after one look at
// realtime_streams for its distinct channels (made in the same statement);
// a batch with a durable channel, a large payload or an 0x1e-prefixed one
// goes through the realtime_publish_many function instead. (There is no
// Ephemeral batch: the stream look-up is made once per batch, not once per
// message.)
func (b *Broker) PublishBatch(ctx context.Context, db DB, msgs []Message) error {
	if len(msgs) == 0 {
		return nil
	}
	chans := make([]string, len(msgs))
	payloads := make([]string, len(msgs))
	distinct := make([]string, 0, 1)
	var seen map[string]bool // once distinct grows beyond a few
	fast := true
	for i, m := range msgs {
		if i == 0 || m.Channel != msgs[i-1].Channel {
			if err := ValidateChannel(m.Channel); err != nil {
				return fmt.Errorf("message %d: %w", i, err)
			}
			switch {
			case seen != nil:
				if !seen[m.Channel] {
					seen[m.Channel] = true
					distinct = append(distinct, m.Channel)
				}
			case !slices.Contains(distinct, m.Channel):
				distinct = append(distinct, m.Channel)
				if len(distinct) > 8 {
					seen = make(map[string]bool, len(msgs))
					for _, c := range distinct {
						seen[c] = true
					}
				}
			}
		}
		if err := validatePayload(m.Payload); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		if len(m.Payload) > maxInline || (len(m.Payload) > 0 && m.Payload[0] == envSeparator) {
			fast = false
		}
		chans[i], payloads[i] = m.Channel, string(m.Payload)
	}
	err := pgdb.Retry(ctx, db, func() (err error) {
		switch {
		case !fast:
			_, err = db.Exec(ctx, `SELECT `+b.qPublishMany+`($1, $2)`, chans, payloads)
		case len(distinct) == 1:
			_, err = db.Exec(ctx, b.sqlBatchOne, distinct[0], payloads)
		default:
			_, err = db.Exec(ctx, b.sqlBatchMany, chans, payloads, distinct)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("realtime: publishing %d messages: %w", len(msgs), err)
	}
	return nil
}

// PublishJSON publishes v encoded as JSON.
func PublishJSON[T any](ctx context.Context, b *Broker, db DB, channel string, v T, opts ...PublishOption) error {
	p, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("realtime: encoding payload for %q: %w", channel, err)
	}
	return b.Publish(ctx, db, channel, p, opts...)
}

// PublishJSONBatch publishes one JSON message per value to channel in one
// round trip.
func PublishJSONBatch[T any](ctx context.Context, b *Broker, db DB, channel string, vs []T) error {
	msgs := make([]Message, len(vs))
	for i, v := range vs {
		p, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("realtime: encoding payload %d for %q: %w", i, channel, err)
		}
		msgs[i] = Message{Channel: channel, Payload: p}
	}
	return b.PublishBatch(ctx, db, msgs)
}

// DecodeJSON decodes an event's payload as JSON into a T. It fails on a gap
// event, which has no payload.
func DecodeJSON[T any](ev Event) (T, error) {
	var v T
	if ev.IsGap() {
		return v, fmt.Errorf("realtime: event on %q is a gap (%s), not a message", ev.Channel, ev.Gap)
	}
	if err := json.Unmarshal(ev.Payload, &v); err != nil {
		return v, fmt.Errorf("realtime: decoding payload on %q: %w", ev.Channel, err)
	}
	return v, nil
}
