package backup_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/backup"
	"github.com/justpg/justpg/internal/pgtest"
)

// SweepDrills drops the databases of crashed drills that are old enough
// and that nobody uses, and leaves alone young ones, ones with a session,
// and the databases of drills running at the same time.
func TestSweepDrillsDropsOnlyStaleUnusedDatabases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	seed(t, db, 2000)
	m, _ := newManager(t, db, backup.Config{})
	man, err := m.Dump(ctx)
	require.NoError(t, err)

	name := func(age time.Duration) string {
		return fmt.Sprintf("justpg_drill_%d_%08x", time.Now().Add(-age).Unix(), time.Now().UnixNano()&0xffffffff)
	}
	create := func(n string) {
		_, err := db.Pool.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{n}.Sanitize())
		require.NoError(t, err)
		t.Cleanup(func() {
			_, _ = db.Pool.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{n}.Sanitize()+" WITH (FORCE)")
		})
	}
	stale, young := name(49*time.Hour), name(time.Hour)
	other := "justpg_drill_not_a_drill"
	for _, n := range []string{stale, young, other} {
		create(n)
	}
	// A session on busy, as a drill (or its pg_restore) still running has.
	// Until the session is in, busy is stale and unused, and another test's
	// drill may sweep it first: then take another.
	var busy string
	var session *pgx.Conn
	for attempt := 0; session == nil; attempt++ {
		require.Less(t, attempt, 10, "busy was swept before a session could reach it, ten times")
		busy = name(50 * time.Hour)
		create(busy)
		cfg := db.Pool.Config().ConnConfig.Copy()
		cfg.Database = busy
		conn, err := pgx.ConnectConfig(ctx, cfg)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "3D000" { // invalid_catalog_name
			continue
		}
		require.NoError(t, err)
		session = conn
	}

	// Drills run meanwhile; the sweep must not touch their databases.
	var wg sync.WaitGroup
	drillErrs := make(chan error, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := m.Drill(ctx, man.ID)
			drillErrs <- err
		}()
	}
	var dropped []string
	for range 5 {
		d, err := m.SweepDrills(ctx, 24*time.Hour)
		require.NoError(t, err)
		dropped = append(dropped, d...)
	}
	wg.Wait()
	close(drillErrs)
	for err := range drillErrs {
		require.NoError(t, err, "a drill running during the sweep passes")
	}

	// Another test's drill may have swept stale first: check the server.
	assert.False(t, drillDatabaseExists(t, db, stale), "a stale unused drill database is dropped")
	assert.True(t, drillDatabaseExists(t, db, busy), "a drill database in use is kept")
	assert.True(t, drillDatabaseExists(t, db, young), "a young drill database is kept")
	assert.True(t, drillDatabaseExists(t, db, other), "a name that is not a drill's is kept")
	assert.NotContains(t, dropped, busy)
	assert.NotContains(t, dropped, young)

	// Once its session is gone, the stale busy one goes too.
	require.NoError(t, session.Close(ctx))
	require.Eventually(t, func() bool {
		_, err := m.SweepDrills(ctx, 24*time.Hour)
		return err == nil && !drillDatabaseExists(t, db, busy)
	}, 30*time.Second, 100*time.Millisecond)
	assert.True(t, drillDatabaseExists(t, db, young))
}
