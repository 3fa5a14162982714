package auth_test

import (
	"io/fs"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/auth"
	"github.com/justpg/justpg/internal/pgtest"
)

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewDB(t).Pool
	h := newHasher(t, cheap)
	_, err := auth.New(nil, auth.Config{Hasher: h})
	require.ErrorIs(t, err, auth.ErrInvalidInput)
	for name, cfg := range map[string]auth.Config{
		"negative idle":          {SessionIdleTimeout: -time.Second},
		"idle beyond absolute":   {SessionIdleTimeout: 48 * time.Hour, SessionAbsoluteTimeout: time.Hour},
		"lockout max below base": {LockoutBase: time.Hour, LockoutMax: time.Minute},
		"min length too big":     {MinPasswordLength: 65},
		"negative threshold":     {LockoutThreshold: -1},
		"prefix with underscore": {APIKeyPrefix: "my_key"},
		"prefix too long":        {APIKeyPrefix: "abcdefghijklmnopq"},
		"insecure __Host-":       {InsecureCookie: true},
	} {
		cfg.Hasher = h
		_, err := auth.New(pool, cfg)
		require.ErrorIs(t, err, auth.ErrInvalidInput, name)
	}
	_, err = auth.New(pool, auth.Config{Hasher: h, Schema: "bad\x00schema"})
	require.Error(t, err)
	_, err = auth.NewArgon2id(auth.Argon2Params{Memory: 64, Time: 0, Threads: 1, SaltLen: 16, KeyLen: 32})
	require.ErrorIs(t, err, auth.ErrInvalidInput)
	_, err = auth.NewArgon2idLimit(cheap, 0)
	require.ErrorIs(t, err, auth.ErrInvalidInput)

	a, err := auth.New(pool, auth.Config{Hasher: h, InsecureCookie: true, CookieName: "dev_session"})
	require.NoError(t, err)
	c := a.Config()
	assert.Equal(t, 12*time.Hour, c.SessionIdleTimeout)
	assert.Equal(t, 7*24*time.Hour, c.SessionAbsoluteTimeout)
	assert.Equal(t, 8, c.MinPasswordLength)
	assert.Equal(t, "jpk", c.APIKeyPrefix)
}

func TestCustomSchemaAndMigrations(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	const schema = `Auth "Tenant" Schema`
	require.NoError(t, auth.MigrateSchema(ctx, db.Pool, schema))
	require.NoError(t, auth.MigrateSchema(ctx, db.Pool, schema), "idempotent")
	a, err := auth.New(db.Pool, auth.Config{Hasher: newHasher(t, cheap), Schema: schema, IPLimit: 5})
	require.NoError(t, err)
	_, err = a.SignUp(ctx, db.Pool, "schema@example.com", goodPW, client)
	require.NoError(t, err)
	res, err := a.Login(ctx, db.Pool, auth.Credentials{Email: "schema@example.com", Password: goodPW}, client)
	require.NoError(t, err)
	_, err = a.ValidateSession(ctx, db.Pool, res.Token)
	require.NoError(t, err)
	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM "Auth ""Tenant"" Schema".auth_sessions`).Scan(&n))
	assert.Equal(t, 1, n)
	var exists bool
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT to_regclass('justpg.auth_users') IS NOT NULL`).Scan(&exists))
	assert.False(t, exists, "nothing in the default schema")

	files, err := fs.Glob(auth.Migrations(), "*.sql")
	require.NoError(t, err)
	assert.Equal(t, []string{"001_auth.sql"}, files)
}
