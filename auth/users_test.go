package auth_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/auth"
	"github.com/justpg/justpg/internal/pgtest"
)

func TestSignUpLoginEndToEnd(t *testing.T) {
	t.Parallel()
	e := setup(t)
	u, err := e.a.SignUp(ctx, e.pool, "  Alice@Example.COM ", goodPW, client)
	require.NoError(t, err)
	assert.Equal(t, "alice@example.com", u.Email)
	assert.Nil(t, u.EmailVerifiedAt)

	_, err = e.a.SignUp(ctx, e.pool, "ALICE@example.com", goodPW, client)
	require.ErrorIs(t, err, auth.ErrEmailTaken)

	res := e.login(t, "alice@EXAMPLE.com", goodPW)
	assert.Equal(t, u.ID, res.User.ID)
	assert.Len(t, res.Token, 43)
	assert.Equal(t, "192.0.2.10", res.Session.IP.String())
	assert.Equal(t, "test-agent/1.0", res.Session.UserAgent)

	// Only the SHA-256 of the token is stored.
	assert.Equal(t, 0, e.count(t, `SELECT count(*) FROM justpg.auth_sessions WHERE encode(token_hash, 'escape') LIKE '%' || $1 || '%'`, res.Token))
	assert.Equal(t, 1, e.count(t, `SELECT count(*) FROM justpg.auth_sessions WHERE token_hash = sha256(decode(translate($1, '-_', '+/') || '=', 'base64'))`, res.Token))

	p, err := e.a.ValidateSession(ctx, e.pool, res.Token)
	require.NoError(t, err)
	assert.Equal(t, u.ID, p.User.ID)
	assert.Equal(t, "alice@example.com", p.User.Email)
	assert.True(t, p.HasScope("anything"), "sessions act with all of the user's rights")

	// A second log-in is a new session with a new token.
	res2 := e.login(t, "alice@example.com", goodPW)
	assert.NotEqual(t, res.Token, res2.Token)
	assert.NotEqual(t, res.Session.ID, res2.Session.ID)

	require.NoError(t, e.a.Logout(ctx, e.pool, res.Token, client))
	_, err = e.a.ValidateSession(ctx, e.pool, res.Token)
	require.ErrorIs(t, err, auth.ErrInvalidToken)
	require.ErrorIs(t, e.a.Logout(ctx, e.pool, res.Token, client), auth.ErrInvalidToken)

	events := map[auth.Event]int{}
	log, err := e.a.AuditLog(ctx, e.pool, u.ID, 100)
	require.NoError(t, err)
	for _, l := range log {
		events[l.Event]++
		assert.Equal(t, "192.0.2.10", l.IP.String())
	}
	assert.Equal(t, map[auth.Event]int{auth.EventSignUp: 1, auth.EventLogin: 2, auth.EventLogout: 1}, events)

	// Deleting the account removes its sessions; the audit log remains.
	require.NoError(t, e.a.DeleteUser(ctx, e.pool, u.ID, client))
	_, err = e.a.ValidateSession(ctx, e.pool, res2.Token)
	require.ErrorIs(t, err, auth.ErrInvalidToken)
	require.ErrorIs(t, e.a.DeleteUser(ctx, e.pool, u.ID, client), auth.ErrNotFound)
	log, err = e.a.AuditLog(ctx, e.pool, u.ID, 100)
	require.NoError(t, err)
	require.Len(t, log, 5)
	assert.Equal(t, auth.EventUserDeleted, log[0].Event)
	_, err = e.a.Login(ctx, e.pool, auth.Credentials{Email: "alice@example.com", Password: goodPW}, client)
	require.ErrorIs(t, err, auth.ErrInvalidCredentials)
}

func TestPasswordPolicy(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *auth.Config) { c.MinPasswordLength = 10 })
	cases := map[string]string{
		"too short":          "abcdefghi",
		"common":             "Password123",
		"common (lower)":     "QWERTYUIOP",
		"e-mail":             "Patrick.Smith@example.org",
		"e-mail local part":  "patrick.smith",
		"nul":                "abcdefghij\x00kl",
		"invalid utf-8":      "abcdefghij\xff",
		"only spaces":        strings.Repeat(" ", 12),
		"over 1 KiB":         strings.Repeat("x", auth.MaxPasswordBytes+1),
		"over 1 KiB unicode": strings.Repeat("é", auth.MaxPasswordBytes/2+1),
	}
	for name, pw := range cases {
		err := e.a.CheckPassword(pw, "patrick.smith@example.org")
		require.ErrorIs(t, err, auth.ErrWeakPassword, name)
		var pe *auth.PasswordError
		require.True(t, errors.As(err, &pe), name)
		_, err = e.a.SignUp(ctx, e.pool, "patrick.smith@example.org", pw, client)
		require.ErrorIs(t, err, auth.ErrWeakPassword, name)
	}
	require.ErrorIs(t, e.a.CheckPassword("password12", ""), auth.ErrWeakPassword)
	// No composition rules; long and Unicode passwords are fine.
	for _, pw := range []string{
		"all lower case words here",
		strings.Repeat("z", 64),
		strings.Repeat("y", auth.MaxPasswordBytes),
		"пароль-очень-длинный",
		"パスワードはとても長い",
		"'; DROP TABLE auth_users; --",
	} {
		require.NoError(t, e.a.CheckPassword(pw, "patrick.smith@example.org"), pw)
	}
	assert.Equal(t, 0, e.count(t, "SELECT count(*) FROM justpg.auth_users"))
	_, err := e.a.SignUp(ctx, e.pool, "patrick.smith@example.org", "'; DROP TABLE auth_users; --", client)
	require.NoError(t, err)
	e.login(t, "patrick.smith@example.org", "'; DROP TABLE auth_users; --")
	// NFKC: the full-width form of a password logs in as the plain form.
	_, err = e.a.SignUp(ctx, e.pool, "wide@example.org", "ｗｉｄｅ ｐａｓｓｗｏｒｄ 1", client)
	require.NoError(t, err)
	e.login(t, "wide@example.org", "wide password 1")
}

// TestLoginDoesEqualWork shows that unknown e-mails, malformed input, wrong
// passwords and locked accounts cost exactly one password verification and
// return the same error, so neither the answer nor the work reveals whether
// an account exists.
func TestLoginDoesEqualWork(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *auth.Config) { c.LockoutThreshold = 10 })
	e.signUp(t, "known@example.com")
	locked := e.signUp(t, "locked@example.com")
	e.exec(t, `UPDATE justpg.auth_users SET locked_until = now() + interval '1 hour' WHERE id = $1`, locked.ID)

	attempts := map[string]auth.Credentials{
		"unknown e-mail":     {Email: "nobody@example.com", Password: goodPW},
		"malformed e-mail":   {Email: "not an e-mail", Password: goodPW},
		"wrong password":     {Email: "known@example.com", Password: "wrong password!"},
		"locked, right pw":   {Email: "locked@example.com", Password: goodPW},
		"locked, wrong pw":   {Email: "locked@example.com", Password: "wrong password!"},
		"over-long password": {Email: "known@example.com", Password: strings.Repeat("p", 1<<20)},
		"nul in password":    {Email: "known@example.com", Password: "correct horse\x00battery staple"},
		"sql in e-mail":      {Email: "' OR 1=1 --@example.com", Password: goodPW},
	}
	for name, cr := range attempts {
		h0, v0 := e.h.hashes.Load(), e.h.verifies.Load()
		_, err := e.a.Login(ctx, e.pool, cr, client)
		require.ErrorIs(t, err, auth.ErrInvalidCredentials, name)
		assert.Equal(t, auth.ErrInvalidCredentials.Error(), err.Error(), name)
		assert.Equal(t, int64(1), e.h.verifies.Load()-v0, "%s: verifications", name)
		assert.Equal(t, int64(0), e.h.hashes.Load()-h0, "%s: hashes", name)
	}
	// The successful path does the same single verification.
	v0 := e.h.verifies.Load()
	e.login(t, "known@example.com", goodPW)
	assert.Equal(t, int64(1), e.h.verifies.Load()-v0)
}

func TestTransparentRehash(t *testing.T) {
	t.Parallel()
	e := setup(t)
	u := e.signUp(t, "old@example.com")
	var before string
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT password_hash FROM justpg.auth_users WHERE id = $1`, u.ID).Scan(&before))
	assert.True(t, strings.HasPrefix(before, "$argon2id$v=19$m=64,t=1,p=1$"), before)

	stronger := cheap
	stronger.Memory, stronger.Time = 128, 2
	h := newHasher(t, stronger)
	a2, err := auth.New(e.pool, auth.Config{Hasher: h, IPLimit: -1})
	require.NoError(t, err)
	h0 := h.hashes.Load()
	_, err = a2.Login(ctx, e.pool, auth.Credentials{Email: "old@example.com", Password: goodPW}, client)
	require.NoError(t, err)
	assert.Equal(t, int64(1), h.hashes.Load()-h0, "one re-hash")
	var after string
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT password_hash FROM justpg.auth_users WHERE id = $1`, u.ID).Scan(&after))
	assert.True(t, strings.HasPrefix(after, "$argon2id$v=19$m=128,t=2,p=1$"), after)

	// Next log-in: already current, no re-hash; old hasher still verifies.
	_, err = a2.Login(ctx, e.pool, auth.Credentials{Email: "old@example.com", Password: goodPW}, client)
	require.NoError(t, err)
	assert.Equal(t, int64(1), h.hashes.Load()-h0)
	e.login(t, "old@example.com", goodPW)
}

func TestOWASPDefaultHasher(t *testing.T) {
	t.Parallel()
	// The zero Config hashes at OWASP's parameters.
	a, err := auth.New(pgtest.NewDB(t).Pool, auth.Config{})
	require.NoError(t, err)
	h, ok := a.Config().Hasher.(*auth.Argon2id)
	require.True(t, ok)
	assert.Equal(t, auth.Argon2Params{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}, h.Params())
	enc, err := h.Hash(ctx, []byte(goodPW))
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(enc, "$argon2id$v=19$m=19456,t=2,p=1$"), enc)
	ok, rehash, err := h.Verify(ctx, []byte(goodPW), enc)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.False(t, rehash)
}

func TestMalformedHashes(t *testing.T) {
	t.Parallel()
	h, err := auth.NewArgon2id(cheap)
	require.NoError(t, err)
	for _, enc := range []string{
		"", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=18$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=0,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1,x=2$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1$!!!$aGFzaGhhc2hoYXNoaGFzaA",
		"$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$",
		"bcrypt$2a$10$abc",
	} {
		_, _, err := h.Verify(ctx, []byte("x"), enc)
		require.ErrorIs(t, err, auth.ErrMalformedHash, enc)
	}
}
