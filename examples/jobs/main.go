// Command jobs is a small shop that takes orders: each order and the job that
// emails its receipt are written in one transaction, so there is never an
// order without its email nor an email for an order that was rolled back.
// The mail "server" fails now and then; the job is retried with backoff until
// it goes through.
//
//	go run ./examples/jobs
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"os/signal"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/jobs"
)

// SendReceipt emails the receipt of one order.
type SendReceipt struct {
	OrderID int64  `json:"order_id"`
	Email   string `json:"email"`
}

// Kind names the job kind.
func (SendReceipt) Kind() string { return "send_receipt" }

// InsertOpts puts receipts on their own queue with a few attempts.
func (SendReceipt) InsertOpts() jobs.InsertOpts {
	return jobs.InsertOpts{Queue: "email", MaxAttempts: 5}
}

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	url, stop, err := pgtest.ExampleDatabase(ctx, "justpg_jobs_example")
	if err != nil {
		return err
	}
	defer stop()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := jobs.Migrate(ctx, pool); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS orders (
		id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text NOT NULL, total_cents int NOT NULL)`); err != nil {
		return err
	}

	var sent atomic.Int32
	workers := jobs.NewWorkers()
	jobs.AddWorker(workers, func(ctx context.Context, j *jobs.Job[SendReceipt]) error {
		if rand.IntN(3) == 0 { // the mail server is flaky
			return errors.New("smtp: 421 service not available")
		}
		sent.Add(1)
		fmt.Printf("receipt for order %d sent to %s (attempt %d)\n", j.Args.OrderID, j.Args.Email, j.Attempt)
		return nil
	}, jobs.WorkerOptions{
		Timeout: 10 * time.Second,
		// Short backoff for the demo; the default is attempt⁴ seconds with jitter.
		NextRetry: func(j *jobs.JobRow) time.Time {
			return time.Now().Add(time.Duration(j.Attempt*j.Attempt) * 50 * time.Millisecond)
		},
	})
	client, err := jobs.New(pool, jobs.Config{
		Workers: workers,
		Queues:  map[string]jobs.QueueConfig{"email": {MaxWorkers: 5}},
		Hooks: jobs.Hooks{OnFinish: func(ctx context.Context, j *jobs.JobRow, out jobs.Outcome) {
			if out.Err != nil {
				fmt.Printf("order job %d attempt %d failed: %v; next try at %s\n", j.ID, j.Attempt, out.Err, out.RunAt.Format("15:04:05.000"))
			}
		}},
	})
	if err != nil {
		return err
	}
	if err := client.Start(ctx); err != nil {
		return err
	}

	customers := []string{"ada@example.com", "grace@example.com", "edsger@example.com", "barbara@example.com"}
	for i, email := range customers {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			var id int64
			if err := tx.QueryRow(ctx, `INSERT INTO orders (email, total_cents) VALUES ($1, $2) RETURNING id`,
				email, 1000*(i+1)).Scan(&id); err != nil {
				return err
			}
			if _, err := client.Insert(ctx, tx, SendReceipt{OrderID: id, Email: email}, nil); err != nil {
				return err
			}
			if i == 3 {
				return errors.New("card declined") // rolls back the order and its email job
			}
			return nil
		})
		if err != nil {
			fmt.Printf("order for %s rolled back: %v (no receipt will be sent)\n", email, err)
		}
	}

	deadline := time.After(30 * time.Second)
	for sent.Load() < 3 {
		select {
		case <-deadline:
			return errors.New("receipts not sent in time")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	stopCtx, cancelStop := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelStop()
	if err := client.Stop(stopCtx); err != nil {
		return err
	}
	page, err := client.List(ctx, pool, jobs.ListParams{Queue: "email"})
	if err != nil {
		return err
	}
	for _, j := range page.Jobs {
		fmt.Printf("job %d: %s after %d attempt(s), %d error(s) kept\n", j.ID, j.State, j.Attempt, len(j.Errors))
	}
	return nil
}
