package realtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// StreamConfig sets a durable stream's retention. Zero values keep events
// until deleted otherwise; both limits may be set.
type StreamConfig struct {
	// MaxAge removes events older than this at cleanup.
	MaxAge time.Duration
	// MaxLen keeps at most this many of the newest events at cleanup.
	MaxLen int64
}

// CreateStream makes channel durable: from now on every message published
// to it (by Publish, PublishBatch or a table-change trigger, from any
// process) is also appended to an event log with increasing ids, so a
// subscriber that was away can resume with From(lastID) and miss nothing
// that retention kept. Calling it again updates the retention.
//
// Ids are assigned under a row lock of the stream, so they become visible
// in increasing order; the price is that publishers of one durable channel
// are serialized until their transactions end.
func (b *Broker) CreateStream(ctx context.Context, db DB, channel string, cfg StreamConfig) error {
	if err := ValidateChannel(channel); err != nil {
		return err
	}
	if cfg.MaxAge < 0 || cfg.MaxLen < 0 {
		return errors.New("realtime: StreamConfig limits must not be negative")
	}
	var maxAge *time.Duration
	var maxLen *int64
	if cfg.MaxAge > 0 {
		maxAge = &cfg.MaxAge
	}
	if cfg.MaxLen > 0 {
		maxLen = &cfg.MaxLen
	}
	if _, err := db.Exec(ctx, `INSERT INTO `+b.qStreams+` (channel, max_age, max_len) VALUES ($1, $2, $3)
		ON CONFLICT (channel) DO UPDATE SET max_age = excluded.max_age, max_len = excluded.max_len`,
		channel, maxAge, maxLen); err != nil {
		return fmt.Errorf("realtime: creating stream %q: %w", channel, err)
	}
	return nil
}

// DropStream removes channel's stream and its events; the channel becomes
// ephemeral again. Durable subscriptions of the channel receive a GapReset
// (when db is a transaction, once it commits) and go on live; should the
// stream be created again, its ids start at 1 and reach them.
func (b *Broker) DropStream(ctx context.Context, db DB, channel string) error {
	if err := ValidateChannel(channel); err != nil {
		return err
	}
	br := db.SendBatch(ctx, &pgx.Batch{QueuedQueries: []*pgx.QueuedQuery{
		{SQL: `DELETE FROM ` + b.qEvents + ` WHERE channel = $1`, Arguments: []any{channel}},
		{SQL: `WITH d AS (DELETE FROM ` + b.qStreams + ` WHERE channel = $1 RETURNING channel)
			SELECT pg_notify(channel, $2) FROM d`, Arguments: []any{channel, string([]byte{envSeparator, envReset})}},
	}})
	_, err1 := br.Exec()
	tag, err2 := br.Exec()
	err3 := br.Close()
	if err := errors.Join(err1, err2, err3); err != nil {
		return fmt.Errorf("realtime: dropping stream %q: %w", channel, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %q", ErrNoStream, channel)
	}
	return nil
}

// ReadStream returns up to limit retained events of channel's stream with
// ids greater than afterID, oldest first. limit <= 0 means 1000.
func (b *Broker) ReadStream(ctx context.Context, db DB, channel string, afterID int64, limit int) ([]Event, error) {
	if err := ValidateChannel(channel); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 1000
	}
	rows, err := db.Query(ctx, `SELECT id, payload FROM `+b.qEvents+`
		WHERE channel = $1 AND id > $2 ORDER BY id LIMIT $3`, channel, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("realtime: reading stream %q: %w", channel, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Event, error) {
		ev := Event{Channel: channel}
		err := r.Scan(&ev.ID, &ev.Payload)
		return ev, err
	})
	if err != nil {
		return nil, fmt.Errorf("realtime: reading stream %q: %w", channel, err)
	}
	return out, nil
}

// CleanupResult counts what Cleanup removed.
type CleanupResult struct {
	Payloads int64 // expired large payloads
	Events   int64 // stream events beyond retention
}

// Cleanup deletes large payloads older than Config.PayloadTTL and stream
// events beyond their stream's retention. A running broker calls it every
// Config.CleanupInterval; it is safe to run from several processes.
func (b *Broker) Cleanup(ctx context.Context, db DB) (CleanupResult, error) {
	var res CleanupResult
	br := db.SendBatch(ctx, &pgx.Batch{QueuedQueries: []*pgx.QueuedQuery{
		{SQL: `DELETE FROM ` + b.qPayloads + ` WHERE created_at < now() - $1::interval`,
			Arguments: []any{b.cfg.PayloadTTL}},
		{SQL: `DELETE FROM ` + b.qEvents + ` e USING ` + b.qStreams + ` s
			WHERE e.channel = s.channel
			  AND ((s.max_age IS NOT NULL AND e.created_at < now() - s.max_age)
			    OR (s.max_len IS NOT NULL AND e.id <= s.last_id - s.max_len))`},
	}})
	t1, err1 := br.Exec()
	t2, err2 := br.Exec()
	err3 := br.Close()
	if err := errors.Join(err1, err2, err3); err != nil {
		return res, fmt.Errorf("realtime: cleanup: %w", err)
	}
	res.Payloads, res.Events = t1.RowsAffected(), t2.RowsAffected()
	return res, nil
}

func (b *Broker) cleanupLoop(ctx context.Context) {
	t := time.NewTicker(b.cfg.CleanupInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			cctx, cancel := context.WithTimeout(ctx, max(b.cfg.CleanupInterval, 30*time.Second))
			if _, err := b.Cleanup(cctx, b.pool); err != nil && ctx.Err() == nil {
				b.cfg.Logger.Warn("realtime: cleanup failed", "err", err)
			}
			cancel()
		}
	}
}
