// Command jobs compares justpg/jobs with River (riverqueue/river v0.51.2) on
// the same PostgreSQL server in the same run: a burn-down of no-op jobs
// (bulk insert rate, then work rate) and the enqueue→start latency at a
// steady insert rate. Each contender gets a fresh database per phase.
//
// River is configured as its own benchmark configures itself: MaxWorkers
// 2000, FetchCooldown 2ms, FetchPollInterval 20ms, InsertManyFast. justpg
// uses the same worker count, cooldown and poll interval.
//
//	go run ./jobs -n 200000 -rate 500 -latency-for 10s
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/justpg/justpg/bench/internal/benchdb"
	"github.com/justpg/justpg/jobs"
)

var (
	flagN       = flag.Int("n", 200000, "jobs in the burn-down")
	flagBatch   = flag.Int("batch", 10000, "jobs per bulk insert call")
	flagRate    = flag.Int("rate", 500, "jobs/s inserted in the latency phase")
	flagLatFor  = flag.Duration("latency-for", 10*time.Second, "length of the latency phase")
	flagWorkers = flag.Int("workers", 2000, "MaxWorkers for both")
	flagConns   = flag.Int("conns", 0, "pool size for both (0: pgx default)")
	flagRounds  = flag.Int("rounds", 1, "rounds; contenders alternate, the median of each figure is reported")
	flagOnly    = flag.String("only", "", "run only this contender (river, justpg or justpg-nolist), for profiling")
	flagNoList  = flag.Bool("list-index-cost", true, "also burn down justpg without its listing indexes (jobs_<state>_list_idx, with the finalized_at index they replaced), to show what they cost")
	flagProfile = flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
)

// noop is the job of both contenders.
type noop struct {
	Seq int   `json:"seq"`
	At  int64 `json:"at"` // insert time, for the latency phase
}

func (noop) Kind() string { return "noop" }

// contender is one queue under test.
type contender interface {
	name() string
	setup(ctx context.Context, pool *pgxpool.Pool) error
	insertMany(ctx context.Context, args []noop) error
	insertOne(ctx context.Context, a noop) error
	start(ctx context.Context, onWork func(noop)) error
	stop(ctx context.Context) error
	completed(ctx context.Context) (int, error)
}

func main() {
	flag.Parse()
	ctx := context.Background()
	srv, err := benchdb.Start(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Stop(ctx)
	if *flagProfile != "" {
		f, err := os.Create(*flagProfile)
		must(err)
		must(pprof.StartCPUProfile(f))
		defer pprof.StopCPUProfile()
	}
	fmt.Printf("machine: %s\n", benchdb.Machine())
	fmt.Printf("burn-down of %d no-op jobs, latency at %d jobs/s for %s, MaxWorkers %d\n\n", *flagN, *flagRate, *flagLatFor, *flagWorkers)

	type res struct{ insert, work, p50, p99 []float64 }
	results := map[string]*res{"river": {}, "justpg": {}, "justpg-nolist": {}}
	contenders := []func() contender{func() contender { return &riverC{} }, func() contender { return &justpgC{} }}
	if *flagNoList {
		contenders = append(contenders, func() contender { return &justpgC{noListIndex: true} })
	}
	for round := range *flagRounds {
		for _, mk := range contenders {
			c := mk()
			if *flagOnly != "" && c.name() != *flagOnly {
				continue
			}
			ins, work := burnDown(ctx, srv, c)
			var p50, p99 float64
			if *flagLatFor > 0 && c.name() != "justpg-nolist" {
				p50, p99 = latency(ctx, srv, mk())
			}
			r := results[c.name()]
			r.insert, r.work, r.p50, r.p99 = append(r.insert, ins), append(r.work, work), append(r.p50, p50), append(r.p99, p99)
			fmt.Printf("round %d %-13s insert %9.0f jobs/s   work %9.0f jobs/s   latency p50 %6.2f ms  p99 %7.2f ms\n", round+1, c.name(), ins, work, p50, p99)
		}
	}
	type med struct{ insert, work, p50, p99 float64 }
	median := func(x []float64) float64 {
		if len(x) == 0 {
			return 0
		}
		y := slices.Clone(x)
		slices.Sort(y)
		if len(y)%2 == 0 {
			return (y[len(y)/2-1] + y[len(y)/2]) / 2
		}
		return y[len(y)/2]
	}
	summary := map[string]med{}
	for name, r := range results {
		summary[name] = med{median(r.insert), median(r.work), median(r.p50), median(r.p99)}
	}
	r, j := summary["river"], summary["justpg"]
	fmt.Printf("\nmedians over %d round(s):\n", *flagRounds)
	for _, name := range []string{"river", "justpg", "justpg-nolist"} {
		if len(results[name].work) == 0 {
			continue
		}
		m := summary[name]
		fmt.Printf("%-13s insert %9.0f jobs/s   work %9.0f jobs/s   latency p50 %6.2f ms  p99 %7.2f ms\n", name, m.insert, m.work, m.p50, m.p99)
	}
	fmt.Printf("\nratios justpg/river: insert %.2fx, work %.2fx; latency p50 %.2f ms vs %.2f ms, p99 %.2f ms vs %.2f ms\n",
		j.insert/r.insert, j.work/r.work, j.p50, r.p50, j.p99, r.p99)
	if *flagNoList {
		n := summary["justpg-nolist"]
		fmt.Printf("listing indexes: justpg with them / without them: insert %.2fx, work %.2fx\n", j.insert/n.insert, j.work/n.work)
		for i := range results["justpg"].work {
			fmt.Printf("  round %d: insert %.2fx, work %.2fx\n", i+1,
				results["justpg"].insert[i]/results["justpg-nolist"].insert[i], results["justpg"].work[i]/results["justpg-nolist"].work[i])
		}
	}
}

// freshPool gives a phase a new database. The server is checkpointed first,
// so that no phase writes out the buffers another one dirtied.
func freshPool(ctx context.Context, srv *benchdb.Server, prefix string) *pgxpool.Pool {
	must(admin(ctx, srv, "CHECKPOINT"))
	pool, _, err := srv.FreshDB(ctx, prefix, int32(*flagConns))
	if err != nil {
		log.Fatal(err)
	}
	return pool
}

// dropPool closes a phase's pool and drops its database, so that
// autovacuum does not clean up one contender's dead rows while the next
// one runs.
func dropPool(ctx context.Context, srv *benchdb.Server, pool *pgxpool.Pool) {
	name := pool.Config().ConnConfig.Database
	pool.Close()
	must(admin(ctx, srv, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"))
}

func admin(ctx context.Context, srv *benchdb.Server, sql string) error {
	conn, err := pgx.Connect(ctx, srv.AdminURL())
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func burnDown(ctx context.Context, srv *benchdb.Server, c contender) (insertRate, workRate float64) {
	pool := freshPool(ctx, srv, "bench_jobs_"+c.name())
	defer dropPool(ctx, srv, pool)
	must(c.setup(ctx, pool))
	args := make([]noop, *flagN)
	for i := range args {
		args[i] = noop{Seq: i}
	}
	t0 := time.Now()
	for i := 0; i < len(args); i += *flagBatch {
		must(c.insertMany(ctx, args[i:min(i+*flagBatch, len(args))]))
	}
	insertRate = float64(*flagN) / time.Since(t0).Seconds()
	var worked atomic.Int64
	t0 = time.Now()
	must(c.start(ctx, func(noop) { worked.Add(1) }))
	// Done when every completion is recorded in the database. The database is
	// asked only once every job has run (a count over the whole table while
	// the contender works would compete with it for the same CPUs).
	for worked.Load() < int64(*flagN) {
		time.Sleep(time.Millisecond)
	}
	for {
		n, err := c.completed(ctx)
		must(err)
		if n >= *flagN {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	workRate = float64(*flagN) / time.Since(t0).Seconds()
	stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	must(c.stop(stopCtx))
	return insertRate, workRate
}

func latency(ctx context.Context, srv *benchdb.Server, c contender) (p50, p99 float64) {
	pool := freshPool(ctx, srv, "bench_jobs_lat_"+c.name())
	defer dropPool(ctx, srv, pool)
	must(c.setup(ctx, pool))
	var mu sync.Mutex
	var lat []float64
	total := int(float64(*flagRate) * flagLatFor.Seconds())
	done := make(chan struct{})
	must(c.start(ctx, func(a noop) {
		d := float64(time.Now().UnixNano()-a.At) / 1e6
		mu.Lock()
		lat = append(lat, d)
		if len(lat) == total {
			close(done)
		}
		mu.Unlock()
	}))
	time.Sleep(500 * time.Millisecond) // let the client settle (leader election, listener)
	tick := time.NewTicker(time.Second / time.Duration(*flagRate))
	for i := range total {
		<-tick.C
		must(c.insertOne(ctx, noop{Seq: i, At: time.Now().UnixNano()}))
	}
	tick.Stop()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		log.Fatalf("%s: latency phase: not every job ran", c.name())
	}
	stopCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	must(c.stop(stopCtx))
	slices.Sort(lat)
	return lat[len(lat)/2], lat[len(lat)*99/100]
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// ---- River

type riverC struct {
	pool   *pgxpool.Pool
	client *river.Client[pgx.Tx]
	onWork func(noop)
}

type riverWorker struct {
	river.WorkerDefaults[noop]
	c *riverC
}

func (w *riverWorker) Work(ctx context.Context, j *river.Job[noop]) error {
	w.c.onWork(j.Args)
	return nil
}

func (r *riverC) name() string { return "river" }

func (r *riverC) setup(ctx context.Context, pool *pgxpool.Pool) error {
	r.pool = pool
	m, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		return err
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return err
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &riverWorker{c: r})
	r.client, err = river.NewClient(riverpgxv5.New(pool), &river.Config{
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: *flagWorkers}},
		Workers:           workers,
		FetchCooldown:     2 * time.Millisecond,
		FetchPollInterval: 20 * time.Millisecond,
		Logger:            quietLogger(),
	})
	return err
}

func (r *riverC) insertMany(ctx context.Context, args []noop) error {
	ps := make([]river.InsertManyParams, len(args))
	for i, a := range args {
		ps[i] = river.InsertManyParams{Args: a}
	}
	_, err := r.client.InsertManyFast(ctx, ps)
	return err
}

func (r *riverC) insertOne(ctx context.Context, a noop) error {
	_, err := r.client.Insert(ctx, a, nil)
	return err
}

func (r *riverC) start(ctx context.Context, onWork func(noop)) error {
	r.onWork = onWork
	return r.client.Start(ctx)
}

func (r *riverC) stop(ctx context.Context) error { return r.client.Stop(ctx) }

func (r *riverC) completed(ctx context.Context) (int, error) {
	var n int
	err := r.pool.QueryRow(ctx, `SELECT count(*) FROM river_job WHERE state = 'completed'`).Scan(&n)
	return n, err
}

// ---- justpg

type justpgC struct {
	pool        *pgxpool.Pool
	client      *jobs.Client
	onWork      func(noop)
	noListIndex bool
}

func (j *justpgC) name() string {
	if j.noListIndex {
		return "justpg-nolist"
	}
	return "justpg"
}

func (j *justpgC) setup(ctx context.Context, pool *pgxpool.Pool) error {
	j.pool = pool
	if err := jobs.Migrate(ctx, pool); err != nil {
		return err
	}
	if j.noListIndex {
		// No listing indexes (migrations 004 and 005), and the finalized_at
		// index that pruning used before them.
		if _, err := pool.Exec(ctx, `DROP INDEX justpg.jobs_available_list_idx, justpg.jobs_completed_list_idx,
	justpg.jobs_cancelled_list_idx, justpg.jobs_discarded_list_idx;
CREATE INDEX jobs_finalized_idx ON justpg.jobs (finalized_at) WHERE finalized_at IS NOT NULL`); err != nil {
			return err
		}
	}
	w := jobs.NewWorkers()
	jobs.AddWorker(w, func(ctx context.Context, job *jobs.Job[noop]) error {
		j.onWork(job.Args)
		return nil
	})
	var err error
	j.client, err = jobs.New(pool, jobs.Config{
		Workers:           w,
		Queues:            map[string]jobs.QueueConfig{jobs.DefaultQueue: {MaxWorkers: *flagWorkers}},
		FetchCooldown:     2 * time.Millisecond,
		FetchPollInterval: 20 * time.Millisecond,
	})
	return err
}

func (j *justpgC) insertMany(ctx context.Context, args []noop) error {
	ps := make([]jobs.InsertParams, len(args))
	for i, a := range args {
		ps[i] = jobs.InsertParams{Args: a}
	}
	_, err := j.client.InsertMany(ctx, j.pool, ps)
	return err
}

func (j *justpgC) insertOne(ctx context.Context, a noop) error {
	_, err := j.client.Insert(ctx, j.pool, a, nil)
	return err
}

func (j *justpgC) start(ctx context.Context, onWork func(noop)) error {
	j.onWork = onWork
	return j.client.Start(ctx)
}

func (j *justpgC) stop(ctx context.Context) error { return j.client.Stop(ctx) }

func (j *justpgC) completed(ctx context.Context) (int, error) {
	var n int
	err := j.pool.QueryRow(ctx, `SELECT count(*) FROM justpg.jobs WHERE state = 'completed'`).Scan(&n)
	return n, err
}
