package auth

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/justpg/justpg/internal/pgdb"
)

// micros converts a duration for SQL of the form ($n * interval '1 microsecond').
func micros(d time.Duration) int64 { return d.Microseconds() }

// rateKey is the counter an address counts against: the address itself for
// IPv4, its /64 for IPv6 (one host usually holds a whole /64).
func rateKey(ip netip.Addr) string {
	ip = ip.Unmap().WithZone("") // Prefix refuses a zoned address
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return "ip:" + p.String()
	}
	return "ip:" + ip.String()
}

// limitIP counts one attempt from c's address in a fixed window and returns
// ErrRateLimited once the address has made more than IPLimit attempts in
// the current window. The counter lives in PostgreSQL, so it holds across
// application instances.
func (a *Auth) limitIP(ctx context.Context, db DB, c Client) error {
	if a.cfg.IPLimit < 0 || !c.IP.IsValid() {
		return nil
	}
	var hits int
	err := pgdb.Retry(ctx, db, func() error {
		return db.QueryRow(ctx, `INSERT INTO `+a.limits+` AS l (key, window_start, hits) VALUES ($1, now(), 1)
		ON CONFLICT (key) DO UPDATE SET
			hits = CASE WHEN l.window_start <= now() - $2 * interval '1 microsecond' THEN 1 ELSE l.hits + 1 END,
			window_start = CASE WHEN l.window_start <= now() - $2 * interval '1 microsecond' THEN now() ELSE l.window_start END
		RETURNING hits`, rateKey(c.IP), micros(a.cfg.IPWindow)).Scan(&hits)
	})
	if err != nil {
		return fmt.Errorf("auth: rate limit: %w", err)
	}
	if hits > a.cfg.IPLimit {
		if hits == a.cfg.IPLimit+1 { // record the first refusal of a window only
			if err := a.record(ctx, db, EventRateLimited, "", c, nil); err != nil {
				return err
			}
		}
		return ErrRateLimited
	}
	return nil
}

// ClearRateLimit forgets the attempts counted against ip (for support staff
// who unblock an office behind one address).
func (a *Auth) ClearRateLimit(ctx context.Context, db DB, ip netip.Addr) error {
	if !ip.IsValid() {
		return fmt.Errorf("%w: invalid address", ErrInvalidInput)
	}
	if _, err := db.Exec(ctx, `DELETE FROM `+a.limits+` WHERE key = $1`, rateKey(ip)); err != nil {
		return fmt.Errorf("auth: clearing rate limit: %w", err)
	}
	return nil
}
