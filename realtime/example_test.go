package realtime_test

import (
	"context"
	"fmt"
	"log"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/realtime"
)

type OrderPlaced struct {
	ID    int    `json:"id"`
	Total string `json:"total"`
}

func Example() {
	ctx := context.Background()
	pool, cleanup := examplePool()
	defer cleanup()
	if err := realtime.Migrate(ctx, pool); err != nil {
		log.Fatal(err)
	}

	b, err := realtime.New(pool, realtime.Config{})
	if err != nil {
		log.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer b.Stop(ctx)

	sub, err := b.Subscribe(ctx, "user:42")
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()

	// A rolled-back transaction publishes nothing; a committed one does.
	for _, commit := range []bool{false, true} {
		tx, err := pool.Begin(ctx)
		if err != nil {
			log.Fatal(err)
		}
		if err := realtime.PublishJSON(ctx, b, tx, "user:42", OrderPlaced{ID: 7, Total: "12.50"}); err != nil {
			log.Fatal(err)
		}
		if commit {
			err = tx.Commit(ctx)
		} else {
			err = tx.Rollback(ctx)
		}
		if err != nil {
			log.Fatal(err)
		}
	}

	ev, err := sub.Next(ctx)
	if err != nil {
		log.Fatal(err)
	}
	order, err := realtime.DecodeJSON[OrderPlaced](ev)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s: order %d, total %s\n", ev.Channel, order.ID, order.Total)
	fmt.Println("buffered after the commit:", sub.Buffered())
	// Output:
	// user:42: order 7, total 12.50
	// buffered after the commit: 0
}

// examplePool gives the example a fresh database on the test server; an
// application would use pgxpool.New(ctx, os.Getenv("DATABASE_URL")).
func examplePool() (*pgxpool.Pool, func()) {
	db, done := pgtest.ForExample()
	return db.Pool, done
}
