package auth

import (
	"context"
	"fmt"
)

// CleanupResult counts what Cleanup deleted.
type CleanupResult struct {
	Sessions   int64
	Tokens     int64
	RateLimits int64
}

// Cleanup deletes expired sessions (absolute or idle), expired one-time
// tokens (used ones are kept until they expire, so a reuse is reported as
// ErrTokenUsed) and finished rate-limit windows, batchSize rows per
// statement (1-100000; 0 means 1000) so that no statement holds many locks
// or runs long. Run it periodically, e.g. from a job. It stops early, with
// what it did so far, when ctx ends.
func (a *Auth) Cleanup(ctx context.Context, db DB, batchSize int) (CleanupResult, error) {
	if batchSize == 0 {
		batchSize = 1000
	}
	if batchSize < 0 || batchSize > 100000 {
		return CleanupResult{}, fmt.Errorf("%w: batch size must be 1-100000", ErrInvalidInput)
	}
	var res CleanupResult
	steps := []struct {
		n     *int64
		table string
		where string
		arg   int64
	}{
		{&res.Sessions, a.sessions, `expires_at <= now()`, 0},
		{&res.Sessions, a.sessions, `last_seen_at <= now() - $2 * interval '1 microsecond'`, micros(a.cfg.SessionIdleTimeout)},
		{&res.Tokens, a.tokens, `expires_at <= now()`, 0},
		{&res.RateLimits, a.limits, `window_start <= now() - $2 * interval '1 microsecond'`, micros(a.cfg.IPWindow)},
	}
	for _, s := range steps {
		key := "id"
		if s.table == a.limits {
			key = "key"
		}
		sql := `DELETE FROM ` + s.table + ` WHERE ` + key + ` IN (SELECT ` + key + ` FROM ` + s.table +
			` WHERE ` + s.where + ` LIMIT $1 FOR UPDATE SKIP LOCKED)`
		for {
			args := []any{batchSize}
			if s.arg != 0 {
				args = append(args, s.arg)
			}
			tag, err := db.Exec(ctx, sql, args...)
			if err != nil {
				return res, fmt.Errorf("auth: cleanup: %w", err)
			}
			*s.n += tag.RowsAffected()
			if tag.RowsAffected() < int64(batchSize) {
				break
			}
		}
	}
	return res, nil
}
