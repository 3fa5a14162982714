package tenancy

import (
	"errors"
	"net"
	"net/http"
	"strings"
)

// Resolver extracts a tenant key (a slug or an id) from a request. It
// returns "" when the request names no tenant.
type Resolver func(r *http.Request) string

// FromHeader resolves the tenant from a request header, e.g. "X-Tenant".
func FromHeader(name string) Resolver {
	return func(r *http.Request) string { return strings.TrimSpace(r.Header.Get(name)) }
}

// FromSubdomain resolves the tenant from the first label of the host when
// the host is <tenant>.<domain>, e.g. FromSubdomain("example.com") maps
// acme.example.com to "acme". Other hosts name no tenant.
func FromSubdomain(domain string) Resolver {
	suffix := "." + strings.ToLower(strings.Trim(domain, "."))
	return func(r *http.Request) string {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.ToLower(host)
		label, ok := strings.CutSuffix(host, suffix)
		if !ok || strings.Contains(label, ".") {
			return ""
		}
		return label
	}
}

// FromPath resolves the tenant from the path segment that follows prefix,
// e.g. FromPath("/t/") maps /t/acme/notes to "acme". The path is left as it
// is: the application's routes include the segment.
func FromPath(prefix string) Resolver {
	return func(r *http.Request) string {
		rest, ok := strings.CutPrefix(r.URL.Path, prefix)
		if !ok {
			return ""
		}
		seg, _, _ := strings.Cut(rest, "/")
		return seg
	}
}

// MiddlewareConfig configures Middleware.
type MiddlewareConfig struct {
	// Resolve finds the tenant key in the request; required.
	Resolve Resolver
	// OnError writes the response when the tenant cannot be resolved; nil
	// means: 400 for a missing or malformed key, 404 for an unknown or
	// deleted tenant, 403 for a suspended one, 500 otherwise.
	OnError func(w http.ResponseWriter, r *http.Request, err error)
}

// Middleware resolves the tenant of each request with cfg.Resolve, looks it
// up on db (by id when the key is a UUID, else by slug), refuses unknown,
// deleted and suspended tenants, and passes the request on with the tenant
// in its context (FromContext; InTenant runs work as it).
func (m *Manager) Middleware(db DB, cfg MiddlewareConfig) func(http.Handler) http.Handler {
	onErr := cfg.OnError
	if onErr == nil {
		onErr = defaultOnError
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			key := ""
			if cfg.Resolve != nil {
				key = cfg.Resolve(r)
			}
			if key == "" {
				onErr(w, r, ErrNoTenant)
				return
			}
			var t Tenant
			var err error
			if id, perr := ParseID(key); perr == nil {
				t, err = m.Get(r.Context(), db, id)
			} else {
				t, err = m.BySlug(r.Context(), db, key)
			}
			if err == nil {
				err = t.Usable()
			}
			if err != nil {
				onErr(w, r, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(WithContext(r.Context(), t)))
		})
	}
}

func defaultOnError(w http.ResponseWriter, _ *http.Request, err error) {
	switch {
	case errors.Is(err, ErrNoTenant), errors.Is(err, ErrInvalid):
		http.Error(w, "tenant missing or malformed", http.StatusBadRequest)
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrDeleted):
		http.Error(w, "unknown tenant", http.StatusNotFound)
	case errors.Is(err, ErrSuspended):
		http.Error(w, "tenant suspended", http.StatusForbidden)
	default:
		http.Error(w, "internal error", http.StatusInternalServerError)
	}
}
