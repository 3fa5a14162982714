package auth_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/auth"
)

func TestPasswordResetFlow(t *testing.T) {
	t.Parallel()
	e := setup(t)
	u := e.signUp(t, "reset@example.com")
	s := e.login(t, "reset@example.com", goodPW)

	// Unknown and malformed addresses: same answer, nothing sent.
	require.NoError(t, e.a.RequestPasswordReset(ctx, e.pool, "nobody@example.com", client))
	require.NoError(t, e.a.RequestPasswordReset(ctx, e.pool, "not an address", client))
	assert.Empty(t, e.mail.all())

	require.NoError(t, e.a.RequestPasswordReset(ctx, e.pool, "RESET@example.com", client))
	first := e.mail.last(t)
	assert.Equal(t, auth.PurposeResetPassword, first.Purpose)
	assert.Equal(t, "reset@example.com", first.To)
	assert.Equal(t, u.ID, first.UserID)
	// A later request invalidates the earlier token.
	require.NoError(t, e.a.RequestPasswordReset(ctx, e.pool, "reset@example.com", client))
	second := e.mail.last(t)
	assert.NotEqual(t, first.Token, second.Token)
	h0 := e.h.hashes.Load()
	_, err := e.a.ResetPassword(ctx, e.pool, first.Token, "another fine passphrase", client)
	require.ErrorIs(t, err, auth.ErrTokenUsed)
	_, err = e.a.ResetPassword(ctx, e.pool, strings.Repeat("A", 43), "another fine passphrase", client)
	require.ErrorIs(t, err, auth.ErrInvalidToken)
	assert.Equal(t, h0, e.h.hashes.Load(), "dead tokens cost no hashing")

	// A weak password does not burn the token.
	_, err = e.a.ResetPassword(ctx, e.pool, second.Token, "password", client)
	require.ErrorIs(t, err, auth.ErrWeakPassword)
	// A verification token is not a reset token.
	require.NoError(t, e.a.RequestEmailVerification(ctx, e.pool, u.ID, client))
	verify := e.mail.last(t)
	_, err = e.a.ResetPassword(ctx, e.pool, verify.Token, "another fine passphrase", client)
	require.ErrorIs(t, err, auth.ErrInvalidToken)

	id, err := e.a.ResetPassword(ctx, e.pool, second.Token, "another fine passphrase", client)
	require.NoError(t, err)
	assert.Equal(t, u.ID, id)
	_, err = e.a.ValidateSession(ctx, e.pool, s.Token)
	require.ErrorIs(t, err, auth.ErrInvalidToken, "a reset revokes every session")
	_, err = e.a.ResetPassword(ctx, e.pool, second.Token, "yet another passphrase", client)
	require.ErrorIs(t, err, auth.ErrTokenUsed)
	e.login(t, "reset@example.com", "another fine passphrase")

	// Expired.
	require.NoError(t, e.a.RequestPasswordReset(ctx, e.pool, "reset@example.com", client))
	third := e.mail.last(t)
	e.exec(t, `UPDATE justpg.auth_tokens SET expires_at = now() - interval '1 second' WHERE used_at IS NULL`)
	_, err = e.a.ResetPassword(ctx, e.pool, third.Token, "yet another passphrase", client)
	require.ErrorIs(t, err, auth.ErrTokenExpired)
	e.login(t, "reset@example.com", "another fine passphrase")
}

func TestConcurrentResetTokenConsumption(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.signUp(t, "race@example.com")
	require.NoError(t, e.a.RequestPasswordReset(ctx, e.pool, "race@example.com", client))
	tok := e.mail.last(t).Token

	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = e.a.ResetPassword(ctx, e.pool, tok, "winner passphrase "+string(rune('a'+i)), client)
		})
	}
	close(start)
	wg.Wait()
	wins := 0
	winner := -1
	for i, err := range errs {
		if err == nil {
			wins++
			winner = i
			continue
		}
		require.ErrorIs(t, err, auth.ErrTokenUsed)
	}
	require.Equal(t, 1, wins, "exactly one use wins")
	e.login(t, "race@example.com", "winner passphrase "+string(rune('a'+winner)))
	assert.Equal(t, 1, e.count(t, `SELECT count(*) FROM justpg.auth_audit WHERE event = 'password_reset'`))
}

func TestVerifyEmail(t *testing.T) {
	t.Parallel()
	e := setup(t)
	u := e.signUp(t, "verify@example.com")
	other := e.signUp(t, "verify2@example.com")
	require.NoError(t, e.a.RequestEmailVerification(ctx, e.pool, u.ID, client))
	m := e.mail.last(t)
	assert.Equal(t, auth.PurposeVerifyEmail, m.Purpose)

	id, err := e.a.VerifyEmail(ctx, e.pool, m.Token, client)
	require.NoError(t, err)
	assert.Equal(t, u.ID, id)
	got, err := e.a.User(ctx, e.pool, u.ID)
	require.NoError(t, err)
	require.NotNil(t, got.EmailVerifiedAt)
	_, err = e.a.VerifyEmail(ctx, e.pool, m.Token, client)
	require.ErrorIs(t, err, auth.ErrTokenUsed)

	// Each token verifies only its own user.
	o, err := e.a.User(ctx, e.pool, other.ID)
	require.NoError(t, err)
	assert.Nil(t, o.EmailVerifiedAt)

	// A reset token does not verify.
	require.NoError(t, e.a.RequestPasswordReset(ctx, e.pool, "verify2@example.com", client))
	_, err = e.a.VerifyEmail(ctx, e.pool, e.mail.last(t).Token, client)
	require.ErrorIs(t, err, auth.ErrInvalidToken)

	require.ErrorIs(t, e.a.RequestEmailVerification(ctx, e.pool, "00000000-0000-0000-0000-000000000000", client), auth.ErrNotFound)
}

func TestNoMailerIsAnError(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *auth.Config) { c.Mailer = nil })
	u := e.signUp(t, "nomail@example.com")
	require.ErrorIs(t, e.a.RequestPasswordReset(ctx, e.pool, "nomail@example.com", client), auth.ErrNoMailer)
	require.ErrorIs(t, e.a.RequestPasswordReset(ctx, e.pool, "unknown@example.com", client), auth.ErrNoMailer)
	require.ErrorIs(t, e.a.RequestEmailVerification(ctx, e.pool, u.ID, client), auth.ErrNoMailer)
	assert.Equal(t, 0, e.count(t, `SELECT count(*) FROM justpg.auth_tokens`))
}
