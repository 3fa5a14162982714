package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type tickArgs struct {
	Slot time.Time `json:"slot"`
}

func (tickArgs) Kind() string { return "tick" }

func TestPeriodicThreeClientsOneEnqueuePerSlot(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := context.Background()
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[tickArgs]) error { return nil })
	periodic := []PeriodicJob{{
		Name:     "tick",
		Schedule: "@every 1s",
		Args:     func(slot time.Time) (JobArgs, *InsertOpts) { return tickArgs{Slot: slot}, nil },
	}}
	var clients []*Client
	for range 3 {
		c := newClient(t, db.Pool, w, func(c *Config) {
			c.Periodic = periodic
			c.LeaseDuration = 900 * time.Millisecond
		})
		start(t, c)
		clients = append(clients, c)
	}
	slots := func() (jobs, distinct int) {
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*), count(DISTINCT args->>'slot') FROM justpg.jobs WHERE kind = 'tick'`).Scan(&jobs, &distinct))
		return
	}
	require.Eventually(t, func() bool { n, _ := slots(); return n >= 3 }, 30*time.Second, 50*time.Millisecond)
	// Hand leadership over: stop the leader; another client takes over.
	var leader *Client
	require.Eventually(t, func() bool {
		for _, c := range clients {
			if c.IsLeader() {
				leader = c
				return true
			}
		}
		return false
	}, 20*time.Second, 10*time.Millisecond, "one client leads")
	n0, _ := slots()
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.NoError(t, leader.Stop(stopCtx))
	require.Eventually(t, func() bool { n, _ := slots(); return n >= n0+2 }, 30*time.Second, 50*time.Millisecond)
	n, distinct := slots()
	assert.Equal(t, n, distinct, "each slot enqueued once")
	require.Eventually(t, func() bool {
		leaders := 0
		for _, c := range clients {
			if c != leader && c.IsLeader() {
				leaders++
			}
		}
		return leaders == 1
	}, 20*time.Second, 10*time.Millisecond, "another client took over")
	// Slots are aligned to whole seconds and consecutive (none skipped while
	// the clients ran).
	rows, err := db.Pool.Query(ctx, `SELECT (args->>'slot')::timestamptz FROM justpg.jobs WHERE kind = 'tick' ORDER BY 1`)
	require.NoError(t, err)
	var prev time.Time
	for rows.Next() {
		var s time.Time
		require.NoError(t, rows.Scan(&s))
		assert.Equal(t, s, s.Truncate(time.Second))
		if !prev.IsZero() {
			assert.LessOrEqual(t, s.Sub(prev), 2*time.Second, "at most one slot lost at the hand-over")
		}
		prev = s
	}
	require.NoError(t, rows.Err())
	// Slot jobs complete and keep their key: re-inserting a slot is a no-op.
	require.NoError(t, clients[0].insertSlot(ctx, clients[0].periodic[0], prev))
	var again int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM justpg.jobs WHERE kind = 'tick' AND (args->>'slot')::timestamptz = $1`,
		prev).Scan(&again))
	assert.Equal(t, 1, again)
}

func TestParseSchedule(t *testing.T) {
	t.Parallel()
	s, err := ParseSchedule("*/15 * * * *")
	require.NoError(t, err)
	from := time.Date(2026, 1, 1, 10, 7, 0, 0, time.UTC)
	assert.Equal(t, time.Date(2026, 1, 1, 10, 15, 0, 0, time.UTC), s.Next(from))
	s, err = ParseSchedule("@daily")
	require.NoError(t, err)
	assert.Equal(t, time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), s.Next(from))
	for _, bad := range []string{"", "  ", "* * *", "61 * * * *", "@sometimes", "* * * * * * *"} {
		_, err := ParseSchedule(bad)
		assert.Error(t, err, bad)
	}
}

func FuzzParseSchedule(f *testing.F) {
	for _, s := range []string{"* * * * *", "*/5 1-3 * * MON", "@hourly", "@every 1h", "61 * * * *", "CRON_TZ=Europe/Paris 0 9 * * *", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := ParseSchedule(spec)
		if err != nil {
			return
		}
		from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		if next := s.Next(from); !next.IsZero() && !next.After(from) {
			t.Fatalf("%q: next %v is not after %v", spec, next, from)
		}
	})
}

func FuzzInsertOptions(f *testing.F) {
	f.Add("default", 0, 0, "", int64(0))
	f.Add("", -1, -5, "key", int64(-1))
	f.Add("a\x00b", 40000, 1, "k\n", int64(999))
	f.Add("q", 1, 1, "", int64(1500))
	f.Fuzz(func(t *testing.T, queue string, priority, attempts int, key string, timeout int64) {
		c := &Client{workers: NewWorkers()}
		AddWorker(c.workers, func(ctx context.Context, j *Job[noopArgs]) error { return nil })
		p, err := c.prepare(noopArgs{}, &InsertOpts{Queue: queue, Priority: priority, MaxAttempts: attempts,
			Unique: &UniqueOpts{Key: key, ByArgs: true}, Timeout: time.Duration(timeout)})
		if err != nil {
			return
		}
		if p.priority < 0 || p.maxAttempts < 1 || validQueue(p.queue) != nil || p.uniqueKey == nil {
			t.Fatalf("accepted invalid options: %+v", p)
		}
		// The stored timeout keeps the caller's meaning: none given, none
		// wanted, or a positive deadline of at least a microsecond.
		switch {
		case timeout == 0 && p.timeoutUS != nil,
			timeout < 0 && (p.timeoutUS == nil || *p.timeoutUS != -1),
			timeout > 0 && (p.timeoutUS == nil || *p.timeoutUS < 1 || *p.timeoutUS != max(timeout/1000, 1)):
			t.Fatalf("timeout %d stored as %v", timeout, p.timeoutUS)
		}
	})
}
