package jobs

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkBurnDown inserts b.N no-op jobs with COPY and measures how fast
// one client works them off (jobs/s is reported).
func BenchmarkBurnDown(b *testing.B) {
	db := newDB(b)
	ctx := context.Background()
	var done atomic.Int64
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[noopArgs]) error { done.Add(1); return nil })
	c := newClient(b, db.Pool, w, func(c *Config) {
		c.Queues = map[string]QueueConfig{DefaultQueue: {MaxWorkers: 1000}}
	})
	params := make([]InsertParams, b.N)
	for i := range params {
		params[i] = InsertParams{Args: noopArgs{N: i}}
	}
	t0 := time.Now()
	_, err := c.InsertMany(ctx, db.Pool, params)
	if err != nil {
		b.Fatal(err)
	}
	ins := time.Since(t0)
	b.ResetTimer()
	t0 = time.Now()
	start(b, c)
	for done.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "work-jobs/s")
	b.ReportMetric(float64(b.N)/ins.Seconds(), "insert-jobs/s")
}

// BenchmarkInsert measures single inserts, one transaction each.
func BenchmarkInsert(b *testing.B) {
	db := newDB(b)
	ctx := context.Background()
	w := NewWorkers()
	AddWorker(w, func(ctx context.Context, j *Job[noopArgs]) error { return nil })
	c := newClient(b, db.Pool, w, nil)
	b.ResetTimer()
	for i := range b.N {
		if _, err := c.Insert(ctx, db.Pool, noopArgs{N: i}, nil); err != nil {
			b.Fatal(err)
		}
	}
}
