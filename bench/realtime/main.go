// Command realtime compares justpg/realtime with raw pgx LISTEN/NOTIFY and
// with Redis pub/sub on the same machine in the same run: publish→deliver
// latency at a fixed rate, sustained throughput (one publisher, many
// publishers, batched) and fan-out latency to many WebSocket clients, next
// to a floor server that writes the same frames to the same sockets with no
// database, WebSocket library or per-socket queue (what the machine allows).
//
//	go run ./realtime                 # from bench/
//	go run ./realtime -n 50000 -clients 2000
//
// Redis is started from the redis-server binary (Debian package
// redis-server) on a free loopback port; -redis=false skips it.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/justpg/justpg/bench/internal/benchdb"
	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/realtime"
)

var (
	flagN       = flag.Int("n", 20000, "messages per throughput run")
	flagRate    = flag.Int("rate", 1000, "messages per second in the latency run")
	flagLatN    = flag.Int("latency-n", 3000, "messages in the latency run")
	flagPubs    = flag.Int("publishers", 8, "publishers in the many-publishers run")
	flagBatch   = flag.Int("batch", 500, "messages per batch in the batched run")
	flagClients = flag.Int("clients", 1000, "WebSocket clients in the fan-out run")
	flagFanMsgs = flag.Int("fanout-msgs", 50, "messages in the fan-out run")
	flagBatchN  = flag.Int("batch-n", 100000, "messages per batched throughput run")
	flagReps    = flag.Int("reps", 3, "repetitions of each throughput run (systems interleaved; the median is reported)")
	flagRedis   = flag.Bool("redis", true, "compare with Redis pub/sub (needs redis-server)")
	flagLight   = flag.Bool("light-client", true, "fan-out clients use a minimal WebSocket reader (false: github.com/coder/websocket clients)")
	flagProfile = flag.String("cpuprofile", "", "write a CPU profile of this process (bench client, broker and bridge) to this file")
	flagCross   = flag.Bool("cross", false, "also run justpg publishing into a raw listener and raw publishing into the justpg listener (to see which side costs)")
	flagOnly    = flag.String("only", "", "run only this part: latency, single, many, batched or fanout")
	flagDurable = flag.Bool("durable", false, "start a local server with production durability (fsync, synchronous_commit and full_page_writes on) instead of the default throwaway settings")
)

const channel = "bench"

// system is one pub/sub implementation under test.
type system struct {
	name    string
	publish func(ctx context.Context, payload string) error
	batch   func(ctx context.Context, payloads []string) error
	// subscribe calls onMsg for every delivered payload until stop.
	subscribe func(ctx context.Context, onMsg func(string)) (stop func(), err error)
}

func main() {
	flag.Parse()
	if *flagProfile != "" {
		f, err := os.Create(*flagProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer f.Close()
	}
	err := run()
	pprof.StopCPUProfile() // no-op without -cpuprofile
	if err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx := context.Background()
	var srv *benchdb.Server
	if *flagDurable {
		s, err := pgtest.StartLocal(ctx, pgtest.ClusterOptions{Durable: true})
		if err != nil {
			return err
		}
		srv = &benchdb.Server{Server: s}
	} else {
		s, err := benchdb.Start(ctx)
		if err != nil {
			return err
		}
		srv = s
	}
	defer srv.Stop(ctx)
	pool, url, err := srv.FreshDB(ctx, "bench_realtime", 32)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := realtime.Migrate(ctx, pool); err != nil {
		return err
	}
	b, err := realtime.New(pool, realtime.Config{BufferSize: 1 << 20, CleanupInterval: -1})
	if err != nil {
		return err
	}
	if err := b.Start(ctx); err != nil {
		return err
	}
	defer b.Stop(ctx)

	// jp-eph publishes with realtime.Ephemeral (no durable-stream check;
	// pg_notify through the function-call protocol); it has no batched run.
	eph := justpgSystem(b, pool)
	eph.name = "jp-eph"
	eph.publish = func(ctx context.Context, p string) error {
		return b.Publish(ctx, pool, channel, []byte(p), realtime.Ephemeral())
	}
	eph.batch = nil
	systems := []system{justpgSystem(b, pool), rawSystem(pool, url), eph}
	if *flagCross {
		jp, raw := systems[0], systems[1]
		systems = append(systems,
			system{name: "jp>raw", publish: jp.publish, batch: jp.batch, subscribe: raw.subscribe},
			system{name: "raw>jp", publish: raw.publish, batch: raw.batch, subscribe: jp.subscribe},
			system{name: "raw/pool", publish: raw.publish, batch: raw.batch, subscribe: func(ctx context.Context, onMsg func(string)) (func(), error) {
				c, err := pool.Acquire(ctx)
				if err != nil {
					return nil, err
				}
				if _, err := c.Exec(ctx, `LISTEN `+pgx.Identifier{channel}.Sanitize()); err != nil {
					c.Release()
					return nil, err
				}
				lctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() {
					defer close(done)
					for {
						n, err := c.Conn().WaitForNotification(lctx)
						if err != nil {
							return
						}
						onMsg(n.Payload)
					}
				}()
				return func() {
					cancel()
					<-done
					_, _ = c.Exec(context.Background(), "UNLISTEN *")
					c.Release()
				}, nil
			}})
	}
	if *flagRedis {
		rs, stop, err := redisSystem(ctx)
		if err != nil {
			return fmt.Errorf("redis (run with -redis=false to skip): %w", err)
		}
		defer stop()
		systems = append(systems, rs)
	}

	fmt.Printf("machine: %s\n", benchdb.Machine())
	var version string
	_ = pool.QueryRow(ctx, "SHOW server_version").Scan(&version)
	var fsync, syncCommit string
	_ = pool.QueryRow(ctx, "SELECT current_setting('fsync'), current_setting('synchronous_commit')").Scan(&fsync, &syncCommit)
	fmt.Printf("PostgreSQL %s (%s server, fsync %s, synchronous_commit %s); GOMAXPROCS cores shared with other work\n\n", version, srv.Kind(), fsync, syncCommit)

	results := map[string]map[string]float64{}
	put := func(sys, metric string, v float64) {
		if results[sys] == nil {
			results[sys] = map[string]float64{}
		}
		results[sys][metric] = v
	}

	want := func(part string) bool { return *flagOnly == "" || *flagOnly == part }
	if want("latency") {
		// Every system first gets a short warm-up (connections, prepared
		// statements, the first LISTEN), then the runs are interleaved
		// -reps times and the medians reported, so one system does not
		// take all of a passing stall on the shared machine.
		fmt.Printf("== latency at %d msg/s (%d messages), %d repetitions (median; p99 of every run in brackets)\n", *flagRate, *flagLatN, *flagReps)
		for _, s := range systems {
			if _, _, _, err := latencyRun(ctx, s, *flagRate, min(300, *flagLatN)); err != nil {
				return fmt.Errorf("%s latency warm-up: %w", s.name, err)
			}
		}
		p50s, p99s, losts := map[string][]float64{}, map[string][]float64{}, map[string]int{}
		for range *flagReps {
			for _, s := range systems {
				p50, p99, lost, err := latencyRun(ctx, s, *flagRate, *flagLatN)
				if err != nil {
					return fmt.Errorf("%s latency: %w", s.name, err)
				}
				p50s[s.name] = append(p50s[s.name], p50)
				p99s[s.name] = append(p99s[s.name], p99)
				losts[s.name] += lost
			}
		}
		for _, s := range systems {
			slices.Sort(p50s[s.name])
			slices.Sort(p99s[s.name])
			p50, p99 := p50s[s.name][*flagReps/2], p99s[s.name][*flagReps/2]
			put(s.name, "p50", p50)
			put(s.name, "p99", p99)
			fmt.Printf("%-8s p50 %.3f ms  p99 %.3f ms %.2f  lost %d\n", s.name, p50, p99, p99s[s.name], losts[s.name])
		}
		for _, s := range systems {
			if s.name != "justpg" {
				fmt.Printf("justpg / %s: p50 %.2f, p99 %.2f\n", s.name,
					results["justpg"]["p50"]/results[s.name]["p50"], results["justpg"]["p99"]/results[s.name]["p99"])
			}
		}
	}
	for _, mode := range []struct {
		part string
		name string
		pubs int
		bat  int
		n    int
	}{
		{"single", "single publisher", 1, 0, *flagN},
		{"many", fmt.Sprintf("%d publishers", *flagPubs), *flagPubs, 0, *flagN},
		{"batched", fmt.Sprintf("batched (%d per call, %d publishers)", *flagBatch, *flagPubs), *flagPubs, *flagBatch, *flagBatchN},
	} {
		if !want(mode.part) {
			continue
		}
		fmt.Printf("\n== throughput, %s, %d messages, %d repetitions (median; all runs in brackets)\n", mode.name, mode.n, *flagReps)
		rates := map[string][]float64{}
		systems := slices.DeleteFunc(slices.Clone(systems), func(s system) bool { return mode.bat > 0 && s.batch == nil })
		for rep := range *flagReps {
			// The order rotates per repetition, so that no system always
			// runs first (right after another part of the run).
			for k := range systems {
				s := systems[(rep+k)%len(systems)]
				rate, err := throughputRun(ctx, s, mode.pubs, mode.bat, mode.n)
				if err != nil {
					return fmt.Errorf("%s throughput: %w", s.name, err)
				}
				rates[s.name] = append(rates[s.name], rate)
			}
		}
		for _, s := range systems {
			rs := slices.Clone(rates[s.name])
			slices.Sort(rs)
			put(s.name, mode.name, rs[len(rs)/2])
			fmt.Printf("%-8s %9.0f msg/s delivered %.0f\n", s.name, rs[len(rs)/2], rs)
		}
		// Besides the ratio of the medians, the median of the ratios of
		// each repetition: the two systems of one repetition ran a few
		// seconds apart, so a passing stall of the shared machine moves
		// one pair rather than the whole comparison.
		ratio := func(a, b string) {
			if rates[a] == nil || rates[b] == nil {
				return
			}
			paired := make([]float64, *flagReps)
			for rep := range paired {
				paired[rep] = rates[a][rep] / rates[b][rep]
			}
			fmt.Printf("%s / %s = %.2f (per repetition: median %.2f of %.2f)\n",
				a, b, results[a][mode.name]/results[b][mode.name], median(paired), paired)
		}
		for _, s := range systems {
			if s.name != "justpg" {
				ratio("justpg", s.name)
			}
		}
		ratio("jp-eph", "raw pgx")
	}

	if want("fanout") {
		fmt.Printf("\n== fan-out: 1 message to %d WebSocket clients, %d messages; justpg and the floor alternated, %d repetitions\n", *flagClients, *flagFanMsgs, *flagReps)
		fmt.Println("(floor: the same frames written straight to the same kind of sockets, no PostgreSQL, no WebSocket library, no per-socket queue)")
		var p50s, p99s = map[string][]float64{}, map[string][]float64{}
		var ratios []float64
		for rep := range *flagReps {
			order := []string{"justpg", "floor"}
			if rep%2 == 1 {
				order = []string{"floor", "justpg"}
			}
			for _, name := range order {
				var t fanTarget
				var err error
				if name == "justpg" {
					t, err = bridgeTarget(b, pool)
				} else {
					t, err = floorTarget()
				}
				if err != nil {
					return fmt.Errorf("fan-out %s: %w", name, err)
				}
				p50, p99, err := fanoutRun(ctx, t, *flagClients, *flagFanMsgs)
				if err != nil { // t is left open: its clients may still hold it
					return fmt.Errorf("fan-out %s: %w", name, err)
				}
				t.close()
				p50s[name] = append(p50s[name], p50)
				p99s[name] = append(p99s[name], p99)
			}
			ratios = append(ratios, p99s["justpg"][rep]/p99s["floor"][rep])
		}
		for _, name := range []string{"justpg", "floor"} {
			fmt.Printf("%-8s p50 %.2f ms  p99 %.2f ms %.2f (medians; send → every socket received)\n", name, median(p50s[name]), median(p99s[name]), p99s[name])
		}
		fmt.Printf("p99 justpg / floor: median of paired ratios %.2f %.2f\n", median(ratios), ratios)
	}
	st := b.Stats()
	fmt.Printf("\nbroker stats: delivered %d, dropped %d, gaps %d, reconnects %d\n", st.Delivered, st.Dropped, st.Gaps, st.Reconnects)
	return nil
}

func justpgSystem(b *realtime.Broker, pool *pgxpool.Pool) system {
	return system{
		name: "justpg",
		publish: func(ctx context.Context, p string) error {
			return b.Publish(ctx, pool, channel, []byte(p))
		},
		batch: func(ctx context.Context, ps []string) error {
			msgs := make([]realtime.Message, len(ps))
			for i, p := range ps {
				msgs[i] = realtime.Message{Channel: channel, Payload: []byte(p)}
			}
			return b.PublishBatch(ctx, pool, msgs)
		},
		subscribe: func(ctx context.Context, onMsg func(string)) (func(), error) {
			sub, err := b.Subscribe(ctx, channel)
			if err != nil {
				return nil, err
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					ev, err := sub.Next(context.Background())
					if err != nil {
						return
					}
					if !ev.IsGap() {
						onMsg(string(ev.Payload))
					}
				}
			}()
			return func() { sub.Close(); <-done }, nil
		},
	}
}

// rawSystem is what one would write by hand: SELECT pg_notify on the pool
// and a dedicated pgx.Conn in WaitForNotification.
func rawSystem(pool *pgxpool.Pool, url string) system {
	return system{
		name: "raw pgx",
		publish: func(ctx context.Context, p string) error {
			_, err := pool.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, p)
			return err
		},
		batch: func(ctx context.Context, ps []string) error {
			_, err := pool.Exec(ctx, `SELECT pg_notify($1, p) FROM unnest($2::text[]) WITH ORDINALITY AS t(p, i) ORDER BY i`, channel, ps)
			return err
		},
		subscribe: func(ctx context.Context, onMsg func(string)) (func(), error) {
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				return nil, err
			}
			if _, err := conn.Exec(ctx, `LISTEN `+pgx.Identifier{channel}.Sanitize()); err != nil {
				return nil, err
			}
			lctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					n, err := conn.WaitForNotification(lctx)
					if err != nil {
						return
					}
					onMsg(n.Payload)
				}
			}()
			return func() { cancel(); <-done; conn.Close(context.Background()) }, nil
		},
	}
}

func redisSystem(ctx context.Context) (system, func(), error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return system{}, nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return system{}, nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no")
	cmd.Stdout, cmd.Stderr = nil, os.Stderr
	if err := cmd.Start(); err != nil {
		return system{}, nil, err
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port), PoolSize: 32})
	for i := 0; ; i++ {
		if err := rdb.Ping(ctx).Err(); err == nil {
			break
		} else if i == 100 {
			stop()
			return system{}, nil, err
		}
		time.Sleep(50 * time.Millisecond)
	}
	var rver string
	if info, err := rdb.Info(ctx, "server").Result(); err == nil {
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(line, "redis_version:"); ok {
				rver = strings.TrimSpace(v)
			}
		}
	}
	fmt.Printf("redis-server %s on 127.0.0.1:%d\n", rver, port)
	return system{
		name: "redis",
		publish: func(ctx context.Context, p string) error {
			return rdb.Publish(ctx, channel, p).Err()
		},
		batch: func(ctx context.Context, ps []string) error {
			_, err := rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
				for _, p := range ps {
					pl.Publish(ctx, channel, p)
				}
				return nil
			})
			return err
		},
		subscribe: func(ctx context.Context, onMsg func(string)) (func(), error) {
			ps := rdb.Subscribe(ctx, channel)
			if _, err := ps.Receive(ctx); err != nil { // the subscription confirmation
				return nil, err
			}
			ch := ps.Channel(redis.WithChannelSize(1 << 16))
			done := make(chan struct{})
			go func() {
				defer close(done)
				for m := range ch {
					onMsg(m.Payload)
				}
			}()
			return func() { ps.Close(); <-done }, nil
		},
	}, func() { rdb.Close(); stop() }, nil
}

// payload carries a sequence number (NOTIFY collapses identical payloads in
// one transaction) and the send time.
func payload(seq int) string {
	return strconv.Itoa(seq) + " " + strconv.FormatInt(time.Now().UnixNano(), 10)
}

func sentAt(p string) time.Time {
	_, ts, _ := strings.Cut(p, " ")
	n, _ := strconv.ParseInt(ts, 10, 64)
	return time.Unix(0, n)
}

// sentAtBytes is sentAt without a string conversion (no allocation in the
// fan-out clients).
func sentAtBytes(p []byte) time.Time {
	i := bytes.IndexByte(p, ' ')
	var n int64
	for _, c := range p[i+1:] {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int64(c-'0')
	}
	return time.Unix(0, n)
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

func latencyRun(ctx context.Context, s system, rate, n int) (p50, p99 float64, lost int, err error) {
	var mu sync.Mutex
	lat := make([]float64, 0, n)
	got := make(chan struct{}, n)
	stop, err := s.subscribe(ctx, func(p string) {
		d := time.Since(sentAt(p))
		mu.Lock()
		lat = append(lat, float64(d.Microseconds())/1000)
		mu.Unlock()
		got <- struct{}{}
	})
	if err != nil {
		return 0, 0, 0, err
	}
	defer stop()
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for i := range n {
		<-tick.C
		if err := s.publish(ctx, payload(i)); err != nil {
			return 0, 0, 0, err
		}
	}
	timeout := time.After(10 * time.Second)
	for received := 0; received < n; received++ {
		select {
		case <-got:
		case <-timeout:
			lost = n - received
			received = n
		}
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lat)
	return percentile(lat, 0.50), percentile(lat, 0.99), lost, nil
}

func throughputRun(ctx context.Context, s system, pubs, batch, n int) (float64, error) {
	var received atomic.Int64
	all := make(chan struct{})
	stop, err := s.subscribe(ctx, func(string) {
		if received.Add(1) == int64(n) {
			close(all)
		}
	})
	if err != nil {
		return 0, err
	}
	defer stop()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, pubs)
	per := n / pubs
	for w := range pubs {
		count := per
		if w == pubs-1 {
			count = n - per*(pubs-1)
		}
		wg.Go(func() {
			base := w * per
			if batch == 0 {
				for i := range count {
					if err := s.publish(ctx, payload(base+i)); err != nil {
						errs <- err
						return
					}
				}
				return
			}
			for i := 0; i < count; i += batch {
				ps := make([]string, 0, batch)
				for j := i; j < min(i+batch, count); j++ {
					ps = append(ps, payload(base+j))
				}
				if err := s.batch(ctx, ps); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	select {
	case <-all:
	case <-time.After(60 * time.Second):
		return 0, fmt.Errorf("only %d of %d delivered", received.Load(), n)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// fanoutRun connects clients WebSockets to t, joins them to one room and
// measures, per message, the time from send until each socket has it.
func fanoutRun(ctx context.Context, t fanTarget, clients, msgs int) (p50, p99 float64, err error) {
	wsURL := "ws://" + t.addr
	// The clients share the machine with the server, so they are kept as
	// cheap as possible: one read context per client (no timer per read),
	// the receive time taken as soon as Read returns, parsing after that,
	// and a latency slice per client (no shared lock while receiving).
	lats := make([][]float64, clients)
	var wg sync.WaitGroup
	ready := make(chan error, clients)
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Minute)
	defer rcancel()
	record := func(mine []float64, data []byte, now time.Time) ([]float64, bool) {
		// {"type":"message","channel":"room:fanout","data":"<seq> <nanos>"}
		_, rest, ok := bytes.Cut(data, []byte(`"data":"`))
		if !ok {
			return mine, false
		}
		p, _, _ := bytes.Cut(rest, []byte(`"`))
		return append(mine, float64(now.Sub(sentAtBytes(p)).Microseconds())/1000), true
	}
	join := []byte(`{"type":"join","channel":"room:fanout"}`)
	addr := t.addr
	// -fanout-client=epoll: after joining, each client's socket is read by
	// one of 4×GOMAXPROCS event loops (see epollGroup); more loops than
	// cores keep both cores reading until the last socket is served.
	var groups []*epollGroup
	nGroups := 4 * runtime.GOMAXPROCS(0)
	groupErr := make(chan error, nGroups)
	if *flagLight && *flagFanClient == "epoll" {
		for range nGroups {
			g, err := newEpollGroup()
			if err != nil {
				return 0, 0, err
			}
			groups = append(groups, g)
		}
	} else if *flagFanClient != "epoll" && *flagFanClient != "goroutine" {
		return 0, 0, fmt.Errorf("-fanout-client must be epoll or goroutine, not %q", *flagFanClient)
	}
	for i := range clients {
		wg.Go(func() {
			mine := make([]float64, 0, msgs)
			if *flagLight {
				c, err := dialLight(addr, fmt.Sprintf("/?u=%d", i))
				if err != nil {
					ready <- err
					return
				}
				if err := c.writeText(join); err != nil {
					c.close()
					ready <- err
					return
				}
				if _, err := c.read(); err != nil { // "joined"
					c.close()
					ready <- err
					return
				}
				if groups != nil {
					lats[i] = mine
					ready <- groups[i%len(groups)].add(c, msgs, func(data []byte, now time.Time) bool {
						var ok bool
						lats[i], ok = record(lats[i], data, now)
						return ok
					})
					return
				}
				defer func() { lats[i] = mine }()
				defer c.close()
				ready <- nil
				for range msgs {
					data, err := c.read()
					now := time.Now()
					if err != nil {
						return
					}
					var ok bool
					if mine, ok = record(mine, data, now); !ok {
						return
					}
				}
				return
			}
			defer func() { lats[i] = mine }()
			c, _, err := websocket.Dial(ctx, fmt.Sprintf("%s/?u=%d", wsURL, i), nil)
			if err != nil {
				ready <- err
				return
			}
			defer c.CloseNow()
			if err := c.Write(ctx, websocket.MessageText, join); err != nil {
				ready <- err
				return
			}
			if _, _, err := c.Read(ctx); err != nil { // "joined"
				ready <- err
				return
			}
			ready <- nil
			for range msgs {
				_, data, err := c.Read(rctx)
				now := time.Now()
				if err != nil {
					return
				}
				var ok bool
				if mine, ok = record(mine, data, now); !ok {
					return
				}
			}
		})
	}
	for range clients {
		if err := <-ready; err != nil {
			return 0, 0, err
		}
	}
	for _, g := range groups {
		wg.Go(func() { groupErr <- g.run(time.Now().Add(5 * time.Minute)) })
	}
	for i := range msgs {
		if err := t.send(ctx, payload(i)); err != nil {
			return 0, 0, err
		}
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	for range groups {
		if err := <-groupErr; err != nil {
			return 0, 0, fmt.Errorf("fan-out client: %w", err)
		}
	}
	var lat []float64
	for _, l := range lats {
		lat = append(lat, l...)
	}
	if len(lat) != clients*msgs {
		return 0, 0, errors.New("fan-out: " + strconv.Itoa(len(lat)) + " of " + strconv.Itoa(clients*msgs) + " deliveries")
	}
	slices.Sort(lat)
	return percentile(lat, 0.50), percentile(lat, 0.99), nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
