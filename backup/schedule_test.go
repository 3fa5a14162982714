package backup_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/backup"
	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/jobs"
)

// The jobs package runs the scheduled backups: dump + drill + prune and
// base backup + verification + prune, each slot once, and retention
// leaves exactly the newest of each.
func TestPeriodicJobsRunBackups(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cluster := pgtest.NewCluster(t, pgtest.ClusterOptions{})
	binDir, err := cluster.BinDir()
	require.NoError(t, err)
	pool := clusterPool(t, cluster)
	require.NoError(t, jobs.Migrate(ctx, pool))
	_, err = pool.Exec(ctx, `CREATE TABLE orders (id int PRIMARY KEY, what text);
		INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, 2000) g`)
	require.NoError(t, err)

	repo, err := backup.NewDirRepository(t.TempDir())
	require.NoError(t, err)
	var passed, failed atomic.Int32
	m, err := backup.New(pool, backup.Config{Repository: repo, BinDir: binDir, OnDrill: func(r backup.DrillReport) {
		if r.Passed {
			passed.Add(1)
		} else {
			failed.Add(1)
		}
	}})
	require.NoError(t, err)

	w := jobs.NewWorkers()
	_, err = m.PeriodicJobs(w, backup.Schedule{BaseBackup: &backup.BaseBackupOptions{}})
	require.ErrorIs(t, err, backup.ErrConfig, "a base backup needs a connection string")
	_, err = m.PeriodicJobs(w, backup.Schedule{Dump: "-", Retention: backup.Retention{Daily: -1}})
	require.ErrorIs(t, err, backup.ErrConfig)

	w = jobs.NewWorkers()
	periodic, err := m.PeriodicJobs(w, backup.Schedule{
		Dump:               "@every 1s",
		Retention:          backup.Retention{Daily: 1},
		BaseBackup:         &backup.BaseBackupOptions{ConnString: cluster.AdminURL(), BinDir: binDir, TempDir: t.TempDir()},
		BaseBackupSchedule: "@every 1s",
		BaseRetention:      backup.Retention{Daily: 1},
	})
	require.NoError(t, err)
	require.Len(t, periodic, 2)
	client, err := jobs.New(pool, jobs.Config{Workers: w, Periodic: periodic,
		Queues:            map[string]jobs.QueueConfig{"backup": {MaxWorkers: 1}},
		FetchPollInterval: 200 * time.Millisecond, LeaseDuration: 2 * time.Second})
	require.NoError(t, err)
	require.NoError(t, client.Start(ctx))
	completed := func(kind string) int {
		var n int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM justpg.jobs WHERE kind = $1 AND state = 'completed'`, kind).Scan(&n))
		return n
	}
	require.Eventually(t, func() bool {
		return completed("justpg.backup.dump") >= 2 && completed("justpg.backup.base") >= 2
	}, 90*time.Second, 200*time.Millisecond, "two runs of each job")
	stopCtx, stopCancel := context.WithTimeout(ctx, 60*time.Second)
	defer stopCancel()
	require.NoError(t, client.Stop(stopCtx)) // lets a running job finish

	var notDone int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM justpg.jobs WHERE kind LIKE 'justpg.backup.%' AND state NOT IN ('completed', 'available')`).Scan(&notDone))
	assert.Zero(t, notDone, "no backup job failed or was cancelled")
	assert.Zero(t, failed.Load())
	assert.GreaterOrEqual(t, passed.Load(), int32(2), "every dump was drilled")

	// Daily 1: every run today pruned the ones before it.
	list, err := m.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.NotNil(t, list[0].LastDrill)
	assert.True(t, list[0].LastDrill.Passed)
	bases, err := backup.ListBaseBackups(ctx, repo)
	require.NoError(t, err)
	require.Len(t, bases, 1)
	require.NotNil(t, bases[0].LastVerify)
	assert.True(t, bases[0].LastVerify.Passed)
}
