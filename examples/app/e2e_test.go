package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// chromium finds the Debian chromium package's browser.
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestBrowserEndToEnd drives the app in headless Chromium: Alice signs up
// workspace acme and invites Carol; Bob signs up workspace globex. Alice's
// note appears live in Carol's browser (with a mention notification) and
// never in Bob's; an uploaded image's thumbnail appears in Carol's open
// note page when the job finishes; a misspelled search finds the note in
// acme and nothing in globex. Screenshots go to $APP_SCREENSHOTS, or to a
// temporary directory.
func TestBrowserEndToEnd(t *testing.T) {
	path := chromium()
	if path == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed (apt-get install chromium)")
		}
		t.Skip("chromium is not installed (apt-get install chromium); CI=true makes this a failure")
	}
	t.Parallel()
	begin := time.Now()
	shots := os.Getenv("APP_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	require.NoError(t, os.MkdirAll(shots, 0o755))
	t.Logf("screenshots in %s", shots)
	img := filepath.Join(t.TempDir(), "whiteboard.png")
	require.NoError(t, os.WriteFile(img, pngBytes(t, 640, 400), 0o644))

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	)
	defer cancelAlloc()
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(browserCtx) }() // start the browser (no deadline) while the app starts
	ta := newTestApp(t)
	base := ta.srv.URL
	require.NoError(t, <-started)
	t.Logf("app and browser started in %v", time.Since(begin).Round(time.Millisecond))

	// Each user has a browser context of their own (own cookies), like a
	// separate browser profile.
	user := func() context.Context {
		ctx, cancel := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
		t.Cleanup(cancel)
		require.NoError(t, chromedp.Do(ctx))
		return ctx
	}
	alice, carol, bob := user(), user(), user()

	// do runs steps with a deadline; step names the failure.
	do := func(ctx context.Context, step string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 25*time.Second)
		defer cancel()
		start := time.Now()
		require.NoError(t, chromedp.Do(sctx, steps...), step)
		t.Logf("%-36s %v", step, time.Since(start).Round(time.Millisecond))
	}
	shot := func(ctx context.Context, name string) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644))
	}
	// until waits for a JavaScript condition to hold.
	until := func(ctx context.Context, step, js string) {
		t.Helper()
		do(ctx, step, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Poll[chromedp.Void](js, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second))(ctx, tg)
			return err
		}))
	}
	field := func(form, name, value string) chromedp.Action[chromedp.Void] {
		// SetValue, not SendKeys: typing key by key costs seconds and tests
		// nothing the form needs (the search box below is typed).
		return chromedp.SetValue(chromedp.CSS(fmt.Sprintf(`#%s [name="%s"]`, form, name)), value)
	}
	signUp := func(ctx context.Context, name, slug, email string, screenshot bool) {
		do(ctx, "sign-up form", chromedp.Navigate(base+"/"),
			field("signup", "workspace_name", name), field("signup", "workspace", slug),
			field("signup", "email", email), field("signup", "password", password))
		if screenshot {
			shot(ctx, "1-sign-up")
		}
		do(ctx, "sign up", chromedp.Click(chromedp.CSS(`#signup button`)), chromedp.WaitVisible(chromedp.CSS(`#new-note`)))
	}
	live := `document.body.dataset.live === "1"`

	signUp(alice, "Acme Research", "acme", "alice@example.com", true)
	signUp(bob, "Globex", "globex", "bob@example.com", false)
	// Bob logs out, and logs in again through the log-in form.
	do(bob, "log out", chromedp.Click(chromedp.CSS(`#logout`)), chromedp.WaitVisible(chromedp.CSS(`#login`)))
	do(bob, "log in", field("login", "workspace", "globex"), field("login", "email", "bob@example.com"),
		field("login", "password", password),
		chromedp.Click(chromedp.CSS(`#login button`)), chromedp.WaitVisible(chromedp.CSS(`#new-note`)))

	// Alice invites Carol; Carol joins through the link.
	do(alice, "invite", chromedp.Navigate(base+"/w/acme/members"),
		field("invite", "email", "carol@example.com"),
		chromedp.Click(chromedp.CSS(`#invite button`)), chromedp.WaitVisible(chromedp.CSS(`#invite-link`)))
	link, err := chromedp.Run(alice, chromedp.Evaluate[string](`document.getElementById("invite-link").value`))
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(link, "/w/acme/join?token="), link)
	do(carol, "join", chromedp.Navigate(base+link), field("join", "password", password),
		chromedp.Click(chromedp.CSS(`#join button`)), chromedp.WaitVisible(chromedp.CSS(`#new-note`)))
	until(carol, "carol live", live)
	until(bob, "bob live", live)

	// Alice writes a note mentioning Carol: it appears in Carol's list,
	// with a notification, without a reload.
	do(alice, "write note", chromedp.Navigate(base+"/w/acme/"),
		field("new-note", "title", "Quarterly planning meeting"),
		field("new-note", "body", "Agenda for @carol: budget review, hiring, the roadmap."),
		chromedp.Click(chromedp.CSS(`#new-note button`)), chromedp.WaitVisible(chromedp.CSS(`#upload`)))
	until(carol, "note appears live for carol",
		`[...document.querySelectorAll("#notes .title")].some(e => e.textContent === "Quarterly planning meeting")`)
	until(carol, "mention toast", `[...document.querySelectorAll("#toasts .toast")].some(e => e.textContent.includes("@alice mentioned you"))`)
	shot(carol, "2-teammate-live-note")

	// Bob, in globex, gets his own workspace's notes live — and never acme's.
	bobTab, cancelTab := chromedp.NewContext(bob) // a second tab, same profile
	defer cancelTab()
	do(bobTab, "bob writes", chromedp.Navigate(base+"/w/globex/"), field("new-note", "title", "Globex roadmap"),
		chromedp.Click(chromedp.CSS(`#new-note button`)), chromedp.WaitVisible(chromedp.CSS(`#upload`)))
	until(bob, "globex note live for bob",
		`[...document.querySelectorAll("#notes .title")].some(e => e.textContent === "Globex roadmap")`)
	notes, err := chromedp.Run(bob, chromedp.Evaluate[string](`document.getElementById("notes").textContent`))
	require.NoError(t, err)
	require.NotContains(t, notes, "Quarterly", "acme's note reached globex")

	// Carol opens the note; Alice uploads an image to it; the thumbnail
	// appears in Carol's page when the preview job has finished.
	do(carol, "carol opens note", chromedp.Click(chromedp.CSS(`#notes .note .title`)), chromedp.WaitVisible(chromedp.CSS(`#upload`)))
	until(carol, "carol live on note page", live)
	do(alice, "upload", chromedp.SetUploadFiles(chromedp.CSS(`#upload input[type=file]`), []string{img}),
		chromedp.Click(chromedp.CSS(`#upload button`)), chromedp.WaitVisible(chromedp.CSS(`#attachments .attachment`)))
	until(carol, "thumbnail appears live",
		`(() => { const i = document.querySelector("#attachments img.thumb"); return i && i.complete && i.naturalWidth === 240; })()`)
	shot(carol, "3-thumbnail")

	// A misspelled search finds the note (typo tolerance), highlighted.
	search := func(ctx context.Context, q string, wantHits bool) string {
		var html string
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			_, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(document.getElementById("q").value = "", true)`))
			require.NoError(t, err)
			do(ctx, "search "+q, chromedp.SendKeys(chromedp.CSS(`#q`), q))
			until(ctx, "results for "+q, fmt.Sprintf(`document.getElementById("results").dataset.q === %q`, q))
			html, err = chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("results").innerHTML`))
			require.NoError(t, err)
			if !wantHits || !strings.Contains(html, "0 result(s)") {
				break
			}
			time.Sleep(200 * time.Millisecond) // the word list is refreshed by a job after each write
		}
		return html
	}
	res := search(alice, "quartely planing", true)
	require.Contains(t, res, "<mark>Quarterly</mark>")
	shot(alice, "4-typo-search")
	res = search(bob, "quartely planing", false)
	require.Contains(t, res, "0 result(s)")
	require.NotContains(t, res, "Quarterly")
}
