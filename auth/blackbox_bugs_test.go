//go:build blackboxbugs

package auth_test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"net/http"
	"net/http/httptest"
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

// The package documents tenant isolation by row-level security on its
// tables, with operations run in a tenant-scoped transaction. Middleware,
// though, resolves cookies and API keys on the DB given to New, with no way
// to scope the lookup to the request's tenant: under the documented set-up
// (RLS on the auth tables, an application role subject to it) every valid
// session is dropped as invalid and its cookie cleared, and ValidateAPIKey
// likewise fails. (With a role that bypasses RLS instead, a session of
// tenant A is accepted on any tenant's request, and Principal carries no
// tenant to check.)
func TestBlackboxMiddlewareUnderTenantRLS(t *testing.T) {
	t.Parallel()
	e := setup(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	role := "auth_bb_" + hex.EncodeToString(b)
	qrole := pgx.Identifier{role}.Sanitize()
	e.exec(t, `CREATE ROLE `+qrole+` LOGIN PASSWORD 'pw-`+role+`'`)
	t.Cleanup(func() {
		_, _ = e.pool.Exec(ctx, `DROP OWNED BY `+qrole)
		_, _ = e.pool.Exec(ctx, `DROP ROLE `+qrole)
	})
	e.exec(t, `GRANT USAGE ON SCHEMA justpg TO `+qrole)
	e.exec(t, `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA justpg TO `+qrole)
	for _, tbl := range []string{"auth_users", "auth_sessions", "auth_tokens", "auth_api_keys", "auth_recovery_codes", "auth_audit"} {
		e.exec(t, `ALTER TABLE justpg.`+tbl+` ENABLE ROW LEVEL SECURITY`)
		e.exec(t, `CREATE POLICY tenant ON justpg.`+tbl+` USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid))`)
	}
	cfg, err := pgxpool.ParseConfig(e.db.URL)
	require.NoError(t, err)
	cfg.ConnConfig.User, cfg.ConnConfig.Password = role, "pw-"+role
	app, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(app.Close)

	a, err := auth.New(app, auth.Config{Hasher: e.h, Mailer: e.mail, IPLimit: -1, InsecureCookie: true, CookieName: "session"})
	require.NoError(t, err)
	const tenant = "0a0a0a0a-0000-4000-8000-00000000000a"
	var token string
	tx, err := app.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true)`, tenant)
	require.NoError(t, err)
	_, err = a.SignUp(ctx, tx, "rls@example.com", goodPW, client)
	require.NoError(t, err)
	res, err := a.Login(ctx, tx, auth.Credentials{Email: "rls@example.com", Password: goodPW}, client)
	require.NoError(t, err)
	token = res.Token
	require.NoError(t, tx.Commit(ctx))

	var got *auth.Principal
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = auth.PrincipalFrom(r.Context()) }))
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(&http.Cookie{Name: "session", Value: token})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	assert.NotNil(t, got, "a valid session of the tenant is treated as anonymous")
	assert.Empty(t, rec.Header().Values("Set-Cookie"), "the valid session cookie is cleared")
}
