// Command search is a product catalogue with search-as-you-type over HTTP:
// it loads a few products into PostgreSQL (DATABASE_URL, or a throwaway
// server), indexes them with justpg/search and serves JSON.
//
//	go run ./examples/search            # then open http://127.0.0.1:8080/
//	curl 'http://127.0.0.1:8080/search?q=espreso+machne&category=kitchen'
//	curl 'http://127.0.0.1:8080/suggest?q=espreso'
//
// With -demo it runs a few queries through the handler, prints the JSON and
// exits.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/search"
)

var products = []struct {
	title, description, category string
	price                        float64
}{
	{"Moka Pot 6 cups", "Stovetop espresso maker in aluminium.", "kitchen", 29},
	{"Espresso Machine Pro", "15 bar pump espresso machine with steam wand.", "kitchen", 349},
	{"Café Crème Beans 1kg", "Medium roast coffee beans for espresso & filter.", "grocery", 18},
	{"French Press", "Glass coffee maker, 1 litre.", "kitchen", 24},
	{"Burr Grinder", "Conical burr coffee grinder with 40 settings.", "kitchen", 99},
	{"Milk Frother", "Handheld frother for cappuccino and latte.", "kitchen", 15},
	{"Barista Apron", "Waxed canvas apron with pockets.", "clothing", 39},
	{"Pour-over Kettle", "Gooseneck kettle, 0.9 l, temperature control.", "kitchen", 69},
	{"Decaf Espresso Blend", "Swiss water decaffeinated espresso beans.", "grocery", 16},
	{"Travel Mug", "Insulated mug that keeps coffee hot for 6 hours.", "outdoor", 22},
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "listen address")
	demo := flag.Bool("demo", false, "run sample queries and exit")
	flag.Parse()
	if err := run(*addr, *demo); err != nil {
		log.Fatal(err)
	}
}

func run(addr string, demo bool) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	url, stop, err := pgtest.ExampleDatabase(ctx, "justpg_search_example")
	if err != nil {
		return err
	}
	defer stop()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()

	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS products (
		id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		title text NOT NULL, description text, category text NOT NULL, price numeric NOT NULL)`); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, `TRUNCATE products RESTART IDENTITY`); err != nil {
		return err
	}
	for _, p := range products {
		if _, err := pool.Exec(ctx, `INSERT INTO products (title, description, category, price) VALUES ($1, $2, $3, $4)`,
			p.title, p.description, p.category, p.price); err != nil {
			return err
		}
	}
	ix, err := search.New(search.Config{
		Table:            "products",
		Key:              "id",
		Fields:           []search.Field{{Column: "title", Weight: search.A}, {Column: "description", Weight: search.C}},
		Filters:          []string{"category", "price"},
		CreateExtensions: true,
	})
	if err != nil {
		return err
	}
	if err := ix.Create(ctx, pool); err != nil {
		return err
	}
	if err := ix.RefreshWords(ctx, pool); err != nil {
		return err
	}
	h := handler(pool, ix)

	if demo {
		for _, u := range []string{"/search?q=espr", "/search?q=espreso+machne", "/search?q=coffee&category=kitchen&max_price=50", "/suggest?q=grindr"} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", u, nil))
			fmt.Printf("GET %s -> %d\n%s\n", u, rec.Code, rec.Body.String())
		}
		return nil
	}
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	fmt.Printf("listening on http://%s/ (Ctrl-C to stop)\n", addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type hitJSON struct {
	ID        string            `json:"id"`
	Title     string            `json:"title"`
	Price     float64           `json:"price"`
	Match     search.Match      `json:"match"`
	Highlight map[string]string `json:"highlight"`
}

func handler(pool *pgxpool.Pool, ix *search.Index) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /search", func(w http.ResponseWriter, r *http.Request) {
		q := search.Query{Text: r.URL.Query().Get("q"), Highlight: true, Limit: 10, After: r.URL.Query().Get("after")}
		if c := r.URL.Query().Get("category"); c != "" {
			q.Filters = append(q.Filters, search.Eq("category", c))
		}
		if p := r.URL.Query().Get("max_price"); p != "" {
			v, err := strconv.ParseFloat(p, 64)
			if err != nil {
				http.Error(w, "max_price must be a number", http.StatusBadRequest)
				return
			}
			q.Filters = append(q.Filters, search.Le("price", v))
		}
		res, err := ix.Search(r.Context(), pool, q)
		if errors.Is(err, search.ErrQuery) {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		} else if err != nil {
			log.Print(err)
			http.Error(w, "search failed", http.StatusInternalServerError)
			return
		}
		out := struct {
			Hits        []hitJSON           `json:"hits"`
			Total       int64               `json:"total"`
			Next        string              `json:"next,omitempty"`
			Corrections map[string][]string `json:"corrections,omitempty"`
		}{Hits: []hitJSON{}, Total: res.Total, Next: res.Next, Corrections: res.Corrections}
		for _, h := range res.Hits {
			hj := hitJSON{ID: h.Key, Match: h.Match, Highlight: h.Highlights}
			// The hits carry keys; fetch what the page shows.
			if err := pool.QueryRow(r.Context(), `SELECT title, price::float8 FROM products WHERE id = $1::bigint`, h.Key).Scan(&hj.Title, &hj.Price); err != nil {
				log.Print(err)
				http.Error(w, "search failed", http.StatusInternalServerError)
				return
			}
			out.Hits = append(out.Hits, hj)
		}
		writeJSON(w, out)
	})
	mux.HandleFunc("GET /suggest", func(w http.ResponseWriter, r *http.Request) {
		s, err := ix.Suggest(r.Context(), pool, r.URL.Query().Get("q"), 5)
		if err != nil {
			log.Print(err)
			http.Error(w, "suggest failed", http.StatusInternalServerError)
			return
		}
		if s == nil {
			s = []search.Suggestion{}
		}
		writeJSON(w, s)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, page)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // highlights are already HTML-escaped
	_ = enc.Encode(v)
}

const page = `<!doctype html><meta charset="utf-8"><title>justpg search</title>
<input id="q" placeholder="Search products…" autofocus size="40"><ul id="r"></ul>
<script>
const q = document.getElementById('q'), r = document.getElementById('r');
let seq = 0;
q.addEventListener('input', async () => {
  const n = ++seq;
  const res = await fetch('/search?q=' + encodeURIComponent(q.value));
  const body = await res.json();
  if (n !== seq) return; // a newer keystroke won
  // Highlights are HTML-escaped by the server, only <mark> is markup.
  r.innerHTML = body.hits.map(h => '<li>' + (h.highlight.title || '') + ' — ' + h.price + ' (' + h.match + ')</li>').join('');
});
</script>`
