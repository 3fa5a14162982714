package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"unicode/utf8"
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

// Publish sends payload to every subscriber of channel, in every process,
// through pg_notify. With db a transaction the message is delivered when it
// commits and never if it rolls back; messages of one transaction arrive in
// the order they were published.
//
// Payloads of any size are accepted: those beyond NOTIFY's 8000-byte limit
// are stored in realtime_payloads and resolved by the listener. When the
// channel has a durable stream (CreateStream) the message is also appended
// to its event log and receives the next id.
//
// As with NOTIFY itself, identical (channel, payload) pairs published in one
// transaction on a channel without a stream are delivered once.
func (b *Broker) Publish(ctx context.Context, db DB, channel string, payload []byte) error {
	if err := ValidateChannel(channel); err != nil {
		return err
	}
	if err := validatePayload(payload); err != nil {
		return err
	}
	q := b.sqlPublish
	if len(payload) > maxInline || (len(payload) > 0 && payload[0] == envSeparator) {
		q = b.sqlPublishSlow
	}
	if _, err := db.Exec(ctx, q, channel, payload); err != nil {
		return fmt.Errorf("realtime: publishing to %q: %w", channel, err)
	}
	return nil
}

// PublishBatch sends many messages in one statement (one round trip), in
// slice order. Like Publish, a transaction delivers them all on commit.
func (b *Broker) PublishBatch(ctx context.Context, db DB, msgs []Message) error {
	if len(msgs) == 0 {
		return nil
	}
	chans := make([]string, len(msgs))
	payloads := make([]string, len(msgs))
	for i, m := range msgs {
		if err := ValidateChannel(m.Channel); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		if err := validatePayload(m.Payload); err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		chans[i], payloads[i] = m.Channel, string(m.Payload)
	}
	if _, err := db.Exec(ctx, `SELECT `+b.qPublishMany+`($1, $2)`, chans, payloads); err != nil {
		return fmt.Errorf("realtime: publishing %d messages: %w", len(msgs), err)
	}
	return nil
}

// PublishJSON publishes v encoded as JSON.
func PublishJSON[T any](ctx context.Context, b *Broker, db DB, channel string, v T) error {
	p, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("realtime: encoding payload for %q: %w", channel, err)
	}
	return b.Publish(ctx, db, channel, p)
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
