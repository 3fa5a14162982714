package auth_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/netip"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/auth"
	"github.com/justpg/justpg/internal/pgtest"
)

func Example() {
	ctx := context.Background()
	// A throwaway database for the example; an application passes its pool.
	pool, done := exampleDB()
	defer done()

	if err := auth.Migrate(ctx, pool); err != nil {
		log.Fatal(err)
	}
	// The zero Config is safe: OWASP's argon2id parameters (m=19 MiB, t=2,
	// p=1), 12h idle / 7d absolute sessions, lock-out with back-off. The
	// example lowers the hashing cost only so that it runs fast.
	cheap, err := auth.NewArgon2id(auth.Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	if err != nil {
		log.Fatal(err)
	}
	a, err := auth.New(pool, auth.Config{Hasher: cheap})
	if err != nil {
		log.Fatal(err)
	}
	client := auth.Client{IP: netip.MustParseAddr("192.0.2.1"), UserAgent: "example"}

	u, err := a.SignUp(ctx, pool, "Ada@Example.com", "analytical engine 1843", client)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("signed up:", u.Email)

	_, err = a.Login(ctx, pool, auth.Credentials{Email: "ada@example.com", Password: "wrong"}, client)
	fmt.Println("wrong password:", errors.Is(err, auth.ErrInvalidCredentials))
	_, err = a.Login(ctx, pool, auth.Credentials{Email: "nobody@example.com", Password: "wrong"}, client)
	fmt.Println("unknown e-mail, same answer:", errors.Is(err, auth.ErrInvalidCredentials))

	res, err := a.Login(ctx, pool, auth.Credentials{Email: "ada@example.com", Password: "analytical engine 1843"}, client)
	if err != nil {
		log.Fatal(err)
	}
	// res.Token goes to the browser (a.SetSessionCookie); only its SHA-256 is stored.
	p, err := a.ValidateSession(ctx, pool, res.Token)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("session of:", p.User.Email)

	if err := a.Logout(ctx, pool, res.Token, client); err != nil {
		log.Fatal(err)
	}
	_, err = a.ValidateSession(ctx, pool, res.Token)
	fmt.Println("after logout:", errors.Is(err, auth.ErrInvalidToken))
	// Output:
	// signed up: ada@example.com
	// wrong password: true
	// unknown e-mail, same answer: true
	// session of: ada@example.com
	// after logout: true
}

// exampleTB lets the example borrow pgtest's throwaway databases outside a
// test: it runs cleanups when done and turns failures into log.Fatal.
type exampleTB struct {
	testing.TB
	cleanups []func()
}

func (e *exampleTB) Helper()                   {}
func (e *exampleTB) Cleanup(f func())          { e.cleanups = append(e.cleanups, f) }
func (e *exampleTB) Fatal(args ...any)         { log.Fatal(args...) }
func (e *exampleTB) Errorf(f string, a ...any) { log.Printf(f, a...) }

func exampleDB() (*pgxpool.Pool, func()) {
	tb := &exampleTB{}
	db := pgtest.NewDB(tb)
	return db.Pool, func() {
		for i := len(tb.cleanups) - 1; i >= 0; i-- {
			tb.cleanups[i]()
		}
	}
}
