package jobs

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTenantIsolationWithRLS enables the tenancy convention's policy on the
// jobs table under a non-superuser role and shows that jobs inserted in one
// tenant's transaction are stamped with its tenant and invisible to another.
func TestTenantIsolationWithRLS(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	role := "jobs_app_" + db.Name[len(db.Name)-12:]
	_, err := db.Pool.Exec(ctx, `
CREATE ROLE `+role+` NOLOGIN;
GRANT USAGE ON SCHEMA justpg TO `+role+`;
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA justpg TO `+role+`;
ALTER TABLE justpg.jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON justpg.jobs USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid));`)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = db.Pool.Exec(context.Background(), `DROP OWNED BY `+role+`; DROP ROLE IF EXISTS `+role)
	})
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[noopArgs]) error { return nil })
	c := newClient(t, db.Pool, w, nil)
	const tenantA, tenantB = "0b0d5a2e-0000-4000-8000-00000000000a", "0b0d5a2e-0000-4000-8000-00000000000b"
	asTenant := func(tenant string, fn func(tx pgx.Tx)) {
		t.Helper()
		require.NoError(t, pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT set_config('role', $1, true), set_config('app.tenant_id', $2, true)`, role, tenant); err != nil {
				return err
			}
			fn(tx)
			return nil
		}))
	}
	var idA, idB int64
	asTenant(tenantA, func(tx pgx.Tx) {
		res, err := c.Insert(ctx, tx, noopArgs{N: 1}, &InsertOpts{Unique: &UniqueOpts{Key: "same"}})
		require.NoError(t, err)
		idA = res.Job.ID
		assert.Equal(t, tenantA, res.Job.TenantID)
	})
	asTenant(tenantB, func(tx pgx.Tx) {
		// The same unique key in another tenant is another job.
		res, err := c.Insert(ctx, tx, noopArgs{N: 2}, &InsertOpts{Unique: &UniqueOpts{Key: "same"}})
		require.NoError(t, err)
		assert.False(t, res.Skipped)
		idB = res.Job.ID
		assert.Equal(t, tenantB, res.Job.TenantID)
		page, err := c.List(ctx, tx, ListParams{})
		require.NoError(t, err)
		require.Len(t, page.Jobs, 1)
		assert.Equal(t, idB, page.Jobs[0].ID)
		_, err = c.JobByID(ctx, tx, idA)
		assert.ErrorIs(t, err, ErrNotFound)
		j, err := c.CancelJob(ctx, tx, idA)
		assert.ErrorIs(t, err, ErrNotFound, "cannot cancel another tenant's job")
		assert.Nil(t, j)
	})
	asTenant(tenantA, func(tx pgx.Tx) {
		res, err := c.Insert(ctx, tx, noopArgs{N: 3}, &InsertOpts{Unique: &UniqueOpts{Key: "same"}})
		require.NoError(t, err)
		assert.True(t, res.Skipped)
		assert.Equal(t, idA, res.Job.ID)
	})
	var a, b string
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT (SELECT tenant_id::text FROM justpg.jobs WHERE id = $1), (SELECT tenant_id::text FROM justpg.jobs WHERE id = $2)`, idA, idB).Scan(&a, &b))
	assert.Equal(t, tenantA, a)
	assert.Equal(t, tenantB, b)
	// The workers (the pool's owner role) still run every tenant's jobs.
	start(t, c)
	waitState(t, c, idA, StateCompleted)
	waitState(t, c, idB, StateCompleted)
	done, err := c.JobByID(ctx, db.Pool, idB)
	require.NoError(t, err)
	assert.Equal(t, tenantB, done.TenantID, "the job keeps its tenant through the worker's fetch and completion")
}
