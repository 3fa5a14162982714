package auth_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/auth"
)

func TestAPIKeys(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *auth.Config) { c.APIKeyPrefix = "acme" })
	u := e.signUp(t, "keys@example.com")
	other := e.signUp(t, "keys2@example.com")

	secret, key, err := e.a.CreateAPIKey(ctx, e.pool, u.ID, "CI deploy", []string{"deploy:write", "repo.read"}, 0, client)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(secret, "acme_"), secret)
	assert.Len(t, secret, len("acme_")+43)
	assert.Equal(t, "acme_…"+secret[len(secret)-4:], key.Hint)
	assert.Nil(t, key.ExpiresAt)
	assert.Equal(t, 0, e.count(t, `SELECT count(*) FROM justpg.auth_api_keys WHERE position($1 in encode(key_hash, 'hex') || hint) > 0`, secret[5:]),
		"the secret is not stored")

	p, err := e.a.ValidateAPIKey(ctx, e.pool, secret)
	require.NoError(t, err)
	assert.Equal(t, u.ID, p.User.ID)
	assert.Nil(t, p.Session)
	assert.True(t, p.HasScope("deploy:write"))
	assert.True(t, p.HasScope("repo.read"))
	assert.False(t, p.HasScope("admin"))
	assert.False(t, p.HasScope("deploy"))
	require.NotNil(t, p.APIKey.LastUsedAt, "last use is tracked")
	first := *p.APIKey.LastUsedAt
	p, err = e.a.ValidateAPIKey(ctx, e.pool, secret)
	require.NoError(t, err)
	assert.Equal(t, first, *p.APIKey.LastUsedAt, "written at most once per interval")

	// Bad scopes and names are refused, nothing stored.
	before := e.snapshot(t)
	for _, s := range []string{"", "Admin", "a b", "x;drop", strings.Repeat("a", 65), "ü"} {
		_, _, err := e.a.CreateAPIKey(ctx, e.pool, u.ID, "k", []string{s}, 0, client)
		require.ErrorIs(t, err, auth.ErrInvalidScope, s)
	}
	_, _, err = e.a.CreateAPIKey(ctx, e.pool, u.ID, "", nil, 0, client)
	require.ErrorIs(t, err, auth.ErrInvalidInput)
	_, _, err = e.a.CreateAPIKey(ctx, e.pool, u.ID, "a\x00b", nil, 0, client)
	require.ErrorIs(t, err, auth.ErrInvalidInput)
	_, _, err = e.a.CreateAPIKey(ctx, e.pool, "00000000-0000-0000-0000-000000000000", "k", nil, 0, client)
	require.ErrorIs(t, err, auth.ErrNotFound)
	assert.Equal(t, before, e.snapshot(t))

	// Malformed keys.
	for _, bad := range []string{"", "acme_", secret[:len(secret)-1], "jpk_" + secret[5:], secret + "x", "Bearer " + secret,
		strings.Replace(secret, "acme_", "ACME_", 1), "acme_" + strings.Repeat("A", 43)} {
		_, err := e.a.ValidateAPIKey(ctx, e.pool, bad)
		require.ErrorIs(t, err, auth.ErrInvalidToken, bad)
	}

	// Another user's key cannot be revoked; revoking works on the next use.
	require.ErrorIs(t, e.a.RevokeAPIKey(ctx, e.pool, other.ID, key.ID, client), auth.ErrNotFound)
	_, err = e.a.ValidateAPIKey(ctx, e.pool, secret)
	require.NoError(t, err)
	require.NoError(t, e.a.RevokeAPIKey(ctx, e.pool, u.ID, key.ID, client))
	_, err = e.a.ValidateAPIKey(ctx, e.pool, secret)
	require.ErrorIs(t, err, auth.ErrInvalidToken)
	require.ErrorIs(t, e.a.RevokeAPIKey(ctx, e.pool, u.ID, key.ID, client), auth.ErrNotFound)

	// Expiry.
	secret2, key2, err := e.a.CreateAPIKey(ctx, e.pool, u.ID, "short", []string{"repo.read"}, time.Hour, client)
	require.NoError(t, err)
	require.NotNil(t, key2.ExpiresAt)
	_, err = e.a.ValidateAPIKey(ctx, e.pool, secret2)
	require.NoError(t, err)
	e.exec(t, `UPDATE justpg.auth_api_keys SET expires_at = now() - interval '1 second' WHERE id = $1`, key2.ID)
	_, err = e.a.ValidateAPIKey(ctx, e.pool, secret2)
	require.ErrorIs(t, err, auth.ErrTokenExpired)

	keys, err := e.a.APIKeys(ctx, e.pool, u.ID)
	require.NoError(t, err)
	require.Len(t, keys, 2)
	assert.Equal(t, "short", keys[0].Name)
	assert.NotNil(t, keys[1].RevokedAt)
	keys, err = e.a.APIKeys(ctx, e.pool, other.ID)
	require.NoError(t, err)
	assert.Empty(t, keys)

	events := e.count(t, `SELECT count(*) FROM justpg.auth_audit WHERE user_id = $1 AND event IN ('api_key_created', 'api_key_revoked')`, u.ID)
	assert.Equal(t, 3, events)
}
