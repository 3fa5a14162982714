package auth_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/auth"
)

var badEmails = []string{
	"", " ", "plain", "@example.com", "a@", "a@@example.com", "a@b@example.com", "a b@example.com",
	"a@exa mple.com", "a\x00@example.com", "a@example.com\x00", "\xff@example.com", "a@-example.com",
	"a@example-.com", "a@example..com", ".a@example.com", "a.@example.com", "a..b@example.com",
	"\"quoted\"@example.com", "a@[127.0.0.1]", "Bob <bob@example.com>", "a@example.com, b@example.com",
	"'; DROP TABLE justpg.auth_users; --", "x' OR '1'='1@example.com", "a@example.com;--",
	strings.Repeat("a", 65) + "@example.com", "a@" + strings.Repeat("b", 64) + ".com",
	strings.Repeat("a", 60) + "@" + strings.Repeat(strings.Repeat("d", 60)+".", 4) + "com",
	strings.Repeat("x", 1<<20), "a@exam\u200bple.com", "a\u202e@example.com", "a@exa\nmple.com",
}

func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	e := setup(t)
	u := e.signUp(t, "victim@example.com")
	other := e.signUp(t, "other@example.com")
	s := e.login(t, "victim@example.com", goodPW)
	os := e.login(t, "other@example.com", goodPW)
	require.NoError(t, e.a.RequestPasswordReset(ctx, e.pool, "victim@example.com", client))
	reset := e.mail.last(t).Token
	_, key, err := e.a.CreateAPIKey(ctx, e.pool, other.ID, "k", nil, 0, client)
	require.NoError(t, err)
	before := e.snapshot(t)

	for _, em := range badEmails {
		_, err := e.a.SignUp(ctx, e.pool, em, goodPW, client)
		require.ErrorIs(t, err, auth.ErrInvalidEmail, "%q", em)
		_, err = e.a.UserByEmail(ctx, e.pool, em)
		require.ErrorIs(t, err, auth.ErrInvalidEmail, "%q", em)
	}
	badTokens := []string{
		"", "x", reset[:42], reset + "x", reset[:42] + "=", strings.ToUpper(reset), " " + reset[1:],
		reset[:20] + "\x00" + reset[21:], strings.Repeat("A", 43), strings.Repeat("/", 43),
		"'; UPDATE justpg.auth_users SET email='x'; --", strings.Repeat("é", 43), strings.Repeat("t", 1<<16),
	}
	for _, tok := range badTokens {
		_, err := e.a.ResetPassword(ctx, e.pool, tok, "valid new passphrase", client)
		require.ErrorIs(t, err, auth.ErrInvalidToken, "%q", tok)
		_, err = e.a.VerifyEmail(ctx, e.pool, tok, client)
		require.ErrorIs(t, err, auth.ErrInvalidToken, "%q", tok)
		_, err = e.a.ValidateSession(ctx, e.pool, tok)
		require.ErrorIs(t, err, auth.ErrInvalidToken, "%q", tok)
		require.ErrorIs(t, e.a.Logout(ctx, e.pool, tok, client), auth.ErrInvalidToken, "%q", tok)
		_, err = e.a.RotateSession(ctx, e.pool, tok, client)
		require.ErrorIs(t, err, auth.ErrInvalidToken, "%q", tok)
		_, err = e.a.ValidateAPIKey(ctx, e.pool, tok)
		require.ErrorIs(t, err, auth.ErrInvalidToken, "%q", tok)
	}
	// A session token is not a reset token and vice versa.
	_, err = e.a.ResetPassword(ctx, e.pool, s.Token, "valid new passphrase", client)
	require.ErrorIs(t, err, auth.ErrInvalidToken)
	_, err = e.a.ValidateSession(ctx, e.pool, reset)
	require.ErrorIs(t, err, auth.ErrInvalidToken)
	_, err = e.a.ValidateAPIKey(ctx, e.pool, "jpk_"+s.Token)
	require.ErrorIs(t, err, auth.ErrInvalidToken)

	// Ids that are malformed or belong to another user.
	for _, id := range []string{"", "1", "'; --", strings.Repeat("0", 36), "00000000-0000-0000-0000-00000000000g", other.ID + "\x00"} {
		_, err := e.a.User(ctx, e.pool, id)
		require.ErrorIs(t, err, auth.ErrNotFound, "%q", id)
		require.ErrorIs(t, e.a.RevokeSession(ctx, e.pool, u.ID, id, client), auth.ErrNotFound, "%q", id)
		require.ErrorIs(t, e.a.RevokeAPIKey(ctx, e.pool, u.ID, id, client), auth.ErrNotFound, "%q", id)
		_, err = e.a.Sessions(ctx, e.pool, id)
		require.ErrorIs(t, err, auth.ErrNotFound, "%q", id)
		require.ErrorIs(t, e.a.DeleteUser(ctx, e.pool, id, client), auth.ErrNotFound, "%q", id)
	}
	require.ErrorIs(t, e.a.RevokeSession(ctx, e.pool, u.ID, os.Session.ID, client), auth.ErrNotFound)
	require.ErrorIs(t, e.a.RevokeAPIKey(ctx, e.pool, u.ID, key.ID, client), auth.ErrNotFound)
	require.ErrorIs(t, e.a.ChangePassword(ctx, e.pool, "nope", goodPW, "valid new passphrase", "", client), auth.ErrNotFound)
	_, err = e.a.AuditLog(ctx, e.pool, u.ID, 0)
	require.ErrorIs(t, err, auth.ErrInvalidInput)
	_, err = e.a.Cleanup(ctx, e.pool, -1)
	require.ErrorIs(t, err, auth.ErrInvalidInput)

	assert.Equal(t, before, e.snapshot(t), "bad input changed nothing")
	// And the real credentials still work.
	_, err = e.a.ValidateSession(ctx, e.pool, s.Token)
	require.NoError(t, err)
	_, err = e.a.ResetPassword(ctx, e.pool, reset, "valid new passphrase", client)
	require.NoError(t, err)
}

func TestNormalizeEmail(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"Alice@Example.COM":        "alice@example.com",
		"  bob@example.com\t":      "bob@example.com",
		"o'brien+tag@example.ie":   "o'brien+tag@example.ie",
		"ÉLODIE@exemple.fr":        "élodie@exemple.fr",
		"E\u0301lodie@exemple.fr":  "élodie@exemple.fr", // NFC
		"用户@例子.广告":                 "用户@例子.广告",
		"a@localhost":              "a@localhost",
		"first.last@sub.example.x": "first.last@sub.example.x",
	} {
		got, err := auth.NormalizeEmail(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range badEmails {
		_, err := auth.NormalizeEmail(in)
		require.ErrorIs(t, err, auth.ErrInvalidEmail, "%q", in)
	}
}
