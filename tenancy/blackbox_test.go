package tenancy_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/tenancy"
)

// TestBlackbox runs the black-box cases on one database and application
// role (each case uses its own tenants and tables).
func TestBlackbox(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, c := range []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"ProtectOddTableNames", bbProtectOddTableNames},
		{"PanicInFnReleasesConnection", bbPanicInFnReleasesConnection},
		{"ConcurrentCreateSameSlug", bbConcurrentCreateSameSlug},
		{"CancelledContextWritesNothing", bbCancelledContextWritesNothing},
	} {
		t.Run(c.name, func(t *testing.T) { c.fn(t, e) })
	}
}

// A table whose schema and name need quoting (capitals, spaces, quotes) is
// protected like any other; a name carrying SQL is quoted, never run.
func bbProtectOddTableNames(t *testing.T, e *env) {
	ctx := context.Background()
	schema, table := `Odd "Schema"`, `My "Weird" Notes`
	qs, qt := pgx.Identifier{schema}.Sanitize(), pgx.Identifier{schema, table}.Sanitize()
	_, err := e.owner.Exec(ctx, `CREATE SCHEMA `+qs+`; CREATE TABLE `+qt+` (id serial PRIMARY KEY, body text)`)
	require.NoError(t, err)
	require.NoError(t, tenancy.Protect(ctx, e.owner, schema+"."+table))
	_, err = e.owner.Exec(ctx, `GRANT USAGE ON SCHEMA `+qs+` TO `+pgx.Identifier{e.role}.Sanitize()+`;
		GRANT ALL ON ALL TABLES IN SCHEMA `+qs+` TO `+pgx.Identifier{e.role}.Sanitize()+`;
		GRANT ALL ON ALL SEQUENCES IN SCHEMA `+qs+` TO `+pgx.Identifier{e.role}.Sanitize())
	require.NoError(t, err)
	a, b := e.tenant(t, "odd-a", tenancy.Shared), e.tenant(t, "odd-b", tenancy.Shared)
	for _, id := range []uuid.UUID{a.ID, b.ID} {
		require.NoError(t, e.m.WithTenant(ctx, e.app, id, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO `+qt+` (body) VALUES ($1)`, id.String())
			return err
		}))
	}
	require.NoError(t, e.m.WithTenant(ctx, e.app, a.ID, func(tx pgx.Tx) error {
		var bodies []string
		rows, err := tx.Query(ctx, `SELECT body FROM `+qt)
		require.NoError(t, err)
		bodies, err = pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		assert.Equal(t, []string{a.ID.String()}, bodies)
		return nil
	}))
	un, err := tenancy.Unprotected(ctx, e.owner)
	require.NoError(t, err)
	assert.Empty(t, un)

	// Injection attempts: refused, or quoted into a name that does not exist.
	for _, bad := range []string{`notes; DROP TABLE notes`, `notes" ; DROP TABLE notes; --`, "notes\x00", "", "a.b.c", "."} {
		err := tenancy.Protect(ctx, e.owner, bad)
		require.Error(t, err, "%q", bad)
	}
	var n int
	require.NoError(t, e.owner.QueryRow(ctx, `SELECT count(*) FROM notes`).Scan(&n))
}

// A panic in fn rolls the transaction back and gives the connection back
// clean: a pool of one connection keeps working and carries no tenant.
func bbPanicInFnReleasesConnection(t *testing.T, e *env) {
	ctx := context.Background()
	a := e.tenant(t, "panicky", tenancy.Shared)
	func() {
		defer func() { require.NotNil(t, recover()) }()
		_ = e.m.WithTenant(ctx, e.app, a.ID, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO notes (body) VALUES ('before panic')`)
			require.NoError(t, err)
			panic("boom")
		})
	}()
	assert.Zero(t, e.app.Stat().AcquiredConns(), "the connection went back to the pool")
	cctx, cancel := context.WithTimeout(ctx, 5e9)
	defer cancel()
	var setting string
	require.NoError(t, e.app.QueryRow(cctx, `SELECT coalesce(current_setting('app.tenant_id', true), '')`).Scan(&setting))
	assert.Empty(t, setting)
	assert.Empty(t, e.visible(t, e.app, a.ID))
}

// Concurrent Creates of one slug: one tenant, the others ErrSlugTaken.
func bbConcurrentCreateSameSlug(t *testing.T, e *env) {
	ctx := context.Background()
	const n = 6
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			iso := tenancy.Shared
			if i%2 == 1 {
				iso = tenancy.Dedicated
			}
			_, errs[i] = e.m.Create(ctx, e.owner, tenancy.NewTenant{Slug: "same", Name: "Same", Isolation: iso})
		})
	}
	close(start)
	wg.Wait()
	pgtest.OneWinner(t, errs, tenancy.ErrSlugTaken)
	list, err := e.m.List(ctx, e.owner)
	require.NoError(t, err)
	same := 0
	for _, tn := range list {
		if tn.Slug == "same" {
			same++
		}
	}
	assert.Equal(t, 1, same)
}

// A cancelled context: WithTenant fails with context.Canceled reachable and
// nothing is written.
func bbCancelledContextWritesNothing(t *testing.T, e *env) {
	ctx := context.Background()
	a := e.tenant(t, "cancel", tenancy.Shared)
	cctx, cancel := context.WithCancel(ctx)
	err := e.m.WithTenant(cctx, e.app, a.ID, func(tx pgx.Tx) error {
		_, err := tx.Exec(cctx, `INSERT INTO notes (body) VALUES ('x')`)
		cancel()
		return err
	})
	if err != nil {
		assert.True(t, errors.Is(err, context.Canceled), "%v", err)
	}
	cancel()
	err = e.m.WithTenant(cctx, e.app, a.ID, func(tx pgx.Tx) error { return nil })
	require.ErrorIs(t, err, context.Canceled)
	assert.Empty(t, e.visible(t, e.app, a.ID))
}

// Resolvers with what real clients send: an upper-case host (curl keeps the
// case), a trailing dot, a path without a trailing slash.
func TestBlackboxResolversWithRealRequests(t *testing.T) {
	t.Parallel()
	sub := tenancy.FromSubdomain("Example.COM")
	for host, want := range map[string]string{
		"ACME.example.com":      "acme",
		"acme.example.com:8443": "acme",
		"example.com":           "",
		"acme.example.com.evil": "",
		"a.acme.example.com":    "",
		"xexample.com":          "",
	} {
		r := httptest.NewRequest("GET", "http://placeholder/", nil)
		r.Host = host
		assert.Equal(t, want, sub(r), "host %q", host)
	}
	path := tenancy.FromPath("/t/")
	for p, want := range map[string]string{"/t/acme": "acme", "/t/acme/x": "acme", "/t/": "", "/x/acme/": ""} {
		assert.Equal(t, want, path(httptest.NewRequest("GET", p, nil)), "path %q", p)
	}
	hdr := tenancy.FromHeader("X-Tenant")
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("x-tenant", "  acme ")
	assert.Equal(t, "acme", hdr(r))
	_ = http.StatusOK
}
