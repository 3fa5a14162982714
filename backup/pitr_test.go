package backup_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/backup"
	"github.com/justpg/justpg/internal/pgtest"
)

// sharedDir makes a directory the server's user can use: the archive
// repository and a copy of this test binary, which the server runs as its
// archive_command and restore_command (the real Go functions).
func sharedDir(t *testing.T, srv *pgtest.Server) (dir, bin string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "justpg-backup-test-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	self, err := os.Executable()
	require.NoError(t, err)
	bin = filepath.Join(dir, "helper")
	if os.Link(self, bin) != nil { // a hard link is instant; copy across file systems
		in, err := os.Open(self)
		require.NoError(t, err)
		defer in.Close()
		out, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
		require.NoError(t, err)
		_, err = io.Copy(out, in)
		require.NoError(t, err)
		require.NoError(t, out.Close())
	}
	require.NoError(t, os.Chmod(bin, 0o755))
	uid, gid, _ := srv.Owner()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "repo"), 0o750))
	require.NoError(t, os.Chown(filepath.Join(dir, "repo"), uid, gid))
	return dir, bin
}

func clusterPool(t *testing.T, srv *pgtest.Server) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), srv.AdminURL())
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// Point-in-time recovery end to end: an accidental DELETE is undone by
// restoring a base backup plus archived WAL to the moment before it, in a
// second cluster.
func TestPITREndToEnd(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	primary := pgtest.NewCluster(t, pgtest.ClusterOptions{})
	binDir, err := primary.BinDir()
	require.NoError(t, err)
	dir, bin := sharedDir(t, primary)
	repoDir := filepath.Join(dir, "repo")
	pool := clusterPool(t, primary)

	// Archiving through the Go archive function, configured with ALTER
	// SYSTEM; archive_mode needs a restart.
	archiveCmd := helperEnv + "=archive " + backup.ShellQuote(bin) + " " + backup.ShellQuote(repoDir) + " %p %f"
	restart, err := backup.ConfigureArchiving(ctx, pool, archiveCmd)
	require.NoError(t, err)
	require.True(t, restart, "archive_mode needs a restart")
	st, err := backup.CheckArchiver(ctx, pool, 0)
	require.NoError(t, err)
	assert.False(t, st.Healthy, "not yet: archive_mode is still off")
	require.NoError(t, primary.Restart(ctx))
	pool.Reset() // drop the connections the restart killed
	restart, err = backup.ConfigureArchiving(ctx, pool, archiveCmd)
	require.NoError(t, err)
	require.False(t, restart)

	_, err = pool.Exec(ctx, `CREATE TABLE orders (id int PRIMARY KEY, what text)`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO orders SELECT g, 'before base backup' FROM generate_series(1, 1000) g`)
	require.NoError(t, err)

	// The base backup goes into the repository (tar files, each with its
	// SHA-256, manifest last), is verified by unpacking it and running
	// pg_verifybackup, and is unpacked again for the recovery.
	repo, err := backup.NewDirRepository(repoDir)
	require.NoError(t, err)
	info, err := backup.StoreBaseBackup(ctx, repo, backup.BaseBackupOptions{ConnString: primary.AdminURL(), BinDir: binDir,
		Compress: true, TempDir: t.TempDir()})
	require.NoError(t, err)
	assert.Positive(t, info.Size)
	names := []string{}
	for _, f := range info.Files {
		names = append(names, f.Name)
	}
	assert.Subset(t, names, []string{"base.tar.gz", "pg_wal.tar.gz", "backup_manifest"})
	require.NoError(t, backup.VerifyStoredBaseBackup(ctx, repo, info.ID, binDir, t.TempDir()))
	bases, err := backup.ListBaseBackups(ctx, repo)
	require.NoError(t, err)
	require.Len(t, bases, 1)
	require.NotNil(t, bases[0].LastVerify)
	assert.True(t, bases[0].LastVerify.Passed)
	baseDir := filepath.Join(t.TempDir(), "base")
	_, err = backup.RestoreBaseBackup(ctx, repo, info.ID, baseDir)
	require.NoError(t, err)

	_, err = pool.Exec(ctx, `INSERT INTO orders SELECT g, 'after base backup' FROM generate_series(1001, 1500) g`)
	require.NoError(t, err)
	var target time.Time
	require.NoError(t, pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&target))
	time.Sleep(50 * time.Millisecond)                              // commits below get strictly later timestamps
	_, err = pool.Exec(ctx, `DELETE FROM orders WHERE id % 2 = 0`) // the accident
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `INSERT INTO orders VALUES (5000, 'after the target')`)
	require.NoError(t, err)
	var seg string
	require.NoError(t, pool.QueryRow(ctx, `SELECT pg_walfile_name(pg_switch_wal())`).Scan(&seg))
	require.Eventually(t, func() bool {
		_, err := os.Stat(filepath.Join(repoDir, "wal", seg))
		return err == nil
	}, 60*time.Second, 100*time.Millisecond, "segment %s archived", seg)
	st, err = backup.CheckArchiver(ctx, pool, time.Hour)
	require.NoError(t, err)
	assert.True(t, st.Healthy, "%v", st.Problems)
	assert.Positive(t, st.ArchivedCount)

	// A target before the base backup is refused up front.
	restoreCmd := helperEnv + "=restore " + backup.ShellQuote(bin) + " " + backup.ShellQuote(repoDir) + " %p %f"
	early := filepath.Join(t.TempDir(), "early")
	err = backup.PreparePITR(ctx, backup.PITROptions{BaseBackup: baseDir, DataDir: early, RestoreCommand: restoreCmd,
		TargetTime: info.Started.Add(-time.Hour)})
	require.ErrorIs(t, err, backup.ErrTargetBeforeBackup)
	_, err = os.Stat(early)
	assert.ErrorIs(t, err, os.ErrNotExist, "nothing was written")

	// Recover into a second cluster.
	replica := pgtest.NewCluster(t, pgtest.ClusterOptions{})
	dataDir, err := replica.DataDir()
	require.NoError(t, err)
	require.NoError(t, replica.StopServer(ctx))
	require.NoError(t, os.RemoveAll(dataDir))
	uid, gid, asRoot := replica.Owner()
	require.NoError(t, backup.PreparePITR(ctx, backup.PITROptions{BaseBackup: baseDir, DataDir: dataDir,
		RestoreCommand: restoreCmd, TargetTime: target, Chown: asRoot, UID: uid, GID: gid}))
	// Started by the package, as an operator would: pg_ctl on the laid-out
	// directory, on the replica's port, with a socket directory of its own
	// (the base backup's configuration is the primary's).
	sockDir, err := os.MkdirTemp("", "justpg-pitr-sock-") // t.TempDir's parent is private to root
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	if asRoot {
		require.NoError(t, os.Chown(sockDir, uid, gid))
	}
	port, err := replica.Port()
	require.NoError(t, err)
	srvOpts := backup.ServerOptions{BinDir: binDir, DataDir: dataDir, Port: port, SocketDir: sockDir,
		Settings: map[string]string{"max_connections": "300"}, // as the harness ran the primary
		RunAs:    asRoot, UID: uid, GID: gid}
	require.NoError(t, backup.StartServer(ctx, srvOpts))
	t.Cleanup(func() {
		// Before the harness's own clean-up (cleanups run last first).
		assert.NoError(t, backup.StopServer(context.Background(), srvOpts))
	})
	rpool := clusterPool(t, replica)
	res, err := backup.ConfirmRecovery(ctx, rpool, target)
	require.NoError(t, err)
	assert.True(t, res.Promoted)
	assert.Greater(t, res.Timeline, int64(1), "promotion starts a new timeline")
	assert.False(t, res.LastReplayed.After(target))

	var total, after, late int
	require.NoError(t, rpool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE what = 'after base backup'),
		count(*) FILTER (WHERE id = 5000) FROM orders`).Scan(&total, &after, &late))
	assert.Equal(t, 1500, total, "the deleted rows are back")
	assert.Equal(t, 500, after, "rows written after the base backup came from archived WAL")
	assert.Equal(t, 0, late, "rows written after the target are not there")
	// The recovered cluster is writable.
	_, err = rpool.Exec(ctx, `INSERT INTO orders VALUES (6000, 'recovered')`)
	require.NoError(t, err)

	// A base backup changed after it was taken fails verification.
	require.NoError(t, os.WriteFile(filepath.Join(baseDir, "PG_VERSION"), []byte("99\n"), 0o600))
	err = backup.VerifyBaseBackup(ctx, binDir, baseDir)
	assert.ErrorIs(t, err, backup.ErrChecksum)
	// So does a stored one: the failure is recorded, and neither a restore
	// nor retention treats it as good.
	stored := filepath.Join(repoDir, "base", info.ID, "base.tar.gz")
	b, err := os.ReadFile(stored)
	require.NoError(t, err)
	b[len(b)/2] ^= 0x55
	require.NoError(t, os.WriteFile(stored, b, 0o640))
	err = backup.VerifyStoredBaseBackup(ctx, repo, info.ID, binDir, t.TempDir())
	assert.ErrorIs(t, err, backup.ErrChecksum)
	bad := filepath.Join(t.TempDir(), "bad")
	_, err = backup.RestoreBaseBackup(ctx, repo, info.ID, bad)
	assert.ErrorIs(t, err, backup.ErrChecksum)
	_, err = os.Stat(bad)
	assert.ErrorIs(t, err, os.ErrNotExist, "a failed restore leaves nothing behind")
	bases, err = backup.ListBaseBackups(ctx, repo)
	require.NoError(t, err)
	require.Len(t, bases, 1)
	assert.False(t, bases[0].Good())
}
