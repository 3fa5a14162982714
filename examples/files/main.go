// Command files is a small file-sharing site on PostgreSQL: an upload form
// (streamed to the database, several files at once), a paginated list, and
// downloads with Range support — open a video and seek in it, the browser
// asks for byte ranges and gets them from the chunks it needs.
//
//	go run ./examples/files              # then open http://localhost:8080
//	go run ./examples/files -addr :9000
//
// It uses DATABASE_URL when set, otherwise a throwaway PostgreSQL server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/files"
	"github.com/justpg/justpg/internal/pgtest"
)

func main() {
	addr := flag.String("addr", "localhost:8080", "listen address")
	flag.Parse()
	if err := run(*addr); err != nil {
		log.Fatal(err)
	}
}

func run(addr string) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	url, stop, err := pgtest.ExampleDatabase(ctx, "justpg_files_example")
	if err != nil {
		return err
	}
	defer stop()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := files.Migrate(ctx, pool); err != nil {
		return err
	}
	mux, err := newHandler(pool)
	if err != nil {
		return err
	}

	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shut, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		_ = srv.Shutdown(shut)
	}()
	fmt.Printf("listening on http://%s\n", addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newHandler serves the demo: the list page with the upload form, uploads,
// downloads with Range support, and deletes.
func newHandler(pool *pgxpool.Pool) (http.Handler, error) {
	store, err := files.New(files.Config{
		MaxSize:      1 << 30,
		AllowedTypes: []string{"image/*", "video/*", "audio/*", "text/plain", "application/pdf", "application/octet-stream"},
		Dedup:        true,
	})
	if err != nil {
		return nil, err
	}
	hc := files.HandlerConfig{
		DB:     pool,
		Inline: true, // show images and play videos in the page
		ErrorLog: func(r *http.Request, err error) {
			log.Printf("%s %s: %v", r.Method, r.URL.Path, err)
		},
	}

	mux := http.NewServeMux()
	mux.Handle("GET /files/{id}", store.DownloadHandler(hc))
	mux.Handle("HEAD /files/{id}", store.DownloadHandler(hc))
	mux.Handle("POST /files", store.UploadHandler(hc))
	mux.HandleFunc("POST /files/{id}/delete", func(w http.ResponseWriter, r *http.Request) {
		if err := store.Delete(r.Context(), pool, r.PathValue("id")); err != nil && !errors.Is(err, files.ErrNotFound) {
			http.Error(w, "could not delete", http.StatusInternalServerError)
			return
		}
		http.Redirect(w, r, "/", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		page, err := store.List(r.Context(), pool, files.ListOptions{Limit: 20, After: r.URL.Query().Get("after")})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := pageTmpl.Execute(w, page); err != nil {
			log.Print(err)
		}
	})

	return mux, nil
}

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"kind": func(ct string) string {
		base, _, _ := strings.Cut(ct, ";")
		typ, _, _ := strings.Cut(base, "/")
		return typ
	},
	"mib": func(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) },
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>justpg files</title>
<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}li{margin:1em 0}video,img{max-width:100%;max-height:20em;display:block}</style>
</head><body>
<h1>Files in PostgreSQL</h1>
<form id="up" method="post" action="/files" enctype="multipart/form-data">
  <input type="file" name="file" multiple required> <button>Upload</button> <span id="msg"></span>
</form>
<script>
document.getElementById('up').addEventListener('submit', async (e) => {
  e.preventDefault();
  const msg = document.getElementById('msg');
  msg.textContent = 'uploading…';
  const resp = await fetch('/files', {method: 'POST', body: new FormData(e.target)});
  if (resp.ok) { location.reload(); } else { msg.textContent = resp.status + ': ' + await resp.text(); }
});
</script>
<ul>
{{range .Files}}
  <li><a href="/files/{{.ID}}">{{.Name}}</a> — {{.ContentType}}, {{mib .Size}}, sha256 {{printf "%.12s" .Checksum}}…
    <form method="post" action="/files/{{.ID}}/delete" style="display:inline"><button>delete</button></form>
    {{if eq (kind .ContentType) "video"}}<video src="/files/{{.ID}}" controls preload="metadata"></video>{{end}}
    {{if eq (kind .ContentType) "audio"}}<audio src="/files/{{.ID}}" controls></audio>{{end}}
    {{if eq (kind .ContentType) "image"}}<img src="/files/{{.ID}}" alt="{{.Name}}">{{end}}
  </li>
{{else}}
  <li>No files yet.</li>
{{end}}
</ul>
{{if .Next}}<a href="/?after={{.Next}}">next page →</a>{{end}}
</body></html>
`))
