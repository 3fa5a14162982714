package auth_test

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/auth"
)

// ChangePassword's keepSessionID is validated like RevokeSessions' (which
// answers ErrNotFound for a malformed id): a malformed id must not reach
// PostgreSQL as a uuid cast error after the password was checked and hashed.
func TestBlackboxChangePasswordMalformedKeepSession(t *testing.T) {
	t.Parallel()
	e := setup(t)
	u := e.signUp(t, "keep@example.com")
	e.login(t, "keep@example.com", goodPW)
	_, err := e.a.RevokeSessions(ctx, e.pool, u.ID, "not-a-session", client)
	require.ErrorIs(t, err, auth.ErrNotFound, "RevokeSessions: %v", err)
	err = e.a.ChangePassword(ctx, e.pool, u.ID, goodPW, "a whole new passphrase", "not-a-session", client)
	require.Error(t, err)
	if !errIsAny(err, auth.ErrNotFound, auth.ErrInvalidInput) {
		t.Errorf("ChangePassword with a malformed keepSessionID: got %v, want ErrNotFound or ErrInvalidInput", err)
	}
}

// A Client whose IP carries an IPv6 zone (as netip.ParseAddrPort gives for
// a link-local RemoteAddr like "[fe80::1%eth0]:1234") is still a valid
// client: sign-up and log-in must not fail with a database error.
func TestBlackboxZonedClientIP(t *testing.T) {
	t.Parallel()
	e := setup(t)
	c := auth.Client{IP: netip.MustParseAddr("fe80::1%eth0"), UserAgent: "x"}
	_, err := e.a.SignUp(ctx, e.pool, "zone@example.com", goodPW, c)
	require.NoError(t, err)
	_, err = e.a.Login(ctx, e.pool, auth.Credentials{Email: "zone@example.com", Password: goodPW}, c)
	require.NoError(t, err)
}

func errIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errorsIs(err, t) {
			return true
		}
	}
	return false
}

var errorsIs = errors.Is
