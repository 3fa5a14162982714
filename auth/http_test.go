package auth_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/auth"
)

// app is a minimal application around the package's middleware.
func app(e *env) http.Handler {
	a := e.a
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		res, err := a.Login(r.Context(), e.pool, auth.Credentials{
			Email: r.FormValue("email"), Password: r.FormValue("password"),
		}, auth.ClientFromRequest(r))
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		a.SetSessionCookie(w, res.Token, res.Session)
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		_ = a.Logout(r.Context(), e.pool, a.SessionToken(r), auth.ClientFromRequest(r))
		a.ClearSessionCookie(w)
	})
	mux.Handle("GET /me", auth.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, auth.PrincipalFrom(r.Context()).User.Email)
	})))
	mux.Handle("POST /me/rename", auth.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "renamed")
	})))
	mux.Handle("GET /reports", auth.RequireScope("reports:read", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "reports for "+auth.PrincipalFrom(r.Context()).User.Email)
	})))
	return auth.Protect(a.Middleware(mux))
}

func do(t *testing.T, c *http.Client, req *http.Request) (int, string) {
	t.Helper()
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	require.NoError(t, err)
	return do(t, c, req)
}

func post(t *testing.T, c *http.Client, u string, form url.Values) (int, string) {
	t.Helper()
	req, err := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(t, c, req)
}

func TestMiddlewareWithRealClient(t *testing.T) {
	t.Parallel()
	e := setup(t)
	u := e.signUp(t, "web@example.com")
	srv := httptest.NewTLSServer(app(e))
	defer srv.Close()

	browser := func() *http.Client {
		jar, err := cookiejar.New(nil)
		require.NoError(t, err)
		// srv.Client() is one shared client: each browser gets its own.
		return &http.Client{Transport: srv.Client().Transport, Jar: jar}
	}
	c := browser()

	code, _ := get(t, c, srv.URL+"/me")
	assert.Equal(t, http.StatusUnauthorized, code)
	code, body := post(t, c, srv.URL+"/login", url.Values{"email": {"web@example.com"}, "password": {"wrong password"}})
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.Equal(t, auth.ErrInvalidCredentials.Error(), body)

	// Log in: the cookie has the safe attributes.
	resp, err := c.PostForm(srv.URL+"/login", url.Values{"email": {"WEB@example.com"}, "password": {goodPW}})
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var ck *http.Cookie
	for _, k := range resp.Cookies() {
		if k.Name == "__Host-session" {
			ck = k
		}
	}
	require.NotNil(t, ck, "session cookie set")
	assert.True(t, ck.HttpOnly)
	assert.True(t, ck.Secure)
	assert.Equal(t, http.SameSiteLaxMode, ck.SameSite)
	assert.Equal(t, "/", ck.Path)
	assert.Empty(t, ck.Domain)

	code, body = get(t, c, srv.URL+"/me")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "web@example.com", body)
	// Sessions may use any scope of their user.
	code, _ = get(t, c, srv.URL+"/reports")
	assert.Equal(t, http.StatusOK, code)

	// Same-origin POST passes CSRF protection; a cross-site one is refused.
	req, _ := http.NewRequest("POST", srv.URL+"/me/rename", nil)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	code, body = do(t, c, req)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "renamed", body)
	req, _ = http.NewRequest("POST", srv.URL+"/me/rename", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	code, _ = do(t, c, req)
	assert.Equal(t, http.StatusForbidden, code)
	req, _ = http.NewRequest("POST", srv.URL+"/me/rename", nil)
	req.Header.Set("Origin", "https://evil.example")
	code, _ = do(t, c, req)
	assert.Equal(t, http.StatusForbidden, code)

	// Revocation from elsewhere is effective on the very next request.
	other := browser()
	code, _ = post(t, other, srv.URL+"/login", url.Values{"email": {"web@example.com"}, "password": {goodPW}})
	require.Equal(t, http.StatusOK, code)
	_, err = e.a.RevokeSessions(ctx, e.pool, u.ID, "", client)
	require.NoError(t, err)
	code, _ = get(t, c, srv.URL+"/me")
	assert.Equal(t, http.StatusUnauthorized, code)
	code, _ = get(t, other, srv.URL+"/me")
	assert.Equal(t, http.StatusUnauthorized, code)
	// The dead cookie was cleared.
	su, _ := url.Parse(srv.URL)
	assert.Empty(t, c.Jar.Cookies(su))

	// Log in and out again.
	code, _ = post(t, c, srv.URL+"/login", url.Values{"email": {"web@example.com"}, "password": {goodPW}})
	require.Equal(t, http.StatusOK, code)
	code, _ = get(t, c, srv.URL+"/me")
	require.Equal(t, http.StatusOK, code)
	code, _ = post(t, c, srv.URL+"/logout", nil)
	require.Equal(t, http.StatusOK, code)
	code, _ = get(t, c, srv.URL+"/me")
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.Equal(t, 0, e.count(t, `SELECT count(*) FROM justpg.auth_sessions`))

	// Forged and garbage cookies are anonymous, never an error.
	for _, v := range []string{"x", strings.Repeat("A", 43), "'; DROP TABLE justpg.auth_users; --", strings.Repeat("z", 4000)} {
		req, _ := http.NewRequest("GET", srv.URL+"/me", nil)
		req.AddCookie(&http.Cookie{Name: "__Host-session", Value: url.QueryEscape(v)})
		code, _ := do(t, srv.Client(), req)
		assert.Equal(t, http.StatusUnauthorized, code, v)
	}
}

func TestMiddlewareBearerAPIKey(t *testing.T) {
	t.Parallel()
	e := setup(t)
	u := e.signUp(t, "api@example.com")
	srv := httptest.NewTLSServer(app(e))
	defer srv.Close()
	c := srv.Client()
	secret, key, err := e.a.CreateAPIKey(ctx, e.pool, u.ID, "reporting", []string{"reports:read"}, 0, client)
	require.NoError(t, err)
	weak, _, err := e.a.CreateAPIKey(ctx, e.pool, u.ID, "nothing", nil, 0, client)
	require.NoError(t, err)

	call := func(path, authz string) (int, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		return do(t, c, req)
	}
	code, body := call("/reports", "Bearer "+secret)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "reports for api@example.com", body)
	code, _ = call("/reports", "bearer "+secret)
	assert.Equal(t, http.StatusOK, code)
	code, _ = call("/reports", "Bearer "+weak)
	assert.Equal(t, http.StatusForbidden, code, "key without the scope")
	code, _ = call("/me", "Bearer "+weak)
	assert.Equal(t, http.StatusOK, code)
	code, _ = call("/reports", "")
	assert.Equal(t, http.StatusUnauthorized, code)
	for _, bad := range []string{"Bearer nope", "Basic dXNlcjpwYXNz", "Bearer " + secret[:20], "Bearer"} {
		code, _ = call("/me", bad)
		assert.Equal(t, http.StatusUnauthorized, code, bad)
	}
	// A cross-site POST with a bearer key is not a CSRF risk but is still
	// refused by the blanket protection only when a browser marks it.
	req, _ := http.NewRequest("POST", srv.URL+"/me/rename", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	code, _ = do(t, c, req)
	assert.Equal(t, http.StatusOK, code, "non-browser clients pass")

	require.NoError(t, e.a.RevokeAPIKey(ctx, e.pool, u.ID, key.ID, client))
	code, _ = call("/reports", "Bearer "+secret)
	assert.Equal(t, http.StatusUnauthorized, code, "revocation effective on the next request")
}

func TestMiddlewareDatabaseDown(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.signUp(t, "down@example.com")
	res := e.login(t, "down@example.com", goodPW)
	srv := httptest.NewTLSServer(app(e))
	defer srv.Close()
	e.pool.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/me", nil)
	req.AddCookie(&http.Cookie{Name: "__Host-session", Value: res.Token})
	code, body := do(t, srv.Client(), req)
	assert.Equal(t, http.StatusInternalServerError, code, "a database failure is not an anonymous request")
	assert.NotContains(t, body, "closed")
	_, err := e.a.ValidateSession(ctx, e.pool, res.Token)
	require.Error(t, err)
	assert.False(t, errors.Is(err, auth.ErrInvalidToken))
}
