// Command auth compares session validation through justpg's auth middleware
// (cookie → session → user, one indexed read joining the user) with
// github.com/alexedwards/scs/v2 on its pgx store (cookie → session data),
// on the same PostgreSQL server in the same run, and measures log-ins per
// second against the argon2id cost on this machine.
//
//	go run ./auth -duration 5s -workers 8 -sessions 2000
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alexedwards/scs/pgxstore"
	"github.com/alexedwards/scs/v2"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/auth"
	"github.com/justpg/justpg/bench/internal/benchdb"
)

var (
	duration = flag.Duration("duration", 5*time.Second, "length of each measured round")
	rounds   = flag.Int("rounds", 3, "alternating rounds per contender (the median is reported)")
	workers  = flag.Int("workers", 8, "concurrent requests")
	sessions = flag.Int("sessions", 2000, "distinct sessions (and users) to validate")
	poolSize = flag.Int("pool", 8, "connections per pool (the same for both)")
	logins   = flag.Duration("logins", 5*time.Second, "length of the log-in measurement at OWASP argon2id parameters (0 skips it)")
)

func main() {
	flag.Parse()
	if err := run(context.Background()); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	srv, err := benchdb.Start(ctx)
	if err != nil {
		return err
	}
	defer srv.Stop(context.Background())
	fmt.Printf("machine: %s\n", benchdb.Machine())
	fmt.Printf("sessions=%d workers=%d pool=%d duration=%v rounds=%d\n\n", *sessions, *workers, *poolSize, *duration, *rounds)

	ours, err := setupJustpg(ctx, srv)
	if err != nil {
		return fmt.Errorf("justpg setup: %w", err)
	}
	theirs, err := setupSCS(ctx, srv)
	if err != nil {
		return fmt.Errorf("scs setup: %w", err)
	}

	var oursRates, scsRates []float64
	for r := 0; r < *rounds; r++ {
		rate, err := measure(ours)
		if err != nil {
			return fmt.Errorf("justpg: %w", err)
		}
		oursRates = append(oursRates, rate)
		rate, err = measure(theirs)
		if err != nil {
			return fmt.Errorf("scs: %w", err)
		}
		scsRates = append(scsRates, rate)
		fmt.Printf("round %d: justpg/auth %.0f/s, scs+pgxstore %.0f/s\n", r+1, oursRates[r], scsRates[r])
	}
	o, s := median(oursRates), median(scsRates)
	fmt.Printf("\nsession validations/s (median of %d rounds): justpg/auth %.0f, scs+pgxstore %.0f, ratio %.2fx\n\n", *rounds, o, s, o/s)

	if *logins > 0 {
		if err := measureLogins(ctx, srv); err != nil {
			return fmt.Errorf("logins: %w", err)
		}
	}
	return nil
}

// contender serves GET / for a request carrying one of its session cookies
// and answers 200 with the user's e-mail.
type contender struct {
	name    string
	handler http.Handler
	cookies []*http.Cookie
}

func measure(c *contender) (float64, error) {
	var n atomic.Int64
	var failed atomic.Value
	deadline := time.Now().Add(*duration)
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Go(func() {
			i := w
			for time.Now().Before(deadline) {
				req := httptest.NewRequest("GET", "https://app.example/", nil)
				req.AddCookie(c.cookies[i%len(c.cookies)])
				rec := httptest.NewRecorder()
				c.handler.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK || rec.Body.Len() == 0 {
					failed.Store(fmt.Errorf("status %d: %s", rec.Code, rec.Body.String()))
					return
				}
				n.Add(1)
				i += *workers
			}
		})
	}
	start := time.Now()
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		return 0, err
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func newPool(ctx context.Context, srv *benchdb.Server, prefix string) (*pgxpool.Pool, error) {
	pool, _, err := srv.FreshDB(ctx, prefix, int32(*poolSize))
	return pool, err
}

func setupJustpg(ctx context.Context, srv *benchdb.Server) (*contender, error) {
	pool, err := newPool(ctx, srv, "bench_auth_justpg")
	if err != nil {
		return nil, err
	}
	if err := auth.Migrate(ctx, pool); err != nil {
		return nil, err
	}
	// Setup only: sessions are created directly, so hashing cost is irrelevant here.
	cheap, err := auth.NewArgon2id(auth.Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err != nil {
		return nil, err
	}
	a, err := auth.New(pool, auth.Config{Hasher: cheap, IPLimit: -1})
	if err != nil {
		return nil, err
	}
	c := &contender{name: "justpg/auth"}
	client := auth.Client{IP: netip.MustParseAddr("127.0.0.1"), UserAgent: "bench"}
	for i := 0; i < *sessions; i++ {
		u, err := a.SignUp(ctx, pool, fmt.Sprintf("user%d@example.com", i), "benchmark passphrase", client)
		if err != nil {
			return nil, err
		}
		token, _, err := a.CreateSession(ctx, pool, u.ID, client)
		if err != nil {
			return nil, err
		}
		c.cookies = append(c.cookies, &http.Cookie{Name: a.Config().CookieName, Value: token})
	}
	if _, err := pool.Exec(ctx, `ANALYZE justpg.auth_users, justpg.auth_sessions`); err != nil {
		return nil, err
	}
	c.handler = a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := auth.PrincipalFrom(r.Context())
		if p == nil {
			http.Error(w, "no user", http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, p.User.Email)
	}))
	return c, nil
}

func setupSCS(ctx context.Context, srv *benchdb.Server) (*contender, error) {
	pool, err := newPool(ctx, srv, "bench_auth_scs")
	if err != nil {
		return nil, err
	}
	// The table from the pgxstore README.
	if _, err := pool.Exec(ctx, `CREATE TABLE sessions (token TEXT PRIMARY KEY, data BYTEA NOT NULL, expiry TIMESTAMPTZ NOT NULL);
		CREATE INDEX sessions_expiry_idx ON sessions (expiry);`); err != nil {
		return nil, err
	}
	sm := scs.New()
	sm.Store = pgxstore.NewWithCleanupInterval(pool, 0)
	sm.Lifetime = 7 * 24 * time.Hour
	c := &contender{name: "scs+pgxstore"}
	for i := 0; i < *sessions; i++ {
		sctx, err := sm.Load(ctx, "")
		if err != nil {
			return nil, err
		}
		// The user's id and e-mail live in the session data, so scs needs
		// no second query to answer with the user: its best case.
		sm.Put(sctx, "user_id", fmt.Sprintf("%d", i))
		sm.Put(sctx, "email", fmt.Sprintf("user%d@example.com", i))
		token, _, err := sm.Commit(sctx)
		if err != nil {
			return nil, err
		}
		c.cookies = append(c.cookies, &http.Cookie{Name: sm.Cookie.Name, Value: token})
	}
	if _, err := pool.Exec(ctx, `ANALYZE sessions`); err != nil {
		return nil, err
	}
	c.handler = sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		email := sm.GetString(r.Context(), "email")
		if email == "" {
			http.Error(w, "no user", http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, email)
	}))
	return c, nil
}

// measureLogins times argon2id at OWASP parameters, then runs full log-ins
// (rate limit, lookup, verification, session insert, audit) from
// GOMAXPROCS workers and compares with the hashing bound cores/hash-time.
func measureLogins(ctx context.Context, srv *benchdb.Server) error {
	pool, err := newPool(ctx, srv, "bench_auth_logins")
	if err != nil {
		return err
	}
	if err := auth.Migrate(ctx, pool); err != nil {
		return err
	}
	h, err := auth.NewArgon2id(auth.DefaultArgon2Params)
	if err != nil {
		return err
	}
	var times []float64
	var enc string
	for i := 0; i < 10; i++ {
		start := time.Now()
		if enc, err = h.Hash(ctx, []byte("benchmark passphrase")); err != nil {
			return err
		}
		times = append(times, float64(time.Since(start).Microseconds())/1000)
	}
	_ = enc
	hashMS := median(times)
	a, err := auth.New(pool, auth.Config{Hasher: h, IPLimit: -1})
	if err != nil {
		return err
	}
	client := auth.Client{IP: netip.MustParseAddr("127.0.0.1"), UserAgent: "bench"}
	procs := runtime.GOMAXPROCS(0)
	for i := 0; i < procs; i++ {
		if _, err := a.SignUp(ctx, pool, fmt.Sprintf("login%d@example.com", i), "benchmark passphrase", client); err != nil {
			return err
		}
	}
	var n atomic.Int64
	var failed atomic.Value
	deadline := time.Now().Add(*logins)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < procs*2; w++ {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				_, err := a.Login(ctx, pool, auth.Credentials{
					Email: fmt.Sprintf("login%d@example.com", w%procs), Password: "benchmark passphrase"}, client)
				if err != nil {
					failed.Store(err)
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		return err
	}
	rate := float64(n.Load()) / time.Since(start).Seconds()
	bound := float64(procs) * 1000 / hashMS
	fmt.Printf("argon2id at OWASP parameters (m=19 MiB, t=2, p=1): %.1f ms per hash (median of 10)\n", hashMS)
	fmt.Printf("log-ins/s with %d workers on %d cores: %.1f (hashing bound %d/%.1f ms = %.1f/s; %.0f%% of it)\n",
		procs*2, procs, rate, procs, hashMS, bound, 100*rate/bound)
	return nil
}
