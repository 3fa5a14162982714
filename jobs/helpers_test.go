package jobs

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
)

func TestMain(m *testing.M) {
	// The kill -9 tests re-execute this binary as a worker process.
	if u := os.Getenv(childURLEnv); u != "" {
		os.Exit(runChild(u))
	}
	pgtest.Main(m)
}

func newDB(t testing.TB, opts ...pgtest.Option) *pgtest.DB {
	t.Helper()
	return pgtest.NewDB(t, append([]pgtest.Option{pgtest.WithSetup("jobs", func(ctx context.Context, pool *pgxpool.Pool) error {
		return Migrate(ctx, pool)
	})}, opts...)...)
}

// noopArgs and the other kinds used by the tests.
type noopArgs struct {
	N int `json:"n"`
}

func (noopArgs) Kind() string { return "noop" }

type failArgs struct {
	Msg string `json:"msg"`
}

func (failArgs) Kind() string { return "fail" }

type blockArgs struct {
	Tag string `json:"tag"`
}

func (blockArgs) Kind() string { return "block" }

// recorder counts runs per job ID.
type recorder struct {
	mu   sync.Mutex
	runs map[int64]int
	ch   chan int64
}

func newRecorder() *recorder { return &recorder{runs: map[int64]int{}, ch: make(chan int64, 100000)} }

func (r *recorder) add(id int64) {
	r.mu.Lock()
	r.runs[id]++
	r.mu.Unlock()
	select {
	case r.ch <- id:
	default:
	}
}

func (r *recorder) count(id int64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runs[id]
}

func fastRetry(*JobRow) time.Time { return time.Now().Add(10 * time.Millisecond) }

// newClient builds a client with short intervals for tests.
func newClient(t testing.TB, pool *pgxpool.Pool, w *Workers, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		Workers:           w,
		Queues:            map[string]QueueConfig{DefaultQueue: {MaxWorkers: 10}},
		FetchPollInterval: 200 * time.Millisecond,
		LeaseDuration:     2 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(pool, cfg)
	require.NoError(t, err)
	return c
}

func start(t testing.TB, c *Client) {
	t.Helper()
	require.NoError(t, c.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Stop(ctx); err != nil && !errors.Is(err, ErrNotStarted) {
			t.Errorf("stop: %v", err)
		}
	})
}

func waitState(t testing.TB, c *Client, id int64, want State) *JobRow {
	t.Helper()
	var j *JobRow
	require.Eventually(t, func() bool {
		var err error
		j, err = c.JobByID(context.Background(), c.pool, id)
		require.NoError(t, err)
		return j.State == want
	}, 20*time.Second, 10*time.Millisecond, "job %d never reached %s", id, want)
	return j
}
