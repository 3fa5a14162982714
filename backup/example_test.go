package backup_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/backup"
	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/jobs"
)

// Take a dump and prove it by restoring it: the drill restores into a
// temporary database and compares every table's exact row count with the
// manifest, which was counted in the dump's own snapshot.
func Example() {
	ctx := context.Background()
	// The example borrows the test harness for a database; an application
	// passes its own *pgxpool.Pool.
	db := pgtest.NewDB(&testing.T{})
	defer func() {
		db.Pool.Close()
		if conn, err := pgx.Connect(ctx, db.Server.AdminURL()); err == nil {
			_, _ = conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{db.Name}.Sanitize()+" WITH (FORCE)")
			_ = conn.Close(ctx)
		}
	}()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE notes AS SELECT g AS id, 'note ' || g AS body FROM generate_series(1, 3) g`); err != nil {
		fmt.Println(err)
		return
	}

	dir, _ := os.MkdirTemp("", "backups-")
	defer os.RemoveAll(dir)
	repo, err := backup.NewDirRepository(dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := backup.New(db.Pool, backup.Config{
		Repository: repo,
		OnDrill: func(r backup.DrillReport) {
			if !r.Passed {
				fmt.Println("ALERT: backup drill failed:", r.Err) // page someone
			}
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	man, err := m.Dump(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("dumped %d table(s), %d rows\n", len(man.Tables), man.TotalRows())

	rep, err := m.Drill(ctx, "") // the newest backup
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("drill passed: %v, restored %d rows\n", rep.Passed, rep.Rows)

	// Output:
	// dumped 1 table(s), 3 rows
	// drill passed: true, restored 3 rows
}

// Let the jobs package run the backups: every night a dump, its drill and
// retention; every Sunday a base backup into the same repository, its
// verification and retention. Run the jobs client on a pool whose role
// bypasses row-level security, and work the "backup" queue one job at a
// time. (Not run: it needs a server and its replication access.)
func ExampleManager_PeriodicJobs() {
	ctx := context.Background()
	systemPool, err := pgxpool.New(ctx, os.Getenv("SYSTEM_DATABASE_URL"))
	if err != nil {
		fmt.Println(err)
		return
	}
	repo, err := backup.NewDirRepository("/var/backups/shop")
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := backup.New(systemPool, backup.Config{Repository: repo,
		OnDrill: func(r backup.DrillReport) {
			if !r.Passed {
				fmt.Println("ALERT: backup drill failed:", r.Err)
			}
		}})
	if err != nil {
		fmt.Println(err)
		return
	}
	w := jobs.NewWorkers()
	periodic, err := m.PeriodicJobs(w, backup.Schedule{
		Dump:          "CRON_TZ=Europe/Berlin 15 2 * * *",
		Retention:     backup.Retention{Daily: 7, Weekly: 4, Monthly: 6},
		BaseBackup:    &backup.BaseBackupOptions{ConnString: os.Getenv("REPLICATION_DATABASE_URL"), Compress: true},
		BaseRetention: backup.Retention{Weekly: 4, Monthly: 3},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	client, err := jobs.New(systemPool, jobs.Config{Workers: w, Periodic: periodic,
		Queues: map[string]jobs.QueueConfig{"backup": {MaxWorkers: 1}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := client.Start(ctx); err != nil {
		fmt.Println(err)
	}
}
