// Command auth is a small web application on justpg's auth package: sign-up,
// log-in, log-out, a "your sessions" page with revocation, and the password
// reset flow, over plain HTML forms. Reset links are "sent" by the logging
// mailer: look for them in the server's log.
//
//	go run ./examples/auth            # serve on https://localhost:8443 (self-signed) until Ctrl-C
//	go run ./examples/auth -demo      # run the whole flow with an HTTP client and exit
//
// The session cookie is named __Host-session and is Secure, so the example
// serves HTTPS with a throwaway self-signed certificate (accept the browser's
// warning).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/auth"
	"github.com/justpg/justpg/internal/pgtest"
)

func main() {
	demo := flag.Bool("demo", false, "run the flow with an HTTP client and exit")
	addr := flag.String("addr", "localhost:8443", "listen address")
	flag.Parse()
	if err := run(*demo, *addr); err != nil {
		log.Fatal(err)
	}
}

// lastMailer logs like auth.LogMailer and remembers the last token, so that
// the -demo run can follow the link.
type lastMailer struct {
	auth.LogMailer
	mu   sync.Mutex
	last string
}

func (m *lastMailer) Send(ctx context.Context, db auth.DB, msg auth.Message) error {
	m.mu.Lock()
	m.last = msg.Token
	m.mu.Unlock()
	return m.LogMailer.Send(ctx, db, msg)
}

func run(demo bool, addr string) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	dbURL, stop, err := pgtest.ExampleDatabase(ctx, "justpg_auth_example")
	if err != nil {
		return err
	}
	defer stop()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := auth.Migrate(ctx, pool); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	mailer := &lastMailer{LogMailer: auth.LogMailer{Logger: logger}}
	a, err := auth.New(pool, auth.Config{Mailer: mailer, Logger: logger})
	if err != nil {
		return err
	}
	h := &app{a: a, pool: pool}
	handler := auth.Protect(a.Middleware(h.routes()))

	if demo {
		return runDemo(handler, mailer)
	}
	srv := httptest.NewUnstartedServer(handler)
	srv.Config.Addr = addr
	srv.Listener.Close()
	if srv.Listener, err = net.Listen("tcp", addr); err != nil {
		return err
	}
	srv.StartTLS()
	defer srv.Close()
	fmt.Printf("serving %s (self-signed certificate); Ctrl-C to stop\n", srv.URL)
	<-ctx.Done()
	return nil
}

type app struct {
	a    *auth.Auth
	pool *pgxpool.Pool
}

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>justpg auth example</title></head><body>
{{with .Flash}}<p><strong>{{.}}</strong></p>{{end}}
{{if .User}}
  <p>Logged in as {{.User.Email}}. <a href="/">Home</a> · <a href="/sessions">Your sessions</a></p>
  <form method="post" action="/logout"><button>Log out</button></form>
  {{if .Sessions}}
  <h2>Sessions</h2>
  <table><tr><th>created</th><th>last seen</th><th>browser</th><th>IP</th><th></th></tr>
  {{range .Sessions}}<tr><td>{{.CreatedAt.Format "2006-01-02 15:04"}}</td><td>{{.LastSeenAt.Format "15:04:05"}}</td>
    <td>{{.UserAgent}}</td><td>{{.IP}}</td>
    <td>{{if eq .ID $.Current}}this one{{else}}<form method="post" action="/sessions/revoke"><input type="hidden" name="id" value="{{.ID}}"><button>Revoke</button></form>{{end}}</td></tr>
  {{end}}</table>
  <form method="post" action="/sessions/revoke-others"><button>Log out everywhere else</button></form>
  {{end}}
{{else if .ResetToken}}
  <h2>Choose a new password</h2>
  <form method="post" action="/reset"><input type="hidden" name="token" value="{{.ResetToken}}">
    <input type="password" name="password" placeholder="new password" autocomplete="new-password"><button>Set password</button></form>
{{else}}
  <h2>Sign up</h2>
  <form method="post" action="/signup"><input name="email" placeholder="e-mail" autocomplete="email">
    <input type="password" name="password" placeholder="password (8+ characters)" autocomplete="new-password"><button>Sign up</button></form>
  <h2>Log in</h2>
  <form method="post" action="/login"><input name="email" placeholder="e-mail" autocomplete="username">
    <input type="password" name="password" placeholder="password" autocomplete="current-password"><button>Log in</button></form>
  <h2>Forgot your password?</h2>
  <form method="post" action="/forgot"><input name="email" placeholder="e-mail"><button>Send me a reset link</button></form>
{{end}}
</body></html>`))

type view struct {
	Flash      string
	User       *auth.User
	Sessions   []auth.Session
	Current    string
	ResetToken string
}

func (h *app) render(w http.ResponseWriter, r *http.Request, status int, v view) {
	if p := auth.PrincipalFrom(r.Context()); p != nil && v.ResetToken == "" {
		v.User = &p.User
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := page.Execute(w, v); err != nil {
		log.Print(err)
	}
}

func (h *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		h.render(w, r, http.StatusOK, view{Flash: r.URL.Query().Get("m")})
	})
	mux.HandleFunc("POST /signup", func(w http.ResponseWriter, r *http.Request) {
		c := auth.ClientFromRequest(r)
		_, err := h.a.SignUp(r.Context(), h.pool, r.FormValue("email"), r.FormValue("password"), c)
		if err != nil {
			h.render(w, r, http.StatusBadRequest, view{Flash: userMessage(err)})
			return
		}
		h.login(w, r)
	})
	mux.HandleFunc("POST /login", h.login)
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		_ = h.a.Logout(r.Context(), h.pool, h.a.SessionToken(r), auth.ClientFromRequest(r))
		h.a.ClearSessionCookie(w)
		http.Redirect(w, r, "/?m=Logged+out.", http.StatusSeeOther)
	})
	mux.Handle("GET /sessions", auth.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := auth.PrincipalFrom(r.Context())
		list, err := h.a.Sessions(r.Context(), h.pool, p.User.ID)
		if err != nil {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		h.render(w, r, http.StatusOK, view{Sessions: list, Current: p.Session.ID, Flash: r.URL.Query().Get("m")})
	})))
	mux.Handle("POST /sessions/revoke", auth.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := auth.PrincipalFrom(r.Context())
		err := h.a.RevokeSession(r.Context(), h.pool, p.User.ID, r.FormValue("id"), auth.ClientFromRequest(r))
		if err != nil && !errors.Is(err, auth.ErrNotFound) {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		http.Redirect(w, r, "/sessions?m=Session+revoked.", http.StatusSeeOther)
	})))
	mux.Handle("POST /sessions/revoke-others", auth.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := auth.PrincipalFrom(r.Context())
		if _, err := h.a.RevokeSessions(r.Context(), h.pool, p.User.ID, p.Session.ID, auth.ClientFromRequest(r)); err != nil {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		http.Redirect(w, r, "/sessions?m=Other+sessions+revoked.", http.StatusSeeOther)
	})))
	mux.HandleFunc("POST /forgot", func(w http.ResponseWriter, r *http.Request) {
		err := h.a.RequestPasswordReset(r.Context(), h.pool, r.FormValue("email"), auth.ClientFromRequest(r))
		if err != nil && !errors.Is(err, auth.ErrRateLimited) {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		// The same answer whether or not the account exists.
		h.render(w, r, http.StatusOK, view{Flash: "If that address has an account, a reset link is on its way (see the server log: /reset?token=...)."})
	})
	mux.HandleFunc("GET /reset", func(w http.ResponseWriter, r *http.Request) {
		h.render(w, r, http.StatusOK, view{ResetToken: r.URL.Query().Get("token")})
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) {
		token := r.FormValue("token")
		_, err := h.a.ResetPassword(r.Context(), h.pool, token, r.FormValue("password"), auth.ClientFromRequest(r))
		if errors.Is(err, auth.ErrWeakPassword) {
			h.render(w, r, http.StatusBadRequest, view{ResetToken: token, Flash: userMessage(err)})
			return
		}
		if err != nil {
			h.render(w, r, http.StatusBadRequest, view{Flash: userMessage(err)})
			return
		}
		h.a.ClearSessionCookie(w)
		http.Redirect(w, r, "/?m=Password+changed%3B+every+session+was+logged+out.+Log+in+again.", http.StatusSeeOther)
	})
	return mux
}

func (h *app) login(w http.ResponseWriter, r *http.Request) {
	res, err := h.a.Login(r.Context(), h.pool, auth.Credentials{
		Email: r.FormValue("email"), Password: r.FormValue("password"),
	}, auth.ClientFromRequest(r))
	if err != nil {
		h.render(w, r, http.StatusUnauthorized, view{Flash: userMessage(err)})
		return
	}
	h.a.SetSessionCookie(w, res.Token, res.Session)
	http.Redirect(w, r, "/?m=Welcome.", http.StatusSeeOther)
}

// userMessage turns the package's sentinel errors into text for the page.
func userMessage(err error) string {
	switch {
	case errors.Is(err, auth.ErrInvalidCredentials):
		return "Wrong e-mail or password."
	case errors.Is(err, auth.ErrRateLimited):
		return "Too many attempts; try again in a minute."
	case errors.Is(err, auth.ErrEmailTaken):
		return "That address already has an account."
	case errors.Is(err, auth.ErrInvalidEmail), errors.Is(err, auth.ErrWeakPassword):
		return strings.TrimPrefix(err.Error(), "auth: ")
	case errors.Is(err, auth.ErrInvalidToken), errors.Is(err, auth.ErrTokenUsed), errors.Is(err, auth.ErrTokenExpired):
		return "That reset link is invalid, used or expired; ask for a new one."
	default:
		log.Print(err)
		return "Something went wrong."
	}
}

// runDemo drives the application with a real HTTP client and cookie jar.
func runDemo(handler http.Handler, mailer *lastMailer) error {
	srv := httptest.NewTLSServer(handler)
	defer srv.Close()
	newBrowser := func() *http.Client {
		jar, _ := cookiejar.New(nil)
		return &http.Client{Transport: srv.Client().Transport, Jar: jar}
	}
	browser, phone := newBrowser(), newBrowser()
	flash := regexp.MustCompile(`<strong>([^<]*)</strong>`)
	step := func(c *http.Client, what, path string, form url.Values) (string, error) {
		var resp *http.Response
		var err error
		if form == nil {
			resp, err = c.Get(srv.URL + path)
		} else {
			resp, err = c.PostForm(srv.URL+path, form)
		}
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		msg := ""
		if m := flash.FindSubmatch(b); m != nil {
			msg = " — " + template.HTMLEscapeString(string(m[1]))
		}
		fmt.Printf("%-34s %d%s\n", what, resp.StatusCode, msg)
		return string(b), nil
	}
	creds := url.Values{"email": {"Ada@Example.com"}, "password": {"analytical engine 1843"}}
	if _, err := step(browser, "sign up (laptop)", "/signup", creds); err != nil {
		return err
	}
	if _, err := step(phone, "log in (phone)", "/login", creds); err != nil {
		return err
	}
	if _, err := step(phone, "wrong password (phone)", "/login", url.Values{"email": {"ada@example.com"}, "password": {"nope"}}); err != nil {
		return err
	}
	body, err := step(browser, "sessions page (laptop)", "/sessions", nil)
	if err != nil {
		return err
	}
	fmt.Printf("%-34s %d\n", "  sessions listed", strings.Count(body, "<tr><td>"))
	if _, err := step(browser, "log out everywhere else (laptop)", "/sessions/revoke-others", url.Values{}); err != nil {
		return err
	}
	if _, err := step(phone, "sessions page (phone, revoked)", "/sessions", nil); err != nil {
		return err
	}
	if _, err := step(browser, "log out (laptop)", "/logout", url.Values{}); err != nil {
		return err
	}
	if _, err := step(browser, "forgot password", "/forgot", url.Values{"email": {"ada@example.com"}}); err != nil {
		return err
	}
	mailer.mu.Lock()
	token := mailer.last
	mailer.mu.Unlock()
	if _, err := step(browser, "open the reset link", "/reset?token="+url.QueryEscape(token), nil); err != nil {
		return err
	}
	if _, err := step(browser, "reset with a common password", "/reset", url.Values{"token": {token}, "password": {"password1"}}); err != nil {
		return err
	}
	if _, err := step(browser, "reset with a good password", "/reset", url.Values{"token": {token}, "password": {"difference engine 1822"}}); err != nil {
		return err
	}
	if _, err := step(browser, "reuse the reset link", "/reset", url.Values{"token": {token}, "password": {"difference engine 1822"}}); err != nil {
		return err
	}
	if _, err := step(browser, "log in with the new password", "/login", url.Values{"email": {"ada@example.com"}, "password": {"difference engine 1822"}}); err != nil {
		return err
	}
	return nil
}
