package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/jobs"
)

// WelcomeEmail is a kind of job: its args are stored as JSON.
type WelcomeEmail struct {
	UserID int64 `json:"user_id"`
}

// Kind names the kind; workers are registered per kind.
func (WelcomeEmail) Kind() string { return "welcome_email" }

// Example enqueues a job in the same transaction as the business write, and
// a worker processes it, failing once and succeeding on the retry.
func Example() {
	ctx := context.Background()
	db, dropDB := pgtest.ForExample() // an application: pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	defer dropDB()
	pool := db.Pool
	if err := jobs.Migrate(ctx, pool); err != nil {
		log.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE users (id bigint PRIMARY KEY, email text)`); err != nil {
		log.Fatal(err)
	}

	done := make(chan struct{})
	workers := jobs.NewWorkers()
	jobs.AddWorker(workers, func(ctx context.Context, job *jobs.Job[WelcomeEmail]) error {
		if job.Attempt == 1 {
			return errors.New("mail server busy")
		}
		fmt.Printf("attempt %d: sending welcome email to user %d\n", job.Attempt, job.Args.UserID)
		close(done)
		return nil
	}, jobs.WorkerOptions{
		// Retry quickly for the example; the default backs off attempt⁴ seconds.
		NextRetry: func(*jobs.JobRow) time.Time { return time.Now().Add(10 * time.Millisecond) },
	})
	client, err := jobs.New(pool, jobs.Config{
		Workers: workers,
		Queues:  map[string]jobs.QueueConfig{jobs.DefaultQueue: {MaxWorkers: 10}},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := client.Start(ctx); err != nil {
		log.Fatal(err)
	}

	// The user and their welcome email commit together, or not at all.
	var jobID int64
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO users (id, email) VALUES (7, 'ada@example.com')`); err != nil {
			return err
		}
		res, err := client.Insert(ctx, tx, WelcomeEmail{UserID: 7}, &jobs.InsertOpts{MaxAttempts: 3})
		if err != nil {
			return err
		}
		jobID = res.Job.ID
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}

	<-done
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := client.Stop(stopCtx); err != nil { // waits for the outcome to be recorded
		log.Fatal(err)
	}
	job, err := client.JobByID(ctx, pool, jobID)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("state:", job.State, "attempts:", job.Attempt, "first error:", job.Errors[0].Error)
	// Output:
	// attempt 2: sending welcome email to user 7
	// state: completed attempts: 2 first error: mail server busy
}
