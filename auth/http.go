package auth

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

type ctxKey struct{}

// PrincipalFrom returns who the request acts as, set by Middleware; nil for
// an anonymous request.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(ctxKey{}).(*Principal)
	return p
}

// WithPrincipal returns ctx carrying p (for tests of the application's own
// handlers).
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// ClientFromRequest describes the request's client for sessions, limits
// and the audit log: the address from r.RemoteAddr and the User-Agent.
// Behind a proxy, set r.RemoteAddr from the trusted forwarding header first
// (the package never trusts X-Forwarded-For by itself).
func ClientFromRequest(r *http.Request) Client {
	c := Client{UserAgent: r.UserAgent()}
	host := r.RemoteAddr
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		host = h
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		c.IP = ip.WithZone("")
	}
	return c
}

// Middleware resolves the request's credentials into a Principal in the
// context (PrincipalFrom) and calls next:
//
//   - "Authorization: Bearer <API key>": the key must be valid, or the
//     request is answered 401 at once;
//   - otherwise the session cookie: a valid session sets the principal; an
//     invalid or expired one is cleared and the request goes on anonymous.
//
// It does not refuse anonymous requests (see RequireUser) and does not
// protect against CSRF by itself (see Protect). Database errors answer 500
// and are logged.
//
// The credentials are looked up on the DB given to New, outside any tenant.
// When row-level security scopes the auth tables to tenants, use
// ScopedMiddleware instead.
func (a *Auth) Middleware(next http.Handler) http.Handler {
	return a.middleware(next, func(_ *http.Request, fn func(DB) error) error { return fn(a.db) })
}

// ScopedMiddleware is Middleware with the credentials looked up through
// scope, which must call fn once with the DB to use for this request —
// typically a transaction scoped to the request's tenant (with the tenancy
// package: tenancy.Manager.WithTenant with the tenant resolved from the
// request). A session or API key of another tenant is then unknown to the
// lookup and treated as invalid. An error that scope returns without
// calling fn answers 500.
func (a *Auth) ScopedMiddleware(scope func(r *http.Request, fn func(db DB) error) error) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler { return a.middleware(next, scope) }
}

func (a *Auth) middleware(next http.Handler, scope func(r *http.Request, fn func(db DB) error) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if h := r.Header.Get("Authorization"); h != "" {
			scheme, cred, _ := strings.Cut(h, " ")
			if !strings.EqualFold(scheme, "Bearer") {
				unauthorized(w, `Bearer error="invalid_request"`)
				return
			}
			var p *Principal
			err := scope(r, func(db DB) (err error) {
				p, err = a.ValidateAPIKey(ctx, db, strings.TrimSpace(cred))
				return err
			})
			switch {
			case errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrTokenExpired):
				unauthorized(w, `Bearer error="invalid_token"`)
				return
			case err == nil && p == nil:
				err = errors.New("auth: the middleware's scope did not run the lookup")
				fallthrough
			case err != nil:
				a.serverError(w, r, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(WithPrincipal(ctx, p)))
			return
		}
		ck, err := r.Cookie(a.cfg.CookieName)
		if err != nil || ck.Value == "" {
			next.ServeHTTP(w, r)
			return
		}
		var p *Principal
		err = scope(r, func(db DB) (err error) {
			p, err = a.ValidateSession(ctx, db, ck.Value)
			return err
		})
		switch {
		case errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrTokenExpired):
			a.ClearSessionCookie(w)
			next.ServeHTTP(w, r)
			return
		case err == nil && p == nil:
			err = errors.New("auth: the middleware's scope did not run the lookup")
			fallthrough
		case err != nil:
			a.serverError(w, r, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(ctx, p)))
	})
}

func unauthorized(w http.ResponseWriter, challenge string) {
	w.Header().Set("WWW-Authenticate", challenge)
	http.Error(w, "unauthorized", http.StatusUnauthorized)
}

func (a *Auth) serverError(w http.ResponseWriter, r *http.Request, err error) {
	a.log.ErrorContext(r.Context(), "auth: resolving credentials", "err", err)
	http.Error(w, "internal server error", http.StatusInternalServerError)
}

// RequireUser answers 401 to requests without a principal (put it after
// Middleware).
func RequireUser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if PrincipalFrom(r.Context()) == nil {
			unauthorized(w, `Bearer realm="api"`)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// RequireScope answers 401 to anonymous requests and 403 to API keys
// without scope. Sessions pass: they act with all of their user's rights.
func RequireScope(scope string, next http.Handler) http.Handler {
	return RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !PrincipalFrom(r.Context()).HasScope(scope) {
			http.Error(w, "forbidden: missing scope "+scope, http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	}))
}

// Protect guards cookie-authenticated, state-changing requests against
// cross-site request forgery with Go's http.CrossOriginProtection: non-safe
// methods from another origin (per Sec-Fetch-Site or Origin) are refused
// with 403. Requests without those headers (non-browser clients, which
// cannot carry the user's cookies cross-site) pass. Wrap the whole
// application, outside Middleware.
func Protect(next http.Handler) http.Handler {
	return http.NewCrossOriginProtection().Handler(next)
}

// SetSessionCookie sends the session token as a cookie: the configured name
// (by default "__Host-session"), Path=/, HttpOnly, Secure, SameSite=Lax,
// expiring with the session's absolute timeout.
func (a *Auth) SetSessionCookie(w http.ResponseWriter, token string, s Session) {
	http.SetCookie(w, &http.Cookie{
		Name: a.cfg.CookieName, Value: token, Path: "/",
		Expires: s.ExpiresAt, MaxAge: max(1, int(time.Until(s.ExpiresAt).Seconds())),
		HttpOnly: true, Secure: !a.cfg.InsecureCookie, SameSite: http.SameSiteLaxMode,
	})
}

// ClearSessionCookie tells the browser to drop the session cookie.
func (a *Auth) ClearSessionCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: a.cfg.CookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: !a.cfg.InsecureCookie, SameSite: http.SameSiteLaxMode,
	})
}

// SessionToken returns the session token the request carries in its cookie
// ("" if none), e.g. for Logout or RotateSession.
func (a *Auth) SessionToken(r *http.Request) string {
	if ck, err := r.Cookie(a.cfg.CookieName); err == nil {
		return ck.Value
	}
	return ""
}
