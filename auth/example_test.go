package auth_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"

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

func exampleDB() (*pgxpool.Pool, func()) {
	db, done := pgtest.ForExample()
	return db.Pool, done
}

// The middleware resolves the session cookie (or a bearer API key) into a
// Principal; RequireUser guards handlers and Protect refuses cross-site
// form posts.
func ExampleAuth_Middleware() {
	ctx := context.Background()
	pool, done := exampleDB()
	defer done()
	if err := auth.Migrate(ctx, pool); err != nil {
		log.Fatal(err)
	}
	cheap, _ := auth.NewArgon2id(auth.Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	a, err := auth.New(pool, auth.Config{Hasher: cheap})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := a.SignUp(ctx, pool, "grace@example.com", "cobol compiler 1959", auth.Client{}); err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		res, err := a.Login(r.Context(), pool, auth.Credentials{
			Email: r.FormValue("email"), Password: r.FormValue("password"),
		}, auth.ClientFromRequest(r))
		if err != nil {
			http.Error(w, "wrong e-mail or password", http.StatusUnauthorized)
			return
		}
		a.SetSessionCookie(w, res.Token, res.Session)
		fmt.Fprint(w, "logged in")
	})
	mux.Handle("GET /me", auth.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, auth.PrincipalFrom(r.Context()).User.Email)
	})))
	srv := httptest.NewTLSServer(auth.Protect(a.Middleware(mux)))
	defer srv.Close()

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Transport: srv.Client().Transport, Jar: jar}
	show := func(resp *http.Response, err error) {
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Println(resp.StatusCode, strings.TrimSpace(string(body)))
	}
	show(browser.Get(srv.URL + "/me"))
	show(browser.PostForm(srv.URL+"/login", url.Values{"email": {"grace@example.com"}, "password": {"cobol compiler 1959"}}))
	show(browser.Get(srv.URL + "/me"))
	// Output:
	// 401 unauthorized
	// 200 logged in
	// 200 grace@example.com
}
