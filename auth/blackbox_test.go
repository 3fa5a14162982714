package auth_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/auth"
	"github.com/justpg/justpg/internal/pgtest"
)

// TestBlackbox runs the black-box cases on one database (each case uses its
// own addresses), so that they add one database clone to the suite, not ten.
func TestBlackbox(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for _, c := range []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"ConcurrentSignUpSameAddress", bbConcurrentSignUpSameAddress},
		{"RolledBackTransactionLeavesNothing", bbRolledBackTransactionLeavesNothing},
		{"ConcurrentVerifyEmail", bbConcurrentVerifyEmail},
		{"ConcurrentRotateSession", bbConcurrentRotateSession},
		{"LogoutTwice", bbLogoutTwice},
		{"DeletedUserLosesEverything", bbDeletedUserLosesEverything},
		{"OddUserIDs", bbOddUserIDs},
		{"CancelledContext", bbCancelledContext},
		{"UnicodeEmailIsOneAccount", bbUnicodeEmailIsOneAccount},
		{"RevokeAPIKeyTwice", bbRevokeAPIKeyTwice},
	} {
		t.Run(c.name, func(t *testing.T) { c.fn(t, e) })
	}
}

// Concurrent sign-ups of one address, spelled with different case and white
// space, create exactly one account; the others get ErrEmailTaken.
func bbConcurrentSignUpSameAddress(t *testing.T, e *env) {
	spellings := []string{"dup@example.com", " DUP@example.com", "Dup@Example.COM ", "\tdup@EXAMPLE.com", "dUp@example.com", "DUP@EXAMPLE.COM"}
	errs := make([]error, len(spellings))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, s := range spellings {
		wg.Go(func() {
			<-start
			_, errs[i] = e.a.SignUp(ctx, e.pool, s, goodPW, client)
		})
	}
	close(start)
	wg.Wait()
	pgtest.OneWinner(t, errs, auth.ErrEmailTaken)
	assert.Equal(t, 1, e.count(t, `SELECT count(*) FROM justpg.auth_users WHERE email = 'dup@example.com'`))
	e.login(t, "DUP@example.com", goodPW)
}

// Operations in a caller's transaction that is rolled back leave nothing.
func bbRolledBackTransactionLeavesNothing(t *testing.T, e *env) {
	before := e.snapshot(t)
	audit := e.count(t, `SELECT count(*) FROM justpg.auth_audit`)
	tx, err := e.pool.Begin(ctx)
	require.NoError(t, err)
	u, err := e.a.SignUp(ctx, tx, "rb@example.com", goodPW, client)
	require.NoError(t, err)
	res, err := e.a.Login(ctx, tx, auth.Credentials{Email: "rb@example.com", Password: goodPW}, client)
	require.NoError(t, err)
	_, _, err = e.a.CreateAPIKey(ctx, tx, u.ID, "ci", []string{"read"}, 0, client)
	require.NoError(t, err)
	require.NoError(t, e.a.RequestEmailVerification(ctx, tx, u.ID, client))
	require.NoError(t, tx.Rollback(ctx))

	assert.Equal(t, before, e.snapshot(t))
	assert.Equal(t, audit, e.count(t, `SELECT count(*) FROM justpg.auth_audit`))
	_, err = e.a.ValidateSession(ctx, e.pool, res.Token)
	require.ErrorIs(t, err, auth.ErrInvalidToken)
	_, err = e.a.UserByEmail(ctx, e.pool, "rb@example.com")
	require.ErrorIs(t, err, auth.ErrNotFound)
	e.signUp(t, "rb@example.com")
}

// Two goroutines verifying the same e-mail token: exactly one wins, the
// other gets ErrTokenUsed.
func bbConcurrentVerifyEmail(t *testing.T, e *env) {
	u := e.signUp(t, "verify-race@example.com")
	require.NoError(t, e.a.RequestEmailVerification(ctx, e.pool, u.ID, client))
	tok := e.mail.last(t).Token
	const n = 6
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = e.a.VerifyEmail(ctx, e.pool, tok, client)
		})
	}
	close(start)
	wg.Wait()
	pgtest.OneWinner(t, errs, auth.ErrTokenUsed)
	got, err := e.a.User(ctx, e.pool, u.ID)
	require.NoError(t, err)
	assert.NotNil(t, got.EmailVerifiedAt)
	assert.Equal(t, 1, e.count(t, `SELECT count(*) FROM justpg.auth_audit WHERE event = 'email_verified' AND user_id = $1`, u.ID))
}

// Two goroutines rotating the same session token: exactly one new token
// works, the old one does not.
func bbConcurrentRotateSession(t *testing.T, e *env) {
	e.signUp(t, "rot@example.com")
	res := e.login(t, "rot@example.com", goodPW)
	const n = 6
	toks := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			toks[i], errs[i] = e.a.RotateSession(ctx, e.pool, res.Token, client)
		})
	}
	close(start)
	wg.Wait()
	var winners []string
	for i, err := range errs {
		if err == nil {
			winners = append(winners, toks[i])
			continue
		}
		require.ErrorIs(t, err, auth.ErrInvalidToken)
	}
	require.Len(t, winners, 1)
	_, err := e.a.ValidateSession(ctx, e.pool, res.Token)
	require.ErrorIs(t, err, auth.ErrInvalidToken)
	p, err := e.a.ValidateSession(ctx, e.pool, winners[0])
	require.NoError(t, err)
	assert.Equal(t, res.Session.ID, p.Session.ID)
}

// Logout twice, and concurrently: one success, the rest ErrInvalidToken.
func bbLogoutTwice(t *testing.T, e *env) {
	e.signUp(t, "bye@example.com")
	res := e.login(t, "bye@example.com", goodPW)
	const n = 5
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = e.a.Logout(ctx, e.pool, res.Token, client) })
	}
	wg.Wait()
	pgtest.OneWinner(t, errs, auth.ErrInvalidToken)
	require.ErrorIs(t, e.a.Logout(ctx, e.pool, res.Token, client), auth.ErrInvalidToken)
	require.ErrorIs(t, e.a.Logout(ctx, e.pool, "", client), auth.ErrInvalidToken)
	require.ErrorIs(t, e.a.Logout(ctx, e.pool, res.Token+" ", client), auth.ErrInvalidToken)
}

// A deleted user's sessions, keys and tokens stop working; deleting again
// is ErrNotFound; the address can sign up afresh.
func bbDeletedUserLosesEverything(t *testing.T, e *env) {
	u := e.signUp(t, "gone@example.com")
	res := e.login(t, "gone@example.com", goodPW)
	secret, _, err := e.a.CreateAPIKey(ctx, e.pool, u.ID, "k", nil, 0, client)
	require.NoError(t, err)
	require.NoError(t, e.a.RequestPasswordReset(ctx, e.pool, "gone@example.com", client))
	reset := e.mail.last(t).Token

	require.NoError(t, e.a.DeleteUser(ctx, e.pool, u.ID, client))
	require.ErrorIs(t, e.a.DeleteUser(ctx, e.pool, u.ID, client), auth.ErrNotFound)
	_, err = e.a.ValidateSession(ctx, e.pool, res.Token)
	require.ErrorIs(t, err, auth.ErrInvalidToken)
	_, err = e.a.ValidateAPIKey(ctx, e.pool, secret)
	require.ErrorIs(t, err, auth.ErrInvalidToken)
	_, err = e.a.ResetPassword(ctx, e.pool, reset, "a brand new passphrase", client)
	require.ErrorIs(t, err, auth.ErrInvalidToken)
	_, err = e.a.User(ctx, e.pool, u.ID)
	require.ErrorIs(t, err, auth.ErrNotFound)
	u2 := e.signUp(t, "gone@example.com")
	assert.NotEqual(t, u.ID, u2.ID)
}

// Ids that are not UUIDs, or upper-case UUIDs, never reach PostgreSQL as
// errors: they are ErrNotFound (or found, for an upper-case spelling).
func bbOddUserIDs(t *testing.T, e *env) {
	u := e.signUp(t, "ids@example.com")
	for _, id := range []string{"", "x", "not-a-uuid", "00000000-0000-0000-0000-000000000000", "{" + u.ID + "}", u.ID + "\x00", "'; DROP TABLE x; --"} {
		_, err := e.a.User(ctx, e.pool, id)
		require.ErrorIs(t, err, auth.ErrNotFound, "%q", id)
		_, err = e.a.Sessions(ctx, e.pool, id)
		if err != nil {
			require.ErrorIs(t, err, auth.ErrNotFound, "%q", id)
		}
		require.ErrorIs(t, e.a.DeleteUser(ctx, e.pool, id, client), auth.ErrNotFound, "%q", id)
		_, err = e.a.RevokeSessions(ctx, e.pool, id, "", client)
		if err != nil {
			require.ErrorIs(t, err, auth.ErrNotFound, "%q", id)
		}
	}
	got, err := e.a.User(ctx, e.pool, strings.ToUpper(u.ID))
	require.NoError(t, err)
	assert.Equal(t, u.ID, got.ID)
}

// A cancelled context fails the call with context.Canceled reachable, and
// changes nothing.
func bbCancelledContext(t *testing.T, e *env) {
	e.signUp(t, "cx@example.com")
	before := e.snapshot(t)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err := e.a.SignUp(cctx, e.pool, "cx2@example.com", goodPW, client)
	require.Error(t, err)
	assert.True(t, errors.Is(err, context.Canceled), "%v", err)
	_, err = e.a.Login(cctx, e.pool, auth.Credentials{Email: "cx@example.com", Password: goodPW}, client)
	require.Error(t, err)
	assert.False(t, errors.Is(err, auth.ErrInvalidCredentials), "a cancelled log-in is not a failed log-in: %v", err)
	assert.Equal(t, before, e.snapshot(t))
}

// Unicode addresses: NFC and NFD spellings, and upper-case non-ASCII
// letters, are one account.
func bbUnicodeEmailIsOneAccount(t *testing.T, e *env) {
	e.signUp(t, "J\u00fcrgen@B\u00fccher.example")                                         // precomposed ü
	_, err := e.a.SignUp(ctx, e.pool, "ju\u0308rgen@bu\u0308cher.example", goodPW, client) // decomposed
	require.ErrorIs(t, err, auth.ErrEmailTaken)
	_, err = e.a.SignUp(ctx, e.pool, "J\u00dcRGEN@B\u00dcCHER.EXAMPLE", goodPW, client)
	require.ErrorIs(t, err, auth.ErrEmailTaken)
	e.login(t, "JU\u0308RGEN@bücher.example", goodPW)
	// NUL, newline and header-injection attempts are refused as addresses.
	for _, bad := range []string{"a\x00@example.com", "a@example.com\r\nBcc: x@evil.example", "a@exa\x00mple.com"} {
		_, err := e.a.SignUp(ctx, e.pool, bad, goodPW, client)
		require.ErrorIs(t, err, auth.ErrInvalidEmail, "%q", bad)
		_, err = e.a.Login(ctx, e.pool, auth.Credentials{Email: bad, Password: goodPW}, client)
		require.ErrorIs(t, err, auth.ErrInvalidCredentials, "%q", bad)
	}
}

// Revoking an API key twice, and a key of another user: ErrNotFound.
func bbRevokeAPIKeyTwice(t *testing.T, e *env) {
	u := e.signUp(t, "k1@example.com")
	v := e.signUp(t, "k2@example.com")
	secret, k, err := e.a.CreateAPIKey(ctx, e.pool, u.ID, "név 🔑", []string{"a:b"}, 0, client)
	require.NoError(t, err)
	require.ErrorIs(t, e.a.RevokeAPIKey(ctx, e.pool, v.ID, k.ID, client), auth.ErrNotFound)
	_, err = e.a.ValidateAPIKey(ctx, e.pool, secret)
	require.NoError(t, err)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = e.a.RevokeAPIKey(ctx, e.pool, u.ID, k.ID, client) })
	}
	wg.Wait()
	pgtest.OneWinner(t, errs, auth.ErrNotFound)
	_, err = e.a.ValidateAPIKey(ctx, e.pool, secret)
	require.ErrorIs(t, err, auth.ErrInvalidToken)
	for _, s := range []string{"", "jpk_", secret + "x", strings.ToUpper(secret), "Bearer " + secret} {
		_, err = e.a.ValidateAPIKey(ctx, e.pool, s)
		require.ErrorIs(t, err, auth.ErrInvalidToken, "%q", s)
	}
}
