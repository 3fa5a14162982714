package tenancy_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/tenancy"
)

func TestMiddlewareResolvesTenant(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	a, b := e.tenant(t, "acme", tenancy.Shared), e.tenant(t, "globex", tenancy.Dedicated)
	e.insertNotes(t, a.ID, 2)
	e.insertNotes(t, b.ID, 3)
	sus := e.tenant(t, "sleepy", tenancy.Shared)
	_, err := e.m.Suspend(ctx, e.owner, sus.ID)
	require.NoError(t, err)
	del := e.tenant(t, "gone", tenancy.Shared)
	_, err = e.m.Delete(ctx, e.owner, del.ID)
	require.NoError(t, err)

	// The handler never names a tenant: it lists "its" notes.
	list := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var bodies []string
		err := e.m.InTenant(r.Context(), e.app, func(tx pgx.Tx) error {
			rows, err := tx.Query(r.Context(), `SELECT body FROM notes ORDER BY n`)
			if err != nil {
				return err
			}
			bodies, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		})
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		_ = json.NewEncoder(w).Encode(bodies)
	})
	for _, tc := range []struct {
		name    string
		resolve tenancy.Resolver
		req     func() *http.Request
		code    int
		notes   int
		owner   uuid.UUID
	}{
		{"header slug", tenancy.FromHeader("X-Tenant"), func() *http.Request { return hdr("acme") }, 200, 2, a.ID},
		{"header id", tenancy.FromHeader("X-Tenant"), func() *http.Request { return hdr(b.ID.String()) }, 200, 3, b.ID},
		{"subdomain", tenancy.FromSubdomain("example.com"), func() *http.Request {
			return httptest.NewRequest("GET", "http://globex.example.com:8080/notes", nil)
		}, 200, 3, b.ID},
		{"path", tenancy.FromPath("/t/"), func() *http.Request { return httptest.NewRequest("GET", "/t/acme/notes", nil) }, 200, 2, a.ID},
		{"missing", tenancy.FromHeader("X-Tenant"), func() *http.Request { return httptest.NewRequest("GET", "/", nil) }, 400, 0, uuid.Nil},
		{"injection", tenancy.FromHeader("X-Tenant"), func() *http.Request { return hdr(`acme' OR '1'='1`) }, 400, 0, uuid.Nil},
		{"other domain", tenancy.FromSubdomain("example.com"), func() *http.Request {
			return httptest.NewRequest("GET", "http://acme.evil.com/", nil)
		}, 400, 0, uuid.Nil},
		{"nested subdomain", tenancy.FromSubdomain("example.com"), func() *http.Request {
			return httptest.NewRequest("GET", "http://x.acme.example.com/", nil)
		}, 400, 0, uuid.Nil},
		{"unknown", tenancy.FromHeader("X-Tenant"), func() *http.Request { return hdr("nobody") }, 404, 0, uuid.Nil},
		{"unknown id", tenancy.FromHeader("X-Tenant"), func() *http.Request { return hdr(uuid.NewString()) }, 404, 0, uuid.Nil},
		{"deleted", tenancy.FromHeader("X-Tenant"), func() *http.Request { return hdr("gone") }, 404, 0, uuid.Nil},
		{"suspended", tenancy.FromHeader("X-Tenant"), func() *http.Request { return hdr("sleepy") }, 403, 0, uuid.Nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := e.m.Middleware(e.app, tenancy.MiddlewareConfig{Resolve: tc.resolve})(list)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, tc.req())
			require.Equal(t, tc.code, rec.Code, rec.Body.String())
			if tc.code != 200 {
				return
			}
			var bodies []string
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &bodies))
			assert.Len(t, bodies, tc.notes)
			for _, body := range bodies {
				assert.Contains(t, body, tc.owner.String())
			}
		})
	}
	err = e.m.InTenant(ctx, e.app, func(pgx.Tx) error { return nil })
	assert.ErrorIs(t, err, tenancy.ErrNoTenant)
}

func hdr(v string) *http.Request {
	r := httptest.NewRequest("GET", "/notes", nil)
	r.Header.Set("X-Tenant", v)
	return r
}

func TestAdminAccessIsExplicitAndRecorded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	a, b := e.tenant(t, "acme", tenancy.Shared), e.tenant(t, "globex", tenancy.Shared)
	e.insertNotes(t, a.ID, 2)
	e.insertNotes(t, b.ID, 3)
	start := time.Now().Add(-time.Minute)
	count := func(tx pgx.Tx) (n int, err error) {
		err = tx.QueryRow(ctx, `SELECT count(*) FROM notes`).Scan(&n)
		return n, err
	}

	// The application role cannot use it.
	_, err := e.m.AsAdmin(ctx, e.app, tenancy.Access{Actor: "alice@support", Reason: "ticket 42"}, func(pgx.Tx) error { return nil })
	assert.ErrorIs(t, err, tenancy.ErrNotAdmin)
	_, err = e.m.AsAdmin(ctx, e.owner, tenancy.Access{Actor: "alice@support"}, func(pgx.Tx) error { return nil })
	assert.ErrorIs(t, err, tenancy.ErrInvalid, "a reason is required")

	var n int
	id, err := e.m.AsAdmin(ctx, e.owner, tenancy.Access{Actor: "alice@support", Reason: "ticket 42", Tenant: b.ID}, func(tx pgx.Tx) error {
		n, err = count(tx)
		return err
	})
	require.NoError(t, err)
	assert.Equal(t, 5, n, "admin sees every tenant")
	_, err = e.m.AsAdmin(ctx, e.owner, tenancy.Access{Actor: "nightly-report", Reason: "usage stats"}, func(pgx.Tx) error {
		return context.Canceled // a failed access is recorded too
	})
	require.ErrorIs(t, err, context.Canceled)

	log, err := e.m.AccessLog(ctx, e.owner, start)
	require.NoError(t, err)
	require.Len(t, log, 2)
	assert.Equal(t, id, log[0].ID)
	assert.Equal(t, tenancy.Access{Actor: "alice@support", Reason: "ticket 42", Tenant: b.ID}, log[0].Access)
	var ownerRole string
	require.NoError(t, e.owner.QueryRow(ctx, `SELECT current_user`).Scan(&ownerRole))
	assert.Equal(t, ownerRole, log[0].Role)
	assert.Equal(t, "nightly-report", log[1].Access.Actor)
	assert.Equal(t, uuid.Nil, log[1].Access.Tenant)

	// The application role cannot read or forge the log.
	_, err = e.app.Exec(ctx, `SELECT count(*) FROM justpg.tenancy_admin_access`)
	assert.Equal(t, "42501", pgCode(err))
	_, err = e.app.Exec(ctx, `UPDATE justpg.tenancy_tenants SET status = 'active'`)
	assert.Equal(t, "42501", pgCode(err))
	assert.True(t, strings.HasPrefix(tenancy.ErrNotAdmin.Error(), "tenancy: "))
}
