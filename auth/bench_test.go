package auth_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/justpg/justpg/auth"
	"github.com/justpg/justpg/internal/pgtest"
)

// BenchmarkMiddlewareSession measures cookie → session → user through the
// middleware (one indexed read per request).
func BenchmarkMiddlewareSession(b *testing.B) {
	db := pgtest.NewDB(b, migrated())
	a, err := auth.New(db.Pool, auth.Config{Hasher: newHasher(b, cheap), IPLimit: -1})
	if err != nil {
		b.Fatal(err)
	}
	u, err := a.SignUp(ctx, db.Pool, "bench@example.com", goodPW, client)
	if err != nil {
		b.Fatal(err)
	}
	token, _, err := a.CreateSession(ctx, db.Pool, u.ID, client)
	if err != nil {
		b.Fatal(err)
	}
	h := a.Middleware(auth.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("GET", "/", nil)
			req.AddCookie(&http.Cookie{Name: "__Host-session", Value: token})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatalf("status %d", rec.Code)
			}
		}
	})
}

// BenchmarkArgon2idOWASP is the cost of one password hash at the default
// parameters: the floor of a log-in's latency.
func BenchmarkArgon2idOWASP(b *testing.B) {
	h, err := auth.NewArgon2id(auth.DefaultArgon2Params)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := h.Hash(ctx, []byte(goodPW)); err != nil {
			b.Fatal(err)
		}
	}
}
