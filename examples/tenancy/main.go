// Command tenancy is a multi-tenant notes API in which two tenants provably
// cannot see each other's notes. The handlers never mention a tenant: the
// middleware resolves it from the X-Tenant header, and every query runs in a
// transaction scoped to it, as a role that row-level security applies to.
//
// Tenant "acme" lives in the shared table; "globex" has a schema of its own.
// The program serves the API, drives it as both tenants, and checks that
// neither sees the other's notes (exit status 1 if one does).
//
//	go run ./examples/tenancy            # demo, then exit
//	go run ./examples/tenancy -serve     # keep serving on -addr
//	curl -H 'X-Tenant: acme' localhost:8080/notes
//	curl -H 'X-Tenant: acme' -d 'buy milk' localhost:8080/notes
package main

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/tenancy"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

const appRole, appPassword = "justpg_tenancy_example_app", "example-only"

func main() {
	serve := flag.Bool("serve", false, "keep serving after the demo")
	addr := flag.String("addr", "127.0.0.1:8080", "listen address with -serve")
	flag.Parse()
	if err := run(*serve, *addr); err != nil {
		log.Fatal(err)
	}
}

func run(serve bool, addr string) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	url, stop, err := pgtest.ExampleDatabase(ctx, "justpg_tenancy_example")
	if err != nil {
		return err
	}
	defer stop()

	// Set-up, as the role that owns the tables.
	owner, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer owner.Close()
	appMigrations, _ := fs.Sub(migrationFiles, "migrations")
	m, err := tenancy.New(tenancy.Config{TenantMigrations: appMigrations, AppRole: appRole})
	if err != nil {
		return err
	}
	if err := tenancy.Migrate(ctx, owner); err != nil {
		return err
	}
	if _, err := m.MigrateApp(ctx, owner, "public"); err != nil {
		return err
	}
	if err := m.CreateAppRole(ctx, owner, tenancy.AppRole{Name: appRole, Password: appPassword, Schemas: []string{"public"}}); err != nil {
		return err
	}
	tenants := map[string]tenancy.Isolation{"acme": tenancy.Shared, "globex": tenancy.Dedicated}
	for slug, iso := range tenants {
		_, err := m.Create(ctx, owner, tenancy.NewTenant{Slug: slug, Name: strings.ToUpper(slug), Isolation: iso})
		if err != nil && !errors.Is(err, tenancy.ErrSlugTaken) {
			return err
		}
	}

	// The application, as a role row-level security applies to.
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return err
	}
	cfg.ConnConfig.User, cfg.ConnConfig.Password = appRole, appPassword
	app, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer app.Close()
	if err := tenancy.Check(ctx, app); err != nil {
		return err // never serve on a connection that would bypass RLS
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /notes", func(w http.ResponseWriter, r *http.Request) {
		var notes []string
		err := m.InTenant(r.Context(), app, func(tx pgx.Tx) error {
			rows, _ := tx.Query(r.Context(), `SELECT body FROM notes ORDER BY created_at, id`)
			var err error
			notes, err = pgx.CollectRows(rows, pgx.RowTo[string])
			return err
		})
		reply(w, notes, err)
	})
	mux.HandleFunc("POST /notes", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 10_000))
		if err == nil {
			err = m.InTenant(r.Context(), app, func(tx pgx.Tx) error {
				_, err := tx.Exec(r.Context(), `INSERT INTO notes (body) VALUES ($1)`, string(body))
				return err
			})
		}
		reply(w, "created", err)
	})
	handler := m.Middleware(app, tenancy.MiddlewareConfig{Resolve: tenancy.FromHeader("X-Tenant")})(mux)

	if !serve {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Shutdown(context.Background())
	base := "http://" + ln.Addr().String()
	fmt.Println("serving on", base)

	if err := demo(base); err != nil {
		return err
	}
	if serve {
		<-ctx.Done()
	}
	return nil
}

func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		log.Print(err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// demo writes a note as each tenant and checks what each can read.
func demo(base string) error {
	call := func(method, tenant, body string) (int, string, error) {
		req, _ := http.NewRequest(method, base+"/notes", strings.NewReader(body))
		if tenant != "" {
			req.Header.Set("X-Tenant", tenant)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b)), err
	}
	stamp := time.Now().Format(time.RFC3339Nano)
	for _, t := range []string{"acme", "globex"} {
		if code, _, err := call("POST", t, "secret plan of "+t+" "+stamp); err != nil || code != 200 {
			return fmt.Errorf("POST as %s: %d %v", t, code, err)
		}
	}
	for _, t := range []string{"acme", "globex"} {
		code, body, err := call("GET", t, "")
		if err != nil || code != 200 {
			return fmt.Errorf("GET as %s: %d %v", t, code, err)
		}
		fmt.Printf("GET /notes as %-7s -> %s\n", t, body)
		var notes []string
		if err := json.Unmarshal([]byte(body), &notes); err != nil {
			return err
		}
		for _, n := range notes {
			if !strings.Contains(n, "of "+t+" ") {
				return fmt.Errorf("LEAK: %s sees %q", t, n)
			}
		}
	}
	for _, t := range []string{"", "nobody", "x'; DROP TABLE notes; --"} {
		code, body, _ := call("GET", t, "")
		fmt.Printf("GET /notes as %-7q -> %d %s\n", t, code, body)
	}
	fmt.Println("ok: each tenant sees only its own notes")
	return nil
}
