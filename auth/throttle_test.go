package auth_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/auth"
)

func TestLockoutBackoffAndResetClearsIt(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *auth.Config) {
		c.LockoutThreshold = 3
		c.LockoutBase = time.Hour
		c.LockoutMax = 3 * time.Hour
	})
	u := e.signUp(t, "lock@example.com")
	wrong := auth.Credentials{Email: "lock@example.com", Password: "not the password"}
	right := auth.Credentials{Email: "lock@example.com", Password: goodPW}
	// lockFor returns how long the account is locked from now (0 if not).
	lockFor := func() time.Duration {
		var secs float64
		require.NoError(t, e.pool.QueryRow(ctx, `SELECT COALESCE(extract(epoch FROM locked_until - now()), 0)
			FROM justpg.auth_users WHERE id = $1`, u.ID).Scan(&secs))
		return time.Duration(secs * float64(time.Second))
	}
	expire := func() {
		e.exec(t, `UPDATE justpg.auth_users SET locked_until = now() - interval '1 second' WHERE id = $1`, u.ID)
	}

	for range 2 {
		_, err := e.a.Login(ctx, e.pool, wrong, client)
		require.ErrorIs(t, err, auth.ErrInvalidCredentials)
	}
	assert.Zero(t, lockFor(), "below the threshold")
	_, err := e.a.Login(ctx, e.pool, wrong, client)
	require.ErrorIs(t, err, auth.ErrInvalidCredentials)
	assert.InDelta(t, time.Hour.Seconds(), lockFor().Seconds(), 60, "first lock: LockoutBase")

	// While locked even the right password fails, with the same error, and
	// attempts do not extend the lock.
	_, err = e.a.Login(ctx, e.pool, right, client)
	require.ErrorIs(t, err, auth.ErrInvalidCredentials)
	_, err = e.a.Login(ctx, e.pool, wrong, client)
	require.ErrorIs(t, err, auth.ErrInvalidCredentials)
	assert.InDelta(t, time.Hour.Seconds(), lockFor().Seconds(), 60)

	// After the lock, each further failure doubles it, up to LockoutMax.
	expire()
	_, err = e.a.Login(ctx, e.pool, wrong, client)
	require.ErrorIs(t, err, auth.ErrInvalidCredentials)
	assert.InDelta(t, (2 * time.Hour).Seconds(), lockFor().Seconds(), 60)
	expire()
	_, err = e.a.Login(ctx, e.pool, wrong, client)
	require.ErrorIs(t, err, auth.ErrInvalidCredentials)
	assert.InDelta(t, (3 * time.Hour).Seconds(), lockFor().Seconds(), 60, "capped at LockoutMax")
	assert.Equal(t, 1, e.count(t, `SELECT count(*) FROM justpg.auth_audit WHERE event = 'account_locked' AND user_id = $1
		AND (detail->>'failures')::int = 3`, u.ID))

	// A successful reset clears the lock: no permanent lock-out.
	require.NoError(t, e.a.RequestPasswordReset(ctx, e.pool, "lock@example.com", client))
	_, err = e.a.ResetPassword(ctx, e.pool, e.mail.last(t).Token, "my new long passphrase", client)
	require.NoError(t, err)
	assert.Zero(t, lockFor())
	e.login(t, "lock@example.com", "my new long passphrase")

	// A successful log-in resets the count.
	for range 2 {
		_, err := e.a.Login(ctx, e.pool, wrong, client)
		require.ErrorIs(t, err, auth.ErrInvalidCredentials)
	}
	e.login(t, "lock@example.com", "my new long passphrase")
	assert.Equal(t, 0, e.count(t, `SELECT failed_logins FROM justpg.auth_users WHERE id = $1`, u.ID))
}

func TestPerIPRateLimit(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *auth.Config) { c.IPLimit = 3; c.IPWindow = time.Hour })
	e.signUp(t, "ip@example.com") // sign-ups count too
	attacker := auth.Client{IP: netip.MustParseAddr("203.0.113.7")}
	cr := auth.Credentials{Email: "ip@example.com", Password: "guess guess guess"}
	for range 2 {
		_, err := e.a.Login(ctx, e.pool, cr, attacker)
		require.ErrorIs(t, err, auth.ErrInvalidCredentials)
	}
	v0 := e.h.verifies.Load()
	_, err := e.a.Login(ctx, e.pool, cr, attacker)
	require.ErrorIs(t, err, auth.ErrInvalidCredentials)
	_, err = e.a.Login(ctx, e.pool, cr, attacker)
	require.ErrorIs(t, err, auth.ErrRateLimited)
	assert.Equal(t, int64(1), e.h.verifies.Load()-v0, "a refused attempt costs no hashing")
	require.ErrorIs(t, e.a.RequestPasswordReset(ctx, e.pool, "ip@example.com", attacker), auth.ErrRateLimited)

	// Other addresses are unaffected; the limit holds for every instance
	// because it is in PostgreSQL.
	other, err := auth.New(e.pool, auth.Config{Hasher: e.h, IPLimit: 3, IPWindow: time.Hour})
	require.NoError(t, err)
	_, err = other.Login(ctx, e.pool, cr, attacker)
	require.ErrorIs(t, err, auth.ErrRateLimited, "a second instance sees the same counter")
	_, err = other.Login(ctx, e.pool, auth.Credentials{Email: "ip@example.com", Password: goodPW}, client)
	require.NoError(t, err)

	// IPv6 addresses count per /64.
	v6a := auth.Client{IP: netip.MustParseAddr("2001:db8:1:2::1")}
	v6b := auth.Client{IP: netip.MustParseAddr("2001:db8:1:2:ffff::9")}
	for range 3 {
		_, err := e.a.Login(ctx, e.pool, cr, v6a)
		require.ErrorIs(t, err, auth.ErrInvalidCredentials)
	}
	_, err = e.a.Login(ctx, e.pool, cr, v6b)
	require.ErrorIs(t, err, auth.ErrRateLimited)

	// The window ends, and support can clear an address.
	require.NoError(t, e.a.ClearRateLimit(ctx, e.pool, attacker.IP))
	_, err = e.a.Login(ctx, e.pool, cr, attacker)
	require.ErrorIs(t, err, auth.ErrInvalidCredentials)
	e.exec(t, `UPDATE justpg.auth_rate_limits SET window_start = now() - interval '2 hours'`)
	_, err = e.a.Login(ctx, e.pool, cr, v6b)
	require.ErrorIs(t, err, auth.ErrInvalidCredentials)
	assert.Positive(t, e.count(t, `SELECT count(*) FROM justpg.auth_audit WHERE event = 'rate_limited'`))
}
