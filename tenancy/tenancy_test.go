package tenancy_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/tenancy"
)

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func TestTwoTenantsCannotSeeEachOther(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	require.NoError(t, tenancy.Check(ctx, e.app))
	a, b := e.tenant(t, "acme", tenancy.Shared), e.tenant(t, "globex", tenancy.Shared)
	e.insertNotes(t, a.ID, 3)
	e.insertNotes(t, b.ID, 2)

	va, vb := e.visible(t, e.app, a.ID), e.visible(t, e.app, b.ID)
	require.Len(t, va, 3)
	require.Len(t, vb, 2)
	for _, id := range va {
		assert.Equal(t, a.ID, id)
	}
	for _, id := range vb {
		assert.Equal(t, b.ID, id)
	}

	// Reaching for the other tenant's rows by id finds nothing, and updates
	// and deletes of them touch nothing.
	var bNote uuid.UUID
	require.NoError(t, e.m.WithTenant(ctx, e.app, b.ID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT id FROM notes LIMIT 1`).Scan(&bNote)
	}))
	require.NoError(t, e.m.WithTenant(ctx, e.app, a.ID, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT id FROM notes WHERE id = $1`, bNote).Scan(new(uuid.UUID))
		assert.ErrorIs(t, err, pgx.ErrNoRows)
		tag, err := tx.Exec(ctx, `UPDATE notes SET body = 'stolen' WHERE id = $1`, bNote)
		require.NoError(t, err)
		assert.Zero(t, tag.RowsAffected())
		tag, err = tx.Exec(ctx, `DELETE FROM notes WHERE tenant_id = $1`, b.ID)
		require.NoError(t, err)
		assert.Zero(t, tag.RowsAffected())
		return nil
	}))

	// An insert or an update that names the other tenant is refused by
	// WITH CHECK.
	err := e.m.WithTenant(ctx, e.app, a.ID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO notes (tenant_id, body) VALUES ($1, 'planted')`, b.ID)
		return err
	})
	assert.Equal(t, "42501", pgCode(err), "insert for another tenant: %v", err)
	err = e.m.WithTenant(ctx, e.app, a.ID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE notes SET tenant_id = $1`, b.ID)
		return err
	})
	assert.Equal(t, "42501", pgCode(err), "moving a row to another tenant: %v", err)
	assert.Len(t, e.visible(t, e.app, b.ID), 2)
}

func TestForgotToSetTenantFailsClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	a := e.tenant(t, "acme", tenancy.Shared)
	e.insertNotes(t, a.ID, 5)

	// Straight on the pool, no tenant: nothing visible, inserts refused.
	var n int
	require.NoError(t, e.app.QueryRow(ctx, `SELECT count(*) FROM notes`).Scan(&n))
	assert.Zero(t, n)
	_, err := e.app.Exec(ctx, `INSERT INTO notes (body) VALUES ('orphan')`)
	assert.Equal(t, "42501", pgCode(err), "insert without a tenant: %v", err)
	_, err = e.app.Exec(ctx, `INSERT INTO notes (tenant_id, body) VALUES ($1, 'claims acme')`, a.ID)
	assert.Equal(t, "42501", pgCode(err), "insert naming a tenant without being it: %v", err)

	// The empty string a finished transaction leaves behind also matches
	// nothing (rather than failing the uuid cast).
	_, err = e.app.Exec(ctx, `SELECT set_config('app.tenant_id', '', false)`)
	require.NoError(t, err)
	require.NoError(t, e.app.QueryRow(ctx, `SELECT count(*) FROM notes`).Scan(&n))
	assert.Zero(t, n)
	require.NoError(t, e.app.QueryRow(ctx, `SELECT count(*) FROM comments`).Scan(&n))
	assert.Zero(t, n)
}

func TestTenantStatesAndBadIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	a := e.tenant(t, "acme", tenancy.Shared)
	noop := func(pgx.Tx) error { return nil }

	err := e.m.WithTenant(ctx, e.app, uuid.New(), noop)
	assert.ErrorIs(t, err, tenancy.ErrNotFound)
	err = e.m.WithTenant(ctx, e.app, uuid.Nil, noop)
	assert.ErrorIs(t, err, tenancy.ErrMalformedID)

	_, err = e.m.Suspend(ctx, e.owner, a.ID)
	require.NoError(t, err)
	assert.ErrorIs(t, e.m.WithTenant(ctx, e.app, a.ID, noop), tenancy.ErrSuspended)
	_, err = e.m.Activate(ctx, e.owner, a.ID)
	require.NoError(t, err)
	assert.NoError(t, e.m.WithTenant(ctx, e.app, a.ID, noop))

	_, err = e.m.Delete(ctx, e.owner, a.ID)
	require.NoError(t, err)
	assert.ErrorIs(t, e.m.WithTenant(ctx, e.app, a.ID, noop), tenancy.ErrDeleted)
	_, err = e.m.Restore(ctx, e.owner, a.ID)
	require.NoError(t, err)
	assert.NoError(t, e.m.WithTenant(ctx, e.app, a.ID, noop))

	for _, bad := range []string{"", "acme", "00000000-0000-0000-0000-000000000000", "'; DROP TABLE notes; --",
		"6ba7b810-9dad-11d1-80b4-00c04fd430c8'; --", "{6ba7b810-9dad-11d1-80b4-00c04fd430c8}"} {
		_, err := tenancy.ParseID(bad)
		assert.ErrorIs(t, err, tenancy.ErrMalformedID, bad)
	}
	id, err := tenancy.ParseID(a.ID.String())
	require.NoError(t, err)
	assert.Equal(t, a.ID, id)

	// Slugs built to inject SQL are refused before reaching the database.
	for _, bad := range []string{`x"; DROP SCHEMA public CASCADE; --`, "Acme", "a_b", "-a", "a-", strings.Repeat("a", 49), "a b", "ä"} {
		_, err := e.m.Create(ctx, e.owner, tenancy.NewTenant{Slug: bad, Name: "x"})
		assert.ErrorIs(t, err, tenancy.ErrInvalid, bad)
		_, err = e.m.BySlug(ctx, e.owner, bad)
		assert.ErrorIs(t, err, tenancy.ErrInvalid, bad)
	}
	_, err = e.m.Create(ctx, e.owner, tenancy.NewTenant{Slug: "acme", Name: "again"})
	assert.ErrorIs(t, err, tenancy.ErrSlugTaken)
	_, err = e.m.Create(ctx, e.owner, tenancy.NewTenant{Slug: "bad-settings", Name: "x",
		Settings: map[string]any{"statement_timeout_ms": "1; DROP TABLE notes"}})
	assert.ErrorIs(t, err, tenancy.ErrInvalid)
	got, err := e.m.BySlug(ctx, e.owner, "acme")
	require.NoError(t, err)
	assert.Equal(t, a.ID, got.ID)
	_, err = e.m.BySlug(ctx, e.owner, "nobody")
	assert.ErrorIs(t, err, tenancy.ErrNotFound)
}

func TestBypassingConnectionsAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	a := e.tenant(t, "acme", tenancy.Shared)
	noop := func(pgx.Tx) error { return nil }
	var super bool
	require.NoError(t, e.owner.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&super))
	if !super {
		t.Skip("this test needs the test server's admin role to be a superuser (it creates a BYPASSRLS role)")
	}

	// The superuser that owns everything.
	err := tenancy.Check(ctx, e.owner)
	var be *tenancy.BypassError
	require.ErrorAs(t, err, &be)
	assert.Contains(t, be.Error(), "superuser")
	assert.ErrorIs(t, e.m.WithTenant(ctx, e.owner, a.ID, noop), tenancy.ErrBypass)

	// A role with BYPASSRLS.
	bypassRole := "tenancy_bypass_" + randHex(6)
	bypass := newRolePool(t, e.db, bypassRole, func(pw string) error {
		_, err := e.owner.Exec(ctx, `CREATE ROLE `+pgx.Identifier{bypassRole}.Sanitize()+` LOGIN BYPASSRLS PASSWORD '`+pw+`'`)
		if err == nil {
			_, err = e.owner.Exec(ctx, `GRANT SELECT ON ALL TABLES IN SCHEMA public, justpg TO `+pgx.Identifier{bypassRole}.Sanitize()+
				`; GRANT USAGE ON SCHEMA justpg TO `+pgx.Identifier{bypassRole}.Sanitize()+
				`; GRANT EXECUTE ON FUNCTION justpg.tenancy_enter(uuid) TO `+pgx.Identifier{bypassRole}.Sanitize())
		}
		return err
	})
	err = tenancy.Check(ctx, bypass)
	require.ErrorAs(t, err, &be)
	assert.Contains(t, be.Error(), "BYPASSRLS")
	assert.ErrorIs(t, e.m.WithTenant(ctx, bypass, a.ID, noop), tenancy.ErrBypass)
	// Refusing it is not paranoia: it really sees everything.
	e.insertNotes(t, a.ID, 1)
	var n int
	require.NoError(t, bypass.QueryRow(ctx, `SELECT count(*) FROM notes`).Scan(&n))
	assert.Equal(t, 1, n)

	// An ordinary role that owns a protected table that is not FORCEd.
	ownerRole := "tenancy_owner_" + randHex(6)
	owner := newRolePool(t, e.db, ownerRole, func(pw string) error {
		q := pgx.Identifier{ownerRole}.Sanitize()
		_, err := e.owner.Exec(ctx, `CREATE ROLE `+q+` LOGIN PASSWORD '`+pw+`'; CREATE TABLE owned (`+tenancy.TenantIDColumnSQL+`);
			ALTER TABLE owned OWNER TO `+q)
		if err == nil {
			err = tenancy.Protect(ctx, e.owner, "owned")
		}
		return err
	})
	assert.NoError(t, tenancy.Check(ctx, owner), "owner of a FORCEd table is subject to its policy")
	_, err = e.owner.Exec(ctx, `ALTER TABLE owned NO FORCE ROW LEVEL SECURITY`)
	require.NoError(t, err)
	err = tenancy.Check(ctx, owner)
	require.ErrorAs(t, err, &be)
	assert.Contains(t, be.Error(), `"public"."owned"`)
	// RLS switched off on a protected table is refused for everyone.
	_, err = e.owner.Exec(ctx, `ALTER TABLE owned DISABLE ROW LEVEL SECURITY`)
	require.NoError(t, err)
	assert.ErrorIs(t, tenancy.Check(ctx, e.app), tenancy.ErrBypass)
	_, err = e.owner.Exec(ctx, `ALTER TABLE owned ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY`)
	require.NoError(t, err)
	assert.NoError(t, tenancy.Check(ctx, e.app))

	// WithTenant's own check asks PostgreSQL whether row-level security
	// applies, on a probe table; with the probe's switched off, it refuses
	// everyone rather than no one.
	_, err = e.owner.Exec(ctx, `ALTER TABLE justpg.tenancy_rls_probe DISABLE ROW LEVEL SECURITY`)
	require.NoError(t, err)
	assert.ErrorIs(t, e.m.WithTenant(ctx, e.app, a.ID, noop), tenancy.ErrBypass)
	_, err = e.owner.Exec(ctx, `ALTER TABLE justpg.tenancy_rls_probe ENABLE ROW LEVEL SECURITY`)
	require.NoError(t, err)
	assert.NoError(t, e.m.WithTenant(ctx, e.app, a.ID, noop))

	// The helper refuses to hand out a superuser as the app role.
	err = e.m.CreateAppRole(ctx, e.owner, tenancy.AppRole{Name: "postgres"})
	assert.ErrorIs(t, err, tenancy.ErrBypass)
	var byp bool
	require.NoError(t, e.owner.QueryRow(ctx, `SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1`, e.role).Scan(&super, &byp))
	assert.False(t, super)
	assert.False(t, byp)
}

// The background components' role (see the package documentation): it
// sees every tenant, WithTenant and Check refuse it, and per-tenant work it
// hands over runs on the application pool under the tenant.
func TestSystemRoleForBackgroundComponents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	var super bool
	require.NoError(t, e.owner.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&super))
	if !super {
		t.Skip("creating a BYPASSRLS role needs a superuser")
	}
	a, b := e.tenant(t, "acme", tenancy.Shared), e.tenant(t, "globex", tenancy.Shared)
	e.insertNotes(t, a.ID, 2)
	e.insertNotes(t, b.ID, 3)

	// A name built to inject is a name, nothing more.
	role := `tenancy_sys_" SUPERUSER --` + randHex(4)
	create := func(pw string) error {
		return e.m.CreateSystemRole(ctx, e.owner, tenancy.SystemRole{Name: role, Password: pw, Schemas: []string{"public", "justpg"}})
	}
	sys := newRolePool(t, e.db, role, create)
	var bypass, owns bool
	require.NoError(t, e.owner.QueryRow(ctx, `SELECT rolsuper, rolbypassrls,
			EXISTS (SELECT 1 FROM pg_class WHERE relowner = r.oid)
		FROM pg_roles r WHERE rolname = $1`, role).Scan(&super, &bypass, &owns))
	assert.False(t, super)
	assert.True(t, bypass)
	assert.False(t, owns)
	require.NoError(t, create(randHex(8)), "completing an existing system role")

	// It serves all tenants: a "worker" sees every tenant's rows...
	var n int
	require.NoError(t, sys.QueryRow(ctx, `SELECT count(*) FROM notes`).Scan(&n))
	assert.Equal(t, 5, n)
	// ...so tenant-scoped work on it is refused...
	assert.ErrorIs(t, tenancy.Check(ctx, sys), tenancy.ErrBypass)
	assert.ErrorIs(t, e.m.WithTenant(ctx, sys, a.ID, func(pgx.Tx) error { return nil }), tenancy.ErrBypass)
	// ...and runs on the application pool under the job's tenant.
	var jobTenant uuid.UUID
	require.NoError(t, sys.QueryRow(ctx, `SELECT tenant_id FROM notes GROUP BY tenant_id ORDER BY count(*) DESC LIMIT 1`).Scan(&jobTenant))
	require.Equal(t, b.ID, jobTenant)
	for _, tid := range e.visible(t, e.app, jobTenant) {
		assert.Equal(t, b.ID, tid)
	}
	assert.Len(t, e.visible(t, e.app, jobTenant), 3)
	// It is an admin role for AsAdmin, which records the access.
	_, err := e.m.AsAdmin(ctx, sys, tenancy.Access{Actor: "janitor", Reason: "sweep"}, func(tx pgx.Tx) error { return nil })
	require.NoError(t, err)

	// Bad input and roles it must not touch.
	assert.ErrorIs(t, e.m.CreateSystemRole(ctx, e.owner, tenancy.SystemRole{Name: ""}), tenancy.ErrInvalid)
	assert.ErrorIs(t, e.m.CreateSystemRole(ctx, e.owner, tenancy.SystemRole{Name: "ok", Schemas: []string{""}}), tenancy.ErrInvalid)
	var me string
	require.NoError(t, e.owner.QueryRow(ctx, `SELECT current_user`).Scan(&me))
	assert.ErrorIs(t, e.m.CreateSystemRole(ctx, e.owner, tenancy.SystemRole{Name: me}), tenancy.ErrInvalid)
	require.NoError(t, e.owner.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&super))
	assert.True(t, super, "the owner was not demoted")
}

func TestNestedTransactionIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	a := e.tenant(t, "acme", tenancy.Shared)
	tx, err := e.app.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	err = e.m.WithTenant(ctx, tx, a.ID, func(pgx.Tx) error { return nil })
	assert.ErrorIs(t, err, tenancy.ErrNestedTx)
}

// WithTenant pipelines BEGIN with its scoping statement; that works in
// every query execution mode pgx offers (PgBouncer setups use Exec or
// SimpleProtocol), for a shared and a dedicated tenant, and refuses bad
// tenants the same way in each.
func TestWithTenantInEveryExecMode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	a, b := e.tenant(t, "acme", tenancy.Shared), e.tenant(t, "globex", tenancy.Dedicated)
	e.insertNotes(t, a.ID, 1)
	e.insertNotes(t, b.ID, 2)
	_, err := e.m.Suspend(ctx, e.owner, a.ID)
	require.NoError(t, err)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe,
		pgx.QueryExecModeDescribeExec, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol} {
		t.Run(mode.String(), func(t *testing.T) {
			cfg := e.app.Config().ConnConfig.Copy()
			cfg.DefaultQueryExecMode = mode
			conn, err := pgx.ConnectConfig(ctx, cfg)
			require.NoError(t, err)
			defer conn.Close(ctx)
			for i := 0; i < 3; i++ { // cached statements are reused
				var ids []uuid.UUID
				require.NoError(t, e.m.WithTenant(ctx, conn, b.ID, func(tx pgx.Tx) error {
					rows, err := tx.Query(ctx, `SELECT tenant_id FROM notes`)
					if err != nil {
						return err
					}
					ids, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
					return err
				}))
				assert.Equal(t, []uuid.UUID{b.ID, b.ID}, ids)
				assert.ErrorIs(t, e.m.WithTenant(ctx, conn, a.ID, func(pgx.Tx) error { return nil }), tenancy.ErrSuspended)
				assert.ErrorIs(t, e.m.WithTenant(ctx, conn, uuid.New(), func(pgx.Tx) error { return nil }), tenancy.ErrNotFound)
				assert.Equal(t, byte('I'), conn.PgConn().TxStatus(), "nothing left open on the connection")
			}
		})
	}
}

func TestWithTenantTxModes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	a := e.tenant(t, "acme", tenancy.Shared)
	e.insertNotes(t, a.ID, 2)
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	err := e.m.WithTenantTx(ctx, e.app, a.ID, opts, func(tx pgx.Tx) error {
		var iso, ro string
		var n int
		require.NoError(t, tx.QueryRow(ctx, `SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only'),
			(SELECT count(*) FROM notes)`).Scan(&iso, &ro, &n))
		assert.Equal(t, "repeatable read", iso)
		assert.Equal(t, "on", ro)
		assert.Equal(t, 2, n, "the tenant is set in a read-only transaction too")
		got, err := tenancy.Current(ctx, tx)
		require.NoError(t, err)
		assert.Equal(t, a.ID, got)
		_, err = tx.Exec(ctx, `INSERT INTO notes (body) VALUES ('x')`)
		assert.Equal(t, "25006", pgCode(err), "read only")
		return err
	})
	require.Error(t, err)
	err = e.m.WithTenantTx(ctx, e.app, a.ID, pgx.TxOptions{BeginQuery: "BEGIN"}, func(pgx.Tx) error { return nil })
	assert.ErrorIs(t, err, tenancy.ErrInvalid)
	// Bad modes reach the server and come back as its error, on a
	// connection that stays usable.
	err = e.m.WithTenantTx(ctx, e.app, a.ID, pgx.TxOptions{IsoLevel: "chaotic"}, func(pgx.Tx) error { return nil })
	assert.Equal(t, "42601", pgCode(err))
	assert.Len(t, e.visible(t, e.app, a.ID), 2)
}

// A connection goes back to the pool after an error or a rollback in the
// middle of a tenant's transaction; nothing of the tenant stays on it.
func TestReusedConnectionKeepsNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *pgxpool.Config) { c.MaxConns = 1 })
	ctx := context.Background()
	a := e.tenant(t, "acme", tenancy.Dedicated)
	b := e.tenant(t, "globex", tenancy.Shared)
	e.insertNotes(t, a.ID, 2)
	e.insertNotes(t, b.ID, 1)
	var pid1 uint32
	boom := errors.New("boom")
	err := e.m.WithTenant(ctx, e.app, a.ID, func(tx pgx.Tx) error {
		pid1 = tx.Conn().PgConn().PID()
		if _, err := tx.Exec(ctx, `INSERT INTO notes (body) VALUES ('lost')`); err != nil {
			return err
		}
		return boom
	})
	require.ErrorIs(t, err, boom)
	err = e.m.WithTenant(ctx, e.app, a.ID, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `SELECT 1/0`)
		return err
	})
	assert.Equal(t, "22012", pgCode(err))

	c, err := e.app.Acquire(ctx)
	require.NoError(t, err)
	assert.Equal(t, pid1, c.Conn().PgConn().PID(), "same connection")
	var setting, path, timeout string
	require.NoError(t, c.QueryRow(ctx, `SELECT coalesce(current_setting('app.tenant_id', true), ''), current_setting('search_path'),
		current_setting('statement_timeout')`).Scan(&setting, &path, &timeout))
	assert.Empty(t, setting)
	assert.NotContains(t, path, "tenant_acme")
	var n int
	require.NoError(t, c.QueryRow(ctx, `SELECT count(*) FROM notes`).Scan(&n))
	assert.Zero(t, n)
	c.Release()
	assert.Len(t, e.visible(t, e.app, a.ID), 2, "the failed transaction's insert was rolled back")
	got := e.visible(t, e.app, b.ID)
	require.Len(t, got, 1)
	assert.Equal(t, b.ID, got[0])
}

// Tenants are created and their settings replaced and read in every pgx
// exec mode. In the exec and simple-protocol modes (what PgBouncer users
// configure) pgx does not learn the parameter types, and the settings, sent
// as []byte, went as bytea: Create and SetSettings failed with "invalid
// input syntax for type json".
func TestTenantSettingsInEveryExecMode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	for _, mode := range pgtest.ExecModes {
		t.Run(mode.String(), func(t *testing.T) {
			cfg := e.owner.Config().ConnConfig.Copy()
			cfg.DefaultQueryExecMode = mode
			conn, err := pgx.ConnectConfig(ctx, cfg)
			require.NoError(t, err)
			defer conn.Close(ctx)
			slug := strings.ReplaceAll(mode.String(), " ", "-")
			tn, err := e.m.Create(ctx, conn, tenancy.NewTenant{Slug: slug, Name: "Modes",
				Settings: map[string]any{"statement_timeout_ms": 50, "theme": "dark"}})
			require.NoError(t, err)
			assert.Equal(t, map[string]any{"statement_timeout_ms": float64(50), "theme": "dark"}, tn.Settings)
			tn, err = e.m.SetSettings(ctx, conn, tn.ID, map[string]any{"theme": "light"})
			require.NoError(t, err)
			assert.Equal(t, map[string]any{"theme": "light"}, tn.Settings)
			tn, err = e.m.Get(ctx, conn, tn.ID)
			require.NoError(t, err)
			assert.Equal(t, map[string]any{"theme": "light"}, tn.Settings)
		})
	}
}

func TestStatementTimeoutPerTenant(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	slow, err := e.m.Create(ctx, e.owner, tenancy.NewTenant{Slug: "noisy", Name: "Noisy",
		Settings: map[string]any{"statement_timeout_ms": 50, "theme": "dark"}})
	require.NoError(t, err)
	assert.Equal(t, "dark", slow.Settings["theme"])
	err = e.m.WithTenant(ctx, e.app, slow.ID, func(tx pgx.Tx) error {
		var v string
		if err := tx.QueryRow(ctx, `SELECT current_setting('statement_timeout')`).Scan(&v); err != nil {
			return err
		}
		assert.Equal(t, "50ms", v)
		_, err := tx.Exec(ctx, `SELECT pg_sleep(5)`)
		return err
	})
	assert.Equal(t, "57014", pgCode(err), "statement cancelled by the tenant's timeout: %v", err)

	calm := e.tenant(t, "calm", tenancy.Shared)
	var def string // the sessions' own (JUSTPG_TEST_SESSION may set one)
	require.NoError(t, e.owner.QueryRow(ctx, `SELECT current_setting('statement_timeout')`).Scan(&def))
	require.NoError(t, e.m.WithTenant(ctx, e.app, calm.ID, func(tx pgx.Tx) error {
		var v string
		require.NoError(t, tx.QueryRow(ctx, `SELECT current_setting('statement_timeout')`).Scan(&v))
		assert.Equal(t, def, v, "no timeout leaks from the noisy tenant")
		return nil
	}))
}

func TestExplainUsesIndexAndInitPlan(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	var ids []uuid.UUID
	for i := 0; i < 50; i++ {
		ids = append(ids, e.tenant(t, "t"+strings.Repeat("x", i%3)+string(rune('a'+i%26))+string(rune('a'+i/26)), tenancy.Shared).ID)
	}
	// 50 tenants x 200 notes, loaded as the owner with an explicit tenant_id.
	_, err := e.owner.Exec(ctx, `SELECT set_config('app.tenant_id', '', false)`)
	require.NoError(t, err)
	// The ids as strings: pgx encodes a []uuid.UUID only for a parameter it
	// knows to be uuid[], which it does not ask in the exec and simple
	// protocol modes (JUSTPG_TEST_EXEC_MODE).
	idText := make([]string, len(ids))
	for i, id := range ids {
		idText[i] = id.String()
	}
	_, err = e.owner.Exec(ctx, `INSERT INTO notes (tenant_id, body) SELECT t, 'n' || g FROM unnest($1::uuid[]) t, generate_series(1, 200) g`, idText)
	require.NoError(t, err)
	_, err = e.owner.Exec(ctx, `ANALYZE notes`)
	require.NoError(t, err)
	require.NoError(t, e.m.WithTenant(ctx, e.app, ids[7], func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `EXPLAIN (VERBOSE) SELECT * FROM notes WHERE n >= 0`)
		if err != nil {
			return err
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		plan := strings.Join(lines, "\n")
		assert.Contains(t, plan, "notes_tenant_id_idx", plan)
		assert.Contains(t, plan, "InitPlan", "the setting is read once per statement:\n"+plan)
		assert.Equal(t, 1, strings.Count(plan, "current_setting"), plan)
		var n int
		require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM notes`).Scan(&n))
		assert.Equal(t, 200, n)
		return nil
	}))
}

func TestProtectSQLQuotesNames(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	sql, err := tenancy.ProtectSQL("public.notes")
	require.NoError(t, err)
	for _, want := range []string{
		`ALTER TABLE "public"."notes" ENABLE ROW LEVEL SECURITY`,
		`ALTER TABLE "public"."notes" FORCE ROW LEVEL SECURITY`,
		`USING (tenant_id = ` + tenancy.CurrentTenantSQL + `)`,
		`WITH CHECK (tenant_id = ` + tenancy.CurrentTenantSQL + `)`,
		`CREATE INDEX IF NOT EXISTS "notes_tenant_id_idx" ON "public"."notes" (tenant_id)`,
	} {
		assert.Contains(t, sql, want)
	}
	for _, bad := range []string{"", ".", "a.", ".b", "a\x00b", strings.Repeat("x", 64)} {
		_, err := tenancy.ProtectSQL(bad)
		assert.ErrorIs(t, err, tenancy.ErrInvalid, "%q", bad)
	}

	// A hostile table name is just a name.
	evil := `x"; DROP TABLE notes; --`
	_, err = e.owner.Exec(ctx, `CREATE TABLE `+pgx.Identifier{evil}.Sanitize()+` (body text)`)
	require.NoError(t, err)
	require.NoError(t, tenancy.Protect(ctx, e.owner, evil))
	require.NoError(t, tenancy.Protect(ctx, e.owner, evil), "idempotent")
	var exists bool
	require.NoError(t, e.owner.QueryRow(ctx, `SELECT to_regclass('notes') IS NOT NULL`).Scan(&exists))
	assert.True(t, exists)
	un, err := tenancy.Unprotected(ctx, e.owner)
	require.NoError(t, err)
	assert.Empty(t, un)
	prot, err := tenancy.ProtectedTables(ctx, e.owner)
	require.NoError(t, err)
	var names []string
	for _, p := range prot {
		assert.True(t, p.Enabled && p.Forced, p.Quoted())
		names = append(names, p.Name)
	}
	assert.ElementsMatch(t, []string{"notes", "comments", evil}, names)

	// A long name gets a distinct index name within the limit.
	long := strings.Repeat("l", 60)
	_, err = e.owner.Exec(ctx, `CREATE TABLE `+long+` (`+tenancy.TenantIDColumnSQL+`)`)
	require.NoError(t, err)
	require.NoError(t, tenancy.Protect(ctx, e.owner, long))

	// Wrong column type and missing table give clear errors.
	_, err = e.owner.Exec(ctx, `CREATE TABLE wrongtype (tenant_id text)`)
	require.NoError(t, err)
	assert.ErrorIs(t, tenancy.Protect(ctx, e.owner, "wrongtype"), tenancy.ErrInvalid)
	assert.ErrorContains(t, tenancy.Protect(ctx, e.owner, "missing"), "does not exist")
	_, err = e.owner.Exec(ctx, `CREATE TABLE later (id int)`)
	require.NoError(t, err)
	_, err = e.owner.Exec(ctx, `ALTER TABLE later ADD COLUMN tenant_id uuid`)
	require.NoError(t, err)
	un, err = tenancy.Unprotected(ctx, e.owner)
	require.NoError(t, err)
	assert.Equal(t, []tenancy.Table{{Schema: "public", Name: "later"}, {Schema: "public", Name: "wrongtype"}}, un)

	// A schema whose name merely starts with "pg" is the user's; it stays
	// listed with standard_conforming_strings off (where '\_' in a plain
	// literal would be an escape and "pg_%" would match "pgapp").
	_, err = e.owner.Exec(ctx, `CREATE SCHEMA pgapp; CREATE TABLE pgapp.orders (tenant_id uuid)`)
	require.NoError(t, err)
	want := []tenancy.Table{{Schema: "pgapp", Name: "orders"}, {Schema: "public", Name: "later"}, {Schema: "public", Name: "wrongtype"}}
	un, err = tenancy.Unprotected(ctx, e.owner)
	require.NoError(t, err)
	assert.Equal(t, want, un)
	// A session of its own: pgx prepares statements once per connection,
	// so a pool's connection would reuse what it parsed with the setting on.
	cfg, err := pgx.ParseConfig(e.db.URL)
	require.NoError(t, err)
	pgtest.ApplyExecMode(t, cfg)
	pgtest.ApplySession(t, cfg)
	// pgx refuses the simple protocol on a session with
	// standard_conforming_strings off: under JUSTPG_TEST_EXEC_MODE=simple
	// this session sends its statements in exec mode instead.
	if cfg.DefaultQueryExecMode == pgx.QueryExecModeSimpleProtocol {
		cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	}
	cfg.RuntimeParams["standard_conforming_strings"] = "off"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	defer conn.Close(ctx)
	un, err = tenancy.Unprotected(ctx, conn)
	require.NoError(t, err)
	assert.Equal(t, want, un, "with standard_conforming_strings off")
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	for _, cfg := range []tenancy.Config{
		{SchemaPrefix: `t"; drop`},
		{SchemaPrefix: "Upper_"},
		{Schema: "a\x00"},
		{AppRole: "r\x01"},
		{Retention: -1},
	} {
		_, err := tenancy.New(cfg)
		assert.Error(t, err, "%+v", cfg)
	}
	m, err := tenancy.New(tenancy.Config{})
	require.NoError(t, err)
	s, err := m.SchemaName("big-co")
	require.NoError(t, err)
	assert.Equal(t, "tenant_big_co", s)
}

// A connection killed in the middle of a tenant's transaction loses that
// transaction only; the pool recovers and the next transactions are clean.
func TestKilledConnectionMidTransaction(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *pgxpool.Config) { c.MaxConns = 2 })
	ctx := context.Background()
	a, b := e.tenant(t, "acme", tenancy.Shared), e.tenant(t, "globex", tenancy.Shared)
	e.insertNotes(t, a.ID, 1)
	err := e.m.WithTenant(ctx, e.app, a.ID, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO notes (body) VALUES ('doomed')`); err != nil {
			return err
		}
		var pid uint32 = tx.Conn().PgConn().PID()
		if _, err := e.owner.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO notes (body) VALUES ('after the kill')`)
		return err
	})
	require.Error(t, err)
	assert.Len(t, e.visible(t, e.app, a.ID), 1, "the killed transaction left nothing")
	assert.Empty(t, e.visible(t, e.app, b.ID))

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	err = e.m.WithTenant(cctx, e.app, a.ID, func(pgx.Tx) error { return nil })
	assert.ErrorIs(t, err, context.Canceled)
}

// After a server restart every pooled connection is gone; the pool
// reconnects, tenant transactions work again and nothing of the
// interrupted ones is visible.
func TestServerRestart(t *testing.T) {
	t.Parallel()
	srv := pgtest.NewCluster(t, pgtest.ClusterOptions{})
	e := newEnvOn(t, srv, func(c *pgxpool.Config) { c.MaxConns = 2 })
	ctx := context.Background()
	a, b := e.tenant(t, "acme", tenancy.Shared), e.tenant(t, "globex", tenancy.Dedicated)
	e.insertNotes(t, a.ID, 2)
	e.insertNotes(t, b.ID, 1)
	err := e.m.WithTenant(ctx, e.app, a.ID, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO notes (body) VALUES ('interrupted')`); err != nil {
			return err
		}
		if err := srv.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		_, err := tx.Exec(ctx, `SELECT 1`)
		return err
	})
	require.Error(t, err)
	// The pool's other connection died too; the first use may fail once.
	require.Eventually(t, func() bool {
		return e.m.WithTenant(ctx, e.app, a.ID, func(tx pgx.Tx) error { return nil }) == nil
	}, 30*time.Second, 50*time.Millisecond)
	assert.Len(t, e.visible(t, e.app, a.ID), 2)
	got := e.visible(t, e.app, b.ID)
	require.Len(t, got, 1)
	assert.Equal(t, b.ID, got[0])
	require.NoError(t, tenancy.Check(ctx, e.app))
}

// A transaction that enters a tenant while another holds the tenant's lock
// exclusively (a move between shared and dedicated storage does) waits for
// it, and then sees what it committed: under READ COMMITTED the tenant is
// looked up with a snapshot taken after the lock is granted; a REPEATABLE
// READ or SERIALIZABLE writer, whose snapshot is older, gets a serialization
// error to retry on rather than the stale state.
func TestEnterWaitsForTheTenantLockAndSeesItsCommit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tc := range []struct {
		name  string
		opts  pgx.TxOptions
		check func(t *testing.T, err error)
	}{
		{"read committed", pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(t *testing.T, err error) {
			assert.ErrorIs(t, err, tenancy.ErrSuspended, "the lookup must see the commit it waited for")
		}},
		{"repeatable read", pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(t *testing.T, err error) {
			var pgErr *pgconn.PgError
			require.ErrorAs(t, err, &pgErr)
			assert.Equal(t, "40001", pgErr.Code, "a serialization failure to retry on")
		}},
		{"serializable", pgx.TxOptions{IsoLevel: pgx.Serializable}, func(t *testing.T, err error) {
			var pgErr *pgconn.PgError
			require.ErrorAs(t, err, &pgErr)
			assert.Equal(t, "40001", pgErr.Code, "a serialization failure to retry on")
		}},
		// The session's default decides when TxOptions say nothing.
		{"repeatable read by default", pgx.TxOptions{}, func(t *testing.T, err error) {
			var pgErr *pgconn.PgError
			require.ErrorAs(t, err, &pgErr)
			assert.Equal(t, "40001", pgErr.Code, "a serialization failure to retry on")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			e := e
			if strings.HasSuffix(tc.name, "by default") {
				e = newEnv(t, func(c *pgxpool.Config) {
					c.ConnConfig.RuntimeParams["default_transaction_isolation"] = "repeatable read"
				})
			}
			a := e.tenant(t, strings.ReplaceAll(tc.name, " ", "-"), tenancy.Shared)
			holder, err := e.owner.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = holder.Rollback(ctx) }()
			_, err = holder.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('justpg.tenancy:' || $1::text, 0))`, a.ID)
			require.NoError(t, err)
			_, err = holder.Exec(ctx, `UPDATE justpg.tenancy_tenants SET status = 'suspended' WHERE id = $1`, a.ID)
			require.NoError(t, err)

			entered := make(chan error, 1)
			go func() {
				entered <- e.m.WithTenantTx(ctx, e.app, a.ID, tc.opts, func(pgx.Tx) error { return nil })
			}()
			// Wait until the entering transaction waits for the advisory lock.
			require.Eventually(t, func() bool {
				var waiting bool
				err := e.owner.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks
					WHERE locktype = 'advisory' AND mode = 'ShareLock' AND NOT granted
					  AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))`).Scan(&waiting)
				return err == nil && waiting
			}, 30*time.Second, 5*time.Millisecond)
			select {
			case err := <-entered:
				t.Fatalf("WithTenant returned while the tenant's lock was held: %v", err)
			default:
			}
			require.NoError(t, holder.Commit(ctx))
			tc.check(t, <-entered)
		})
	}
}
