package auth_test

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/auth"
)

// TestTenantIsolationWithRLS enables the tenancy convention's policies on
// the auth tables, runs the package's operations in tenant-scoped
// transactions under a non-superuser role, and shows that two tenants can
// hold the same e-mail address and cannot see each other's users or
// sessions.
func TestTenantIsolationWithRLS(t *testing.T) {
	t.Parallel()
	e := setup(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	role := "auth_tenant_" + hex.EncodeToString(b)
	qrole := pgx.Identifier{role}.Sanitize()
	e.exec(t, `CREATE ROLE `+qrole+` NOLOGIN`)
	t.Cleanup(func() { // roles are cluster-wide: leave none behind
		_, err := e.pool.Exec(ctx, `DROP OWNED BY `+qrole)
		assert.NoError(t, err)
		_, err = e.pool.Exec(ctx, `DROP ROLE `+qrole)
		assert.NoError(t, err)
	})
	e.exec(t, `GRANT USAGE ON SCHEMA justpg TO `+qrole)
	e.exec(t, `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA justpg TO `+qrole)
	for _, tbl := range []string{"auth_users", "auth_sessions", "auth_tokens", "auth_api_keys", "auth_recovery_codes", "auth_audit"} {
		e.exec(t, `ALTER TABLE justpg.`+tbl+` ENABLE ROW LEVEL SECURITY`)
		e.exec(t, `CREATE POLICY tenant ON justpg.`+tbl+` USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid))`)
	}
	const tenantA, tenantB = "0a0a0a0a-0000-4000-8000-00000000000a", "0b0b0b0b-0000-4000-8000-00000000000b"

	inTenant := func(tenant string, fn func(tx pgx.Tx)) {
		t.Helper()
		tx, err := e.pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(ctx) }()
		_, err = tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true)`, tenant)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, `SET LOCAL ROLE `+qrole)
		require.NoError(t, err)
		fn(tx)
		require.NoError(t, tx.Commit(ctx))
	}

	var userA, userB auth.User
	var tokA, tokB string
	inTenant(tenantA, func(tx pgx.Tx) {
		var err error
		userA, err = e.a.SignUp(ctx, tx, "same@example.com", goodPW, client)
		require.NoError(t, err)
		res, err := e.a.Login(ctx, tx, auth.Credentials{Email: "same@example.com", Password: goodPW}, client)
		require.NoError(t, err)
		tokA = res.Token
	})
	inTenant(tenantB, func(tx pgx.Tx) {
		var err error
		userB, err = e.a.SignUp(ctx, tx, "same@example.com", "tenant b passphrase", client)
		require.NoError(t, err, "the same address in another tenant is another account")
		res, err := e.a.Login(ctx, tx, auth.Credentials{Email: "same@example.com", Password: "tenant b passphrase"}, client)
		require.NoError(t, err)
		tokB = res.Token
		// Tenant A's password does not open tenant B's account.
		_, err = e.a.Login(ctx, tx, auth.Credentials{Email: "same@example.com", Password: goodPW}, client)
		require.ErrorIs(t, err, auth.ErrInvalidCredentials)
	})
	assert.NotEqual(t, userA.ID, userB.ID)

	inTenant(tenantB, func(tx pgx.Tx) {
		_, err := e.a.ValidateSession(ctx, tx, tokA)
		require.ErrorIs(t, err, auth.ErrInvalidToken, "A's session is invisible in B")
		_, err = e.a.ValidateSession(ctx, tx, tokB)
		require.NoError(t, err)
		_, err = e.a.User(ctx, tx, userA.ID)
		require.ErrorIs(t, err, auth.ErrNotFound)
		list, err := e.a.Sessions(ctx, tx, userA.ID)
		require.NoError(t, err)
		assert.Empty(t, list)
		require.ErrorIs(t, e.a.RevokeSession(ctx, tx, userA.ID, "00000000-0000-0000-0000-000000000000", client), auth.ErrNotFound)
		n, err := e.a.RevokeSessions(ctx, tx, userA.ID, "", client)
		require.NoError(t, err)
		assert.Zero(t, n, "B cannot revoke A's sessions")
		log, err := e.a.AuditLog(ctx, tx, "", 100)
		require.NoError(t, err)
		for _, l := range log {
			assert.NotEqual(t, userA.ID, l.UserID, "A's audit rows are invisible in B")
		}
	})
	inTenant(tenantA, func(tx pgx.Tx) {
		p, err := e.a.ValidateSession(ctx, tx, tokA)
		require.NoError(t, err, "A's session survived B's attempts")
		assert.Equal(t, userA.ID, p.User.ID)
		u, err := e.a.UserByEmail(ctx, tx, "same@example.com")
		require.NoError(t, err)
		assert.Equal(t, userA.ID, u.ID)
	})
	assert.Equal(t, 2, e.count(t, `SELECT count(DISTINCT tenant_id) FROM justpg.auth_sessions`), "rows are stamped with their tenant")

	// ScopedMiddleware looks the credentials up in the request's tenant
	// transaction: a session or API key of another tenant is unknown there.
	var keyA string
	inTenant(tenantA, func(tx pgx.Tx) {
		var err error
		keyA, _, err = e.a.CreateAPIKey(ctx, tx, userA.ID, "ci", []string{"read"}, 0, client)
		require.NoError(t, err)
	})
	mw := e.a.ScopedMiddleware(func(r *http.Request, fn func(auth.DB) error) error {
		var err error
		inTenant(r.Header.Get("X-Tenant"), func(tx pgx.Tx) { err = fn(tx) })
		return err
	})
	serve := func(tenant string, set func(*http.Request)) (*auth.Principal, *httptest.ResponseRecorder) {
		var got *auth.Principal
		h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = auth.PrincipalFrom(r.Context()) }))
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("X-Tenant", tenant)
		set(req)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return got, rec
	}
	cookie := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "__Host-session", Value: tok}) }
	}
	bearer := func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+keyA) }
	p, rec := serve(tenantA, cookie(tokA))
	if assert.NotNil(t, p, "A's session in A") {
		assert.Equal(t, userA.ID, p.User.ID)
	}
	assert.Empty(t, rec.Header().Values("Set-Cookie"))
	p, rec = serve(tenantB, cookie(tokA))
	assert.Nil(t, p, "A's session is anonymous in B")
	assert.NotEmpty(t, rec.Header().Values("Set-Cookie"), "and its cookie is cleared")
	p, rec = serve(tenantA, bearer)
	assert.Equal(t, http.StatusOK, rec.Code)
	if assert.NotNil(t, p, "A's API key in A") {
		assert.Equal(t, userA.ID, p.User.ID)
	}
	_, rec = serve(tenantB, bearer)
	assert.Equal(t, http.StatusUnauthorized, rec.Code, "A's API key in B")
}
