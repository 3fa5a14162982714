package backup_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/justpg/justpg/backup"
	"github.com/justpg/justpg/internal/pgtest"
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
