package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/files"
	"github.com/justpg/justpg/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// served records what the download handler answered.
type served struct {
	mu   sync.Mutex
	reqs []struct {
		method, path, rng string
		status            int
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (s *served) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.reqs = append(s.reqs, struct {
			method, path, rng string
			status            int
		}{r.Method, r.URL.Path, r.Header.Get("Range"), sw.status})
	})
}

// TestVideoPlaysAndSeeksInBrowser uploads a 10-second WebM video through the
// upload handler, opens the demo's page in headless Chromium, seeks the
// <video> to 7 s and plays it, and checks that the browser fetched the body
// with Range requests answered 206 by the download handler.
func TestVideoPlaysAndSeeksInBrowser(t *testing.T) {
	path := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed (apt-get install chromium)")
		}
		t.Skip("chromium is not installed (apt-get install chromium); CI=true makes this a failure")
	}
	t.Parallel()
	db := pgtest.NewDB(t)
	ctx := context.Background()
	require.NoError(t, files.Migrate(ctx, db.Pool))
	h, err := newHandler(db.Pool)
	require.NoError(t, err)
	rec := &served{}
	srv := httptest.NewServer(rec.wrap(h))
	defer srv.Close()

	video, err := os.ReadFile("testdata/clock.webm") // ffmpeg testsrc2, 10 s, VP8 at 1.5 Mbit/s, keyframe every second
	require.NoError(t, err)
	resp, err := http.Post(srv.URL+"/files?name=clock.webm", "video/webm", bytes.NewReader(video))
	require.NoError(t, err)
	var up files.UploadResponse
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&up))
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	require.Len(t, up.Files, 1)
	id := up.Files[0].ID

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(path),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.UserDataDir(t.TempDir()),
	)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	// Start the browser on its own context: a step's deadline must not end it.
	require.NoError(t, chromedp.Do(browser))

	do := func(step string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(browser, 45*time.Second)
		defer cancel()
		require.NoError(t, chromedp.Do(sctx, steps...), step)
	}
	until := func(step, js string) {
		t.Helper()
		do(step, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Poll[chromedp.Void](js, chromedp.WithPollingInterval(50*time.Millisecond),
				chromedp.WithPollingTimeout(40*time.Second))(ctx, tg)
			return err
		}))
	}
	const v = `document.querySelector('video[src="/files/` // completed below
	sel := v + id + `"]')`
	do("open the page", chromedp.Navigate(srv.URL+"/"))
	until("metadata loaded", sel+` !== null && `+sel+`.readyState >= 1 && `+sel+`.duration > 9.5`)
	do("seek to 7 s", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](`(() => { const v = `+sel+`; window.seeked = false;
			v.addEventListener("seeked", () => { window.seeked = true }, {once: true});
			v.muted = true; v.currentTime = 7; return true })()`)(ctx, tg)
		return err
	}))
	until("seeked", `window.seeked === true && Math.abs(`+sel+`.currentTime - 7) < 0.5 && `+sel+`.readyState >= 2`)
	do("play", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](sel+`.play().then(() => true)`, chromedp.EvalAwaitPromise)(ctx, tg)
		return err
	}))
	until("plays on from 7 s", `!`+sel+`.paused && `+sel+`.currentTime > 7.3 && !`+sel+`.error`)

	rec.mu.Lock()
	defer rec.mu.Unlock()
	var partial, midway int
	for _, r := range rec.reqs {
		if r.path == "/files/"+id && r.method == http.MethodGet {
			t.Logf("GET %s Range %q -> %d", r.path, r.rng, r.status)
			if r.rng != "" && r.status == http.StatusPartialContent {
				partial++
				if !strings.HasPrefix(r.rng, "bytes=0-") {
					midway++
				}
			}
		}
	}
	assert.Positive(t, partial, "the browser fetched the video with Range requests answered 206")
	// Whether the browser asks for a range in the middle (rather than
	// reading on from what it has) depends on its cache and timing.
	t.Logf("206 responses: %d, of which %d not from byte 0", partial, midway)
}
