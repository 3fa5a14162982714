package jobs

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
)

const (
	childURLEnv  = "JUSTPG_JOBS_CHILD_URL"
	childIDEnv   = "JUSTPG_JOBS_CHILD_ID"
	childModeEnv = "JUSTPG_JOBS_CHILD_MODE"
)

// lossArgs is the kind of the loss test: Fail is the per-attempt failure
// probability in percent.
type lossArgs struct {
	Fail int `json:"fail"`
}

func (lossArgs) Kind() string { return "loss" }

func lossWorker(ctx context.Context, j *Job[lossArgs]) error {
	if rand.IntN(100) < j.Args.Fail {
		return fmt.Errorf("random failure of attempt %d", j.Attempt)
	}
	return nil
}

// runChild is a worker process: "block" runs blockArgs jobs that never
// finish, "loss" runs the loss test's jobs. It runs until it is killed.
func runChild(url string) int {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if mode, set, err := pgtest.ExecMode(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	} else if set {
		cfg.ConnConfig.DefaultQueryExecMode = mode // the parent's, from the environment
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[blockArgs]) error { select {} }, WorkerOptions{Timeout: -1})
	AddWorker(w, lossWorker, WorkerOptions{NextRetry: fastRetry})
	c, err := New(pool, Config{Workers: w, ID: os.Getenv(childIDEnv), LeaseDuration: time.Second,
		Queues: map[string]QueueConfig{DefaultQueue: {MaxWorkers: 20}}, FetchPollInterval: 100 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := c.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	return 0
}

// startChild re-executes the test binary as a worker process.
func startChild(t *testing.T, url, id, mode string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childURLEnv+"="+url, childIDEnv+"="+id, childModeEnv+"="+mode)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// auditCompletions records every transition to completed, so that a test
// can prove no job was completed twice.
func auditCompletions(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `
CREATE TABLE completions (id bigint NOT NULL);
CREATE FUNCTION audit_completion() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO completions (id) VALUES (NEW.id); RETURN NEW; END $$;
CREATE TRIGGER audit_completion AFTER UPDATE ON justpg.jobs FOR EACH ROW
	WHEN (NEW.state = 'completed' AND OLD.state <> 'completed') EXECUTE FUNCTION audit_completion();`)
	require.NoError(t, err)
}

// checkExactlyOnce asserts that all n jobs finished, each completed job
// exactly once, and returns the counts.
func checkExactlyOnce(t *testing.T, pool *pgxpool.Pool, n int) (completed, discarded int) {
	t.Helper()
	ctx := context.Background()
	require.Eventually(t, func() bool {
		var done int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM justpg.jobs WHERE state IN ('completed', 'discarded')`).Scan(&done); err != nil {
			t.Logf("counting: %v", err) // a connection killed by the test; the pool replaces it
			return false
		}
		return done == n
	}, 120*time.Second, 50*time.Millisecond, "every job finishes")
	var total, twice, unaudited int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM justpg.jobs`).Scan(&total))
	require.Equal(t, n, total, "no job lost or added")
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT id FROM completions GROUP BY id HAVING count(*) > 1) d`).Scan(&twice))
	assert.Zero(t, twice, "no job completed twice")
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'completed'), count(*) FILTER (WHERE state = 'discarded'),
		count(*) FILTER (WHERE state = 'completed' AND NOT EXISTS (SELECT 1 FROM completions c WHERE c.id = j.id))
		FROM justpg.jobs j`).Scan(&completed, &discarded, &unaudited))
	assert.Zero(t, unaudited)
	return completed, discarded
}

func TestRescueAfterKill9(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[blockArgs]) error { return nil })
	parent := newClient(t, db.Pool, w, func(c *Config) { c.Queues = nil; c.LeaseDuration = time.Second })
	var ids []int64
	for range 5 {
		res, err := parent.Insert(ctx, db.Pool, blockArgs{Tag: "k"}, nil)
		require.NoError(t, err)
		ids = append(ids, res.Job.ID)
	}
	childID := "child-" + strconv.Itoa(os.Getpid())
	child := startChild(t, db.URL, childID, "block")
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM justpg.jobs WHERE state = 'running' AND attempted_by = $1`, childID).Scan(&n))
		return n == 5
	}, 30*time.Second, 20*time.Millisecond, "child runs the jobs")
	require.NoError(t, child.Process.Signal(syscall.SIGKILL))
	_ = child.Wait()

	// The parent works the queue; the jobs come back when the child's lease
	// expires, whoever is leader.
	worker := newClient(t, db.Pool, w, func(c *Config) { c.LeaseDuration = time.Second })
	start(t, worker)
	start(t, parent)
	for _, id := range ids {
		j := waitState(t, worker, id, StateCompleted)
		assert.Equal(t, 2, j.Attempt)
		require.Len(t, j.Errors, 1)
		assert.Contains(t, j.Errors[0].Error, "lease of client "+childID+" expired")
		assert.Equal(t, worker.ID(), j.AttemptedBy)
	}
}

func TestLateFinishAfterRescueIsIgnored(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	release := make(chan struct{})
	started := make(chan *JobRow, 2)
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[blockArgs]) error {
		started <- j.JobRow
		if j.Attempt == 1 {
			<-release
			return nil // finishes late, after being rescued and re-run
		}
		return fmt.Errorf("second attempt fails")
	}, WorkerOptions{Timeout: -1, NextRetry: func(*JobRow) time.Time { return time.Now().Add(time.Hour) }})
	a := newClient(t, db.Pool, w, func(c *Config) { c.DisableMaintenance = true })
	start(t, a)
	res, err := a.Insert(ctx, db.Pool, blockArgs{}, nil)
	require.NoError(t, err)
	<-started
	// Make a's lease look expired and rescue, as a leader would after a
	// network partition; then let another client run it again.
	_, err = db.Pool.Exec(ctx, `UPDATE justpg.jobs_clients SET expires_at = now() - interval '1 hour' WHERE id = $1`, a.ID())
	require.NoError(t, err)
	require.NoError(t, a.Rescue(ctx))
	b := newClient(t, db.Pool, w, func(c *Config) { c.DisableMaintenance = true })
	start(t, b)
	second := <-started
	assert.Equal(t, 2, second.Attempt)
	require.Eventually(t, func() bool {
		j, err := b.JobByID(ctx, db.Pool, res.Job.ID)
		require.NoError(t, err)
		return j.State == StateAvailable && len(j.Errors) == 2
	}, 20*time.Second, 10*time.Millisecond)
	// Now the first attempt finishes successfully: it must not overwrite
	// the newer state.
	close(release)
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, a.Stop(stopCtx)) // flushes a's outcome
	j, err := b.JobByID(ctx, db.Pool, res.Job.ID)
	require.NoError(t, err)
	assert.Equal(t, StateAvailable, j.State, "late finish ignored")
	assert.Equal(t, 2, j.Attempt)
	assert.Len(t, j.Errors, 2)
}

func TestSurvivesTerminatedConnections(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	auditCompletions(t, db.Pool)
	var runs atomic.Int64
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[noopArgs]) error {
		runs.Add(1)
		time.Sleep(time.Millisecond)
		return nil
	})
	c := newClient(t, db.Pool, w, func(c *Config) {
		c.Queues = map[string]QueueConfig{DefaultQueue: {MaxWorkers: 20}}
		c.LeaseDuration = time.Second
	})
	const n = 1500
	params := make([]InsertParams, n)
	for i := range params {
		params[i] = InsertParams{Args: noopArgs{N: i}}
	}
	_, err := c.InsertMany(ctx, db.Pool, params)
	require.NoError(t, err)
	start(t, c)
	// Kill every session of the database (fetches, completions, the
	// listener, heartbeats) every 100ms while the queue burns down.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var kills atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				kills.Add(int64(db.TerminateBackends(t)))
			}
		}
	}()
	require.Eventually(t, func() bool {
		var done int
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM justpg.jobs WHERE state = 'completed'`).Scan(&done); err != nil {
			return false // our own connection was killed
		}
		return done >= n/2
	}, 120*time.Second, 20*time.Millisecond)
	close(stop)
	wg.Wait()
	require.Positive(t, kills.Load())
	db.Pool.Reset() // drop the test's own killed idle connections
	completed, _ := checkExactlyOnce(t, db.Pool, n)
	assert.Equal(t, n, completed)
	assert.GreaterOrEqual(t, runs.Load(), int64(n))
}

func TestSurvivesServerRestart(t *testing.T) {
	t.Parallel()
	srv := pgtest.NewCluster(t, pgtest.ClusterOptions{})
	db := newDB(t, pgtest.OnServer(srv))
	ctx := context.Background()
	auditCompletions(t, db.Pool)
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[noopArgs]) error { time.Sleep(time.Millisecond); return nil })
	c := newClient(t, db.Pool, w, func(c *Config) { c.LeaseDuration = 3 * time.Second })
	start(t, c)
	insert := func(from int) {
		params := make([]InsertParams, 500)
		for i := range params {
			params[i] = InsertParams{Args: noopArgs{N: from + i}}
		}
		require.Eventually(t, func() bool {
			_, err := c.InsertMany(ctx, db.Pool, params)
			return err == nil // a failed COPY transaction inserted nothing
		}, 60*time.Second, 100*time.Millisecond)
	}
	insert(0)
	require.NoError(t, srv.Restart(ctx))
	insert(500)
	// A job inserted after the restart is woken by the re-established
	// listener or the poll.
	completed, _ := checkExactlyOnce(t, db.Pool, 1000)
	assert.Equal(t, 1000, completed)
}

func lossN() int {
	if s := os.Getenv("JUSTPG_JOBS_LOSS_N"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	return 10000
}

// TestLoss burns down many jobs with random failures across two clients and
// a worker process that is killed with SIGKILL midway: every job ends
// completed or discarded, none is lost and none is completed twice. Size it
// with JUSTPG_JOBS_LOSS_N (default 10000; 100000 takes a few minutes under
// -race on two cores).
func TestLoss(t *testing.T) {
	t.Parallel()
	n := lossN()
	db := newDB(t)
	ctx := context.Background()
	auditCompletions(t, db.Pool)
	w := NewWorkers()
	AddWorker(w, lossWorker, WorkerOptions{NextRetry: fastRetry})
	mk := func() *Client {
		return newClient(t, db.Pool, w, func(c *Config) {
			c.Queues = map[string]QueueConfig{DefaultQueue: {MaxWorkers: 50}}
			c.LeaseDuration = time.Second
			c.FetchPollInterval = 100 * time.Millisecond
		})
	}
	a := mk()
	params := make([]InsertParams, n)
	for i := range params {
		params[i] = InsertParams{Args: lossArgs{Fail: 10}, Opts: &InsertOpts{MaxAttempts: 3}}
	}
	_, err := a.InsertMany(ctx, db.Pool, params)
	require.NoError(t, err)

	childID := "loss-child-" + strconv.Itoa(os.Getpid())
	child := startChild(t, db.URL, childID, "loss")
	// Let the child take part, then kill it while it holds running jobs.
	require.Eventually(t, func() bool {
		var running, done int
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'running'),
			count(*) FILTER (WHERE state <> 'running' AND attempted_by = $1) FROM justpg.jobs WHERE attempted_by = $1`, childID).Scan(&running, &done))
		return running > 0 && done > 100
	}, 60*time.Second, 5*time.Millisecond)
	// Kill it at once, while it alone works the queue and so still holds
	// running jobs; only then start the clients that finish and rescue.
	require.NoError(t, child.Process.Signal(syscall.SIGKILL))
	_ = child.Wait()
	// Its backends may still be finishing a statement it sent before dying
	// (a completion commits without its client): end them and wait until
	// they are gone. Then the jobs it left running are exactly those still
	// marked running by it.
	db.TerminateBackends(t)
	db.Pool.Reset()
	require.Eventually(t, func() bool {
		var others int
		err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'`).Scan(&others)
		return err == nil && others == 0
	}, 30*time.Second, 10*time.Millisecond)
	rows, err := db.Pool.Query(ctx, `SELECT id FROM justpg.jobs WHERE state = 'running' AND attempted_by = $1`, childID)
	require.NoError(t, err)
	orphans, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	start(t, a)
	start(t, mk())

	completed, discarded := checkExactlyOnce(t, db.Pool, n)
	assert.Equal(t, n, completed+discarded)
	t.Logf("loss test: %d jobs, %d completed, %d discarded", n, completed, discarded)
	// Every job the killed process held was rescued: its lease error is on
	// the job. (TestRescueAfterKill9 proves rescue with a process that is
	// certain to hold jobs; here the kill can land between two fetches.)
	t.Logf("loss test: the killed process held %d running jobs", len(orphans))
	var rescued int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM justpg.jobs
		WHERE id = ANY($1) AND errors::text LIKE '%lease of client ' || $2 || '%'`, orphans, childID).Scan(&rescued))
	assert.Equal(t, len(orphans), rescued, "the killed process's jobs were rescued")
}
