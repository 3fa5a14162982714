package main

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"sync"
	"time"

	"github.com/justpg/justpg/tenancy"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// staticFS serves /static/... from the embedded static directory.
var staticFS fs.FS = staticFiles

var (
	pages     map[string]*template.Template
	fragments *template.Template
)

var funcs = template.FuncMap{
	// marked trusts search highlights: search escapes the text and adds
	// only its <mark> markers.
	"marked": func(s string) template.HTML { return template.HTML(s) },
	"ago": func(t time.Time) string {
		d := time.Since(t).Round(time.Second)
		switch {
		case d < time.Minute:
			return "just now"
		case d < time.Hour:
			return fmt.Sprintf("%d min ago", int(d.Minutes()))
		case d < 48*time.Hour:
			return fmt.Sprintf("%d h ago", int(d.Hours()))
		}
		return t.UTC().Format("2 Jan 2006")
	},
	"bytes": func(n int64) string {
		switch {
		case n < 1<<10:
			return fmt.Sprintf("%d B", n)
		case n < 1<<20:
			return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
		}
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	},
	"ms":   func(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) },
	"utc":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"wrap": func(ws tenancy.Tenant, v any) fragmentData { return fragmentData{WS: ws, V: v} },
}

// parseTemplates parses every page with the layout and the fragments, once
// per process (several Apps, as in the tests, share them).
func parseTemplates() error { return parseOnce() }

var parseOnce = sync.OnceValue(func() error {
	frag, err := template.New("").Funcs(funcs).ParseFS(templateFiles, "templates/fragments.html")
	if err != nil {
		return err
	}
	ps := map[string]*template.Template{}
	for _, name := range []string{"home", "workspace", "note", "members", "sessions", "jobs", "admin", "join", "error"} {
		t, err := template.Must(frag.Clone()).ParseFS(templateFiles, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return err
		}
		ps[name] = t
	}
	pages, fragments = ps, frag
	return nil
})

// render writes a full page. data is the page's own data; the layout adds
// the workspace and the signed-in member.
func (a *App) render(w http.ResponseWriter, r *http.Request, page string, data map[string]any) {
	if t, ok := tenancy.FromContext(r.Context()); ok {
		data["WS"] = t
	}
	data["Me"] = memberFrom(r.Context())
	var buf bytes.Buffer
	if err := pages[page].ExecuteTemplate(&buf, "layout", data); err != nil {
		a.log.Error("render", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = buf.WriteTo(w)
}

// renderFragment writes one fragment (for the page's JavaScript).
func (a *App) renderFragment(w http.ResponseWriter, r *http.Request, name string, data any) {
	var buf bytes.Buffer
	if err := fragments.ExecuteTemplate(&buf, name, fragmentData{WS: workspaceOr(r), V: data}); err != nil {
		a.log.Error("render", "fragment", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = buf.WriteTo(w)
}

// fragmentData is what fragments get: the workspace and their value.
type fragmentData struct {
	WS tenancy.Tenant
	V  any
}

func workspaceOr(r *http.Request) tenancy.Tenant {
	t, _ := tenancy.FromContext(r.Context())
	return t
}

func jsonBytes(v any) ([]byte, error) { return json.Marshal(v) }
