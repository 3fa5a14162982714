package tenancy_test

import (
	"bytes"
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/tenancy"
)

func searchPath(sp string) func(*pgxpool.Config) {
	return func(c *pgxpool.Config) { c.ConnConfig.RuntimeParams["search_path"] = sp }
}

// The application role's sessions start with a search_path of the
// application's own schema only, an empty one, pg_catalog only or "$user"
// only, or with the default one ("$user", public) where public holds
// objects shadowing built-ins (pgtest.ShadowingSQL), as a role allowed to
// create there could plant them: scoping, the policies, a dedicated
// tenant's schema (which comes first), moving a tenant and exporting one
// still work.
func TestTenantScopeWithUnusualSearchPath(t *testing.T) {
	t.Parallel()
	cases := append(slices.Clone(pgtest.SearchPathCases), pgtest.SearchPathCase{Name: "user", SearchPath: `"$user"`})
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			var opts []func(*pgxpool.Config)
			if tc.SearchPath != "" {
				opts = append(opts, searchPath(tc.SearchPath))
			}
			e := newEnv(t, opts...)
			ctx := context.Background()
			_, err := e.owner.Exec(ctx, tc.SetupSQL())
			require.NoError(t, err)
			shared := e.tenant(t, "shared-"+randHex(3), tenancy.Shared)
			other := e.tenant(t, "other-"+randHex(3), tenancy.Shared)
			ded := e.tenant(t, "ded-"+randHex(3), tenancy.Dedicated)

			for _, tn := range []tenancy.Tenant{shared, other} {
				err := e.m.WithTenant(ctx, e.app, tn.ID, func(tx pgx.Tx) error {
					_, err := tx.Exec(ctx, `INSERT INTO public.notes (body) VALUES ($1)`, "of "+tn.Slug)
					return err
				})
				require.NoError(t, err)
			}
			err = e.m.WithTenant(ctx, e.app, shared.ID, func(tx pgx.Tx) error {
				var n int
				var mine bool
				if err := tx.QueryRow(ctx, `SELECT count(*), bool_and(tenant_id = $1) FROM public.notes`, shared.ID).Scan(&n, &mine); err != nil {
					return err
				}
				assert.Equal(t, 1, n, "the policy shows one tenant's rows")
				assert.True(t, mine)
				got, err := tenancy.Current(ctx, tx)
				assert.Equal(t, shared.ID, got)
				return err
			})
			require.NoError(t, err)
			// Outside a tenant the policy hides everything.
			var n int
			require.NoError(t, e.app.QueryRow(ctx, `SELECT count(*) FROM public.notes`).Scan(&n))
			assert.Zero(t, n)

			// The dedicated tenant's unqualified names go to its schema.
			err = e.m.WithTenant(ctx, e.app, ded.ID, func(tx pgx.Tx) error {
				var first string
				if err := tx.QueryRow(ctx, `SELECT (current_schemas(false))[1]`).Scan(&first); err != nil {
					return err
				}
				assert.Equal(t, ded.Schema, first)
				if _, err := tx.Exec(ctx, `INSERT INTO notes (body) VALUES ('dedicated')`); err != nil {
					return err
				}
				return tx.QueryRow(ctx, `SELECT count(*) FROM notes`).Scan(&n)
			})
			require.NoError(t, err)
			assert.Equal(t, 1, n)
			var where string
			require.NoError(t, e.owner.QueryRow(ctx, `SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
				WHERE c.relname = 'notes' AND n.nspname NOT IN ('public') LIMIT 1`).Scan(&where))
			assert.Equal(t, ded.Schema, where)
			var dedRows int
			require.NoError(t, e.owner.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{ded.Schema, "notes"}.Sanitize()).Scan(&dedRows))
			assert.Equal(t, 1, dedRows)

			// A repeatable-read transaction that may write runs the SECURITY
			// DEFINER tenancy_share_tenant.
			err = e.m.WithTenantTx(ctx, e.app, shared.ID, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, `INSERT INTO public.notes (body) VALUES ('rr')`)
				return err
			})
			require.NoError(t, err)

			// Moving a tenant copies its rows column by column; Export
			// lists the columns the same way.
			_, err = e.m.MoveToDedicated(ctx, e.owner, shared.ID)
			require.NoError(t, err)
			var buf bytes.Buffer
			rep, err := e.m.Export(ctx, e.app, shared.ID, &buf)
			require.NoError(t, err)
			var exported int64
			for _, n := range rep.Rows {
				exported += n
			}
			assert.Equal(t, int64(2), exported, buf.String())
			_, err = e.m.MoveToShared(ctx, e.owner, shared.ID)
			require.NoError(t, err)
		})
	}
}

// tenancy_share_tenant is SECURITY DEFINER: it runs as the owner of the
// tenants table. The application role plants, in a schema of its own that
// it lets everyone use and puts before pg_catalog on its search_path, an =
// operator for uuids and functions that shadow built-ins; a transaction that
// calls the function (REPEATABLE READ, may write) must not run them as the
// owner.
func TestShareTenantIgnoresCallerObjects(t *testing.T) {
	t.Parallel()
	e := newEnv(t, searchPath("evil, pg_catalog"))
	ctx := context.Background()
	role := pgx.Identifier{e.role}.Sanitize()
	_, err := e.owner.Exec(ctx, `CREATE SCHEMA evil AUTHORIZATION `+role)
	require.NoError(t, err)
	conn, err := e.owner.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, `SET ROLE `+role+`;
		GRANT USAGE ON SCHEMA evil TO PUBLIC;
		CREATE FUNCTION evil.trojan_eq(uuid, uuid) RETURNS boolean LANGUAGE plpgsql AS $t$
		BEGIN
			IF current_user <> '`+e.role+`' THEN
				RAISE EXCEPTION 'trojan = ran as %', current_user;
			END IF;
			RETURN pg_catalog.uuid_eq($1, $2);
		END $t$;
		CREATE OPERATOR evil.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = evil.trojan_eq);
		CREATE TABLE evil.tenancy_tenants (id uuid);
		RESET ROLE`, pgx.QueryExecModeSimpleProtocol)
	require.NoError(t, err)
	tn := e.tenant(t, "share-"+randHex(3), tenancy.Shared)
	err = e.m.WithTenantTx(ctx, e.app, tn.ID, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO public.notes (body) VALUES ('rr')`)
		return err
	})
	require.NoError(t, err)
	var n int
	require.NoError(t, e.owner.QueryRow(ctx, `SELECT count(*) FROM public.notes WHERE tenant_id = $1`, tn.ID).Scan(&n))
	assert.Equal(t, 1, n)
}
