package auth_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/auth"
)

func TestSessionTimeoutsAndRenewal(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *auth.Config) {
		c.SessionIdleTimeout = time.Hour
		c.SessionAbsoluteTimeout = 24 * time.Hour
		c.SessionRenewInterval = 5 * time.Minute
	})
	e.signUp(t, "s@example.com")
	res := e.login(t, "s@example.com", goodPW)
	assert.WithinDuration(t, res.Session.CreatedAt.Add(24*time.Hour), res.Session.ExpiresAt, time.Second)

	lastSeen := func() time.Time {
		var ts time.Time
		require.NoError(t, e.pool.QueryRow(ctx, `SELECT last_seen_at FROM justpg.auth_sessions WHERE id = $1`, res.Session.ID).Scan(&ts))
		return ts
	}
	// Fresh: validation does not write.
	e.exec(t, `UPDATE justpg.auth_sessions SET last_seen_at = now() - interval '4 minutes' WHERE id = $1`, res.Session.ID)
	before := lastSeen()
	for range 3 {
		_, err := e.a.ValidateSession(ctx, e.pool, res.Token)
		require.NoError(t, err)
	}
	assert.Equal(t, before, lastSeen(), "no write within the renew interval")

	// Stale: the next validation renews it once.
	e.exec(t, `UPDATE justpg.auth_sessions SET last_seen_at = now() - interval '30 minutes' WHERE id = $1`, res.Session.ID)
	stale := lastSeen()
	p, err := e.a.ValidateSession(ctx, e.pool, res.Token)
	require.NoError(t, err)
	renewed := lastSeen()
	assert.True(t, renewed.After(stale.Add(25*time.Minute)), "renewed")
	assert.Equal(t, renewed, p.Session.LastSeenAt)
	_, err = e.a.ValidateSession(ctx, e.pool, res.Token)
	require.NoError(t, err)
	assert.Equal(t, renewed, lastSeen(), "written at most once per interval")

	// Idle timeout.
	e.exec(t, `UPDATE justpg.auth_sessions SET last_seen_at = now() - interval '61 minutes' WHERE id = $1`, res.Session.ID)
	_, err = e.a.ValidateSession(ctx, e.pool, res.Token)
	require.ErrorIs(t, err, auth.ErrTokenExpired)

	// Absolute timeout, even when used all the time.
	res2 := e.login(t, "s@example.com", goodPW)
	e.exec(t, `UPDATE justpg.auth_sessions SET expires_at = now() - interval '1 second' WHERE id = $1`, res2.Session.ID)
	_, err = e.a.ValidateSession(ctx, e.pool, res2.Token)
	require.ErrorIs(t, err, auth.ErrTokenExpired)
	_, err = e.a.RotateSession(ctx, e.pool, res2.Token, client)
	require.ErrorIs(t, err, auth.ErrInvalidToken)

	list, err := e.a.Sessions(ctx, e.pool, res.User.ID)
	require.NoError(t, err)
	assert.Empty(t, list, "expired sessions are not listed")
}

func TestListAndRevokeSessions(t *testing.T) {
	t.Parallel()
	e := setup(t)
	u := e.signUp(t, "multi@example.com")
	other := e.signUp(t, "other@example.com")
	var tokens []string
	var ids []string
	for i, ua := range []string{"phone", "laptop", "tablet"} {
		c := auth.Client{IP: netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)}), UserAgent: ua}
		res, err := e.a.Login(ctx, e.pool, auth.Credentials{Email: "multi@example.com", Password: goodPW}, c)
		require.NoError(t, err)
		tokens = append(tokens, res.Token)
		ids = append(ids, res.Session.ID)
	}
	otherRes := e.login(t, "other@example.com", goodPW)

	list, err := e.a.Sessions(ctx, e.pool, u.ID)
	require.NoError(t, err)
	require.Len(t, list, 3)
	assert.Equal(t, "tablet", list[0].UserAgent)
	assert.Equal(t, "198.51.100.3", list[0].IP.String())
	for _, s := range list {
		assert.Equal(t, u.ID, s.UserID)
		assert.False(t, s.CreatedAt.IsZero())
		assert.False(t, s.LastSeenAt.IsZero())
	}

	// Another user's session cannot be revoked through this user.
	before := e.snapshot(t)
	require.ErrorIs(t, e.a.RevokeSession(ctx, e.pool, u.ID, otherRes.Session.ID, client), auth.ErrNotFound)
	require.ErrorIs(t, e.a.RevokeSession(ctx, e.pool, u.ID, "not-a-uuid", client), auth.ErrNotFound)
	require.ErrorIs(t, e.a.RevokeSession(ctx, e.pool, "'; DELETE FROM x; --", ids[0], client), auth.ErrNotFound)
	assert.Equal(t, before, e.snapshot(t))

	// Revoke one: effective on the next validation.
	require.NoError(t, e.a.RevokeSession(ctx, e.pool, u.ID, ids[0], client))
	_, err = e.a.ValidateSession(ctx, e.pool, tokens[0])
	require.ErrorIs(t, err, auth.ErrInvalidToken)
	require.ErrorIs(t, e.a.RevokeSession(ctx, e.pool, u.ID, ids[0], client), auth.ErrNotFound)

	// Revoke all others.
	n, err := e.a.RevokeSessions(ctx, e.pool, u.ID, ids[2], client)
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	_, err = e.a.ValidateSession(ctx, e.pool, tokens[1])
	require.ErrorIs(t, err, auth.ErrInvalidToken)
	_, err = e.a.ValidateSession(ctx, e.pool, tokens[2])
	require.NoError(t, err)

	// Revoke all.
	n, err = e.a.RevokeSessions(ctx, e.pool, u.ID, "", client)
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	_, err = e.a.ValidateSession(ctx, e.pool, tokens[2])
	require.ErrorIs(t, err, auth.ErrInvalidToken)

	// The other user is untouched.
	_, err = e.a.ValidateSession(ctx, e.pool, otherRes.Token)
	require.NoError(t, err)
	_ = other
}

func TestRotateSession(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.signUp(t, "rot@example.com")
	res := e.login(t, "rot@example.com", goodPW)
	next, err := e.a.RotateSession(ctx, e.pool, res.Token, client)
	require.NoError(t, err)
	assert.NotEqual(t, res.Token, next)
	_, err = e.a.ValidateSession(ctx, e.pool, res.Token)
	require.ErrorIs(t, err, auth.ErrInvalidToken, "the old token dies at once")
	p, err := e.a.ValidateSession(ctx, e.pool, next)
	require.NoError(t, err)
	assert.Equal(t, res.Session.ID, p.Session.ID, "same session")
	assert.Equal(t, res.Session.ExpiresAt, p.Session.ExpiresAt, "same absolute expiry")
}

func TestChangePasswordRevokesOtherSessions(t *testing.T) {
	t.Parallel()
	e := setup(t)
	u := e.signUp(t, "chg@example.com")
	a := e.login(t, "chg@example.com", goodPW)
	b := e.login(t, "chg@example.com", goodPW)
	const next = "a brand new passphrase"

	require.ErrorIs(t, e.a.ChangePassword(ctx, e.pool, u.ID, "wrong current pw", next, a.Session.ID, client), auth.ErrInvalidCredentials)
	require.ErrorIs(t, e.a.ChangePassword(ctx, e.pool, u.ID, goodPW, "123456789", a.Session.ID, client), auth.ErrWeakPassword)
	_, err := e.a.ValidateSession(ctx, e.pool, b.Token)
	require.NoError(t, err, "failed changes revoke nothing")

	e.exec(t, `UPDATE justpg.auth_users SET locked_until = now() + interval '1 minute' WHERE id = $1`, u.ID)
	require.ErrorIs(t, e.a.ChangePassword(ctx, e.pool, u.ID, goodPW, next, a.Session.ID, client), auth.ErrInvalidCredentials,
		"no password guessing through the change form while locked")
	e.exec(t, `UPDATE justpg.auth_users SET locked_until = NULL WHERE id = $1`, u.ID)
	require.NoError(t, e.a.ChangePassword(ctx, e.pool, u.ID, goodPW, next, a.Session.ID, client))
	_, err = e.a.ValidateSession(ctx, e.pool, a.Token)
	require.NoError(t, err, "the session making the change stays")
	_, err = e.a.ValidateSession(ctx, e.pool, b.Token)
	require.ErrorIs(t, err, auth.ErrInvalidToken)
	_, err = e.a.Login(ctx, e.pool, auth.Credentials{Email: "chg@example.com", Password: goodPW}, client)
	require.ErrorIs(t, err, auth.ErrInvalidCredentials)
	e.login(t, "chg@example.com", next)
}
