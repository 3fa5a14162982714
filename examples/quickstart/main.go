// Command quickstart shows the ground every justpg package stands on: it
// finds a PostgreSQL server (DATABASE_URL, or a throwaway one started from
// Docker or the local server binaries), applies versioned migrations under an
// advisory lock, and runs a query through the shared pool.
//
//	go run ./examples/quickstart
package main

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/internal/migrate"
	"github.com/justpg/justpg/internal/pgtest"
)

//go:embed migrations/*.sql
var migrations embed.FS

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()

	start := time.Now()
	url, stop, err := pgtest.ExampleDatabase(ctx, "justpg_quickstart")
	if err != nil {
		return err
	}
	defer stop()
	source := "DATABASE_URL"
	if os.Getenv("DATABASE_URL") == "" {
		source = "a throwaway server"
	}
	fmt.Printf("database ready from %s in %v\n", source, time.Since(start).Round(time.Millisecond))

	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	var version string
	if err := pool.QueryRow(ctx, `SHOW server_version`).Scan(&version); err != nil {
		return err
	}
	fmt.Printf("connected: PostgreSQL %s\n", version)

	sub, _ := fs.Sub(migrations, "migrations")
	applied, err := migrate.Run(ctx, pool, "", migrate.Line{Name: "quickstart", FS: sub})
	if err != nil {
		return err
	}
	for _, m := range applied {
		fmt.Printf("applied migration quickstart %03d_%s\n", m.Version, m.Name)
	}
	if len(applied) == 0 {
		fmt.Println("migrations already up to date")
	}

	var id int64
	if err := pool.QueryRow(ctx, `INSERT INTO justpg.quickstart_notes (body) VALUES ($1) RETURNING id`,
		"PostgreSQL already does it").Scan(&id); err != nil {
		return err
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM justpg.quickstart_notes`).Scan(&n); err != nil {
		return err
	}
	fmt.Printf("stored note %d; %d note(s) in justpg.quickstart_notes\n", id, n)
	return nil
}
