package realtime

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkPublish measures one Publish round trip through the pool.
func BenchmarkPublish(b *testing.B) { benchPublish(b) }

// BenchmarkPublishEphemeral is BenchmarkPublish with Ephemeral: pg_notify
// through the function-call protocol message, no stream lookup.
func BenchmarkPublishEphemeral(b *testing.B) { benchPublish(b, Ephemeral()) }

func benchPublish(b *testing.B, opts ...PublishOption) {
	db := pgtestDB(b)
	br, err := New(db.Pool, Config{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := br.Publish(ctx, db.Pool, "bench", fmt.Appendf(nil, "%d", i), opts...); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawNotify is the same round trip with a bare pg_notify.
func BenchmarkRawNotify(b *testing.B) {
	db := pgtestDB(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := db.Pool.Exec(ctx, `SELECT pg_notify($1, $2)`, "bench", fmt.Sprint(i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishBatch publishes 500 messages per round trip.
func BenchmarkPublishBatch(b *testing.B) {
	db := pgtestDB(b)
	br, err := New(db.Pool, Config{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	msgs := make([]Message, 500)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		for j := range msgs {
			msgs[j] = Message{Channel: "bench", Payload: fmt.Appendf(nil, "%d-%d", i, j)}
		}
		if err := br.PublishBatch(ctx, db.Pool, msgs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(msgs))/b.Elapsed().Seconds(), "msg/s")
}

// BenchmarkPublishParallel publishes from GOMAXPROCS*4 goroutines.
func BenchmarkPublishParallel(b *testing.B) {
	db := pgtestDB(b)
	br, err := New(db.Pool, Config{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if err := br.Publish(ctx, db.Pool, "bench", fmt.Appendf(nil, "%p-%d", pb, i)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRawNotifyParallel is BenchmarkPublishParallel with a bare pg_notify.
func BenchmarkRawNotifyParallel(b *testing.B) {
	db := pgtestDB(b)
	ctx := context.Background()
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			if _, err := db.Pool.Exec(ctx, `SELECT pg_notify($1, $2)`, "bench", fmt.Sprintf("%p-%d", pb, i)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
