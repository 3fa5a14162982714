package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"maps"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/auth"
	"github.com/justpg/justpg/internal/ident"
	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/tenancy"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const password = "correct horse battery staple"

// testApp is the app on a fresh database, served by httptest.
type testApp struct {
	*App
	srv *httptest.Server
	db  *pgtest.DB
}

func newTestApp(t *testing.T) *testApp {
	t.Helper()
	db := pgtest.NewDB(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	prefix := "app_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Cheap password hashing: these tests are not about argon2's cost.
	hasher, err := auth.NewArgon2id(auth.Argon2Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	require.NoError(t, err)
	a, err := Open(ctx, Options{
		Hasher:   hasher,
		OwnerURL: db.URL, RolePrefix: prefix, BackupDir: t.TempDir(), IPLimit: -1, Workers: 2,
		MaxUpload: 4 << 20,
	})
	require.NoError(t, err)
	// Clean-ups run last-in first-out: close the app, then drop its roles,
	// then (pgtest's) drop the database.
	t.Cleanup(func() {
		for _, r := range []string{prefix + "_app", prefix + "_system"} {
			q, _ := ident.Quote(r)
			_, _ = db.Pool.Exec(context.Background(), `DROP OWNED BY `+q)
			_, _ = db.Pool.Exec(context.Background(), `DROP ROLE IF EXISTS `+q)
		}
	})
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		a.Close(ctx)
	})
	return &testApp{App: a, srv: srv, db: db}
}

// browser is one user's HTTP client with its own cookie jar.
type browser struct {
	t   *testing.T
	app *testApp
	c   *http.Client
}

func (ta *testApp) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, app: ta, c: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

// do sends a request and returns the status and body (redirects followed).
func (b *browser) do(method, path string, body io.Reader, ctype string, hdr ...string) (int, string) {
	b.t.Helper()
	req, err := http.NewRequest(method, b.app.srv.URL+path, body)
	require.NoError(b.t, err)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.c.Do(req)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	return resp.StatusCode, string(out)
}

func (b *browser) get(path string) (int, string) { return b.do("GET", path, nil, "") }

func (b *browser) post(path string, form url.Values) (int, string) {
	return b.do("POST", path, strings.NewReader(form.Encode()), "application/x-www-form-urlencoded")
}

// finalPath follows redirects and returns where a GET ends.
func (b *browser) finalPath(path string) string {
	b.t.Helper()
	resp, err := b.c.Get(b.app.srv.URL + path)
	require.NoError(b.t, err)
	resp.Body.Close()
	return resp.Request.URL.Path
}

func (b *browser) signUp(slug, email string) {
	b.t.Helper()
	code, body := b.post("/signup", url.Values{"workspace_name": {strings.ToUpper(slug)}, "workspace": {slug}, "email": {email}, "password": {password}})
	require.Equal(b.t, 200, code, body)
	require.Contains(b.t, body, `id="new-note"`)
}

func (b *browser) login(slug, email string) {
	b.t.Helper()
	code, body := b.post("/login", url.Values{"workspace": {slug}, "email": {email}, "password": {password}})
	require.Equal(b.t, 200, code, body)
	require.Contains(b.t, body, `id="new-note"`)
}

var noteIDRE = regexp.MustCompile(`data-note="(\d+)"`)

// note creates a note and returns its id.
func (b *browser) note(slug, title, body string) string {
	b.t.Helper()
	code, page := b.post("/w/"+slug+"/notes", url.Values{"title": {title}, "body": {body}})
	require.Equal(b.t, 200, code, page)
	m := noteIDRE.FindStringSubmatch(page)
	require.NotNil(b.t, m, page)
	return m[1]
}

// upload attaches files (name → content) to a note.
func (b *browser) upload(slug, noteID string, fileList ...[2]string) (int, string) {
	b.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range fileList {
		w, err := mw.CreateFormFile("file", f[0])
		require.NoError(b.t, err)
		_, _ = w.Write([]byte(f[1]))
	}
	require.NoError(b.t, mw.Close())
	return b.do("POST", "/w/"+slug+"/notes/"+noteID+"/files", &buf, mw.FormDataContentType())
}

// live opens the workspace's WebSocket with the browser's cookies.
func (b *browser) live(ctx context.Context, slug string) (*websocket.Conn, *http.Response, error) {
	u, _ := url.Parse(b.app.srv.URL + "/w/" + slug + "/live")
	var cookies []string
	for _, c := range b.c.Jar.Cookies(u) {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	c, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(u.String(), "http"), &websocket.DialOptions{
		HTTPHeader: http.Header{"Cookie": {strings.Join(cookies, "; ")}},
	})
	if err != nil {
		return c, resp, err
	}
	// Wait until the bridge listens on every channel of the connection:
	// re-joining the workspace channel is answered once it does.
	ch := tenantChannel(workspaceID(b.t, b.app, slug))
	msg, _ := json.Marshal(map[string]string{"type": "join", "channel": ch})
	require.NoError(b.t, c.Write(ctx, websocket.MessageText, msg))
	for {
		_, data, err := c.Read(ctx)
		require.NoError(b.t, err)
		var m liveMsg
		require.NoError(b.t, json.Unmarshal(data, &m))
		if m.Type == "joined" && m.Channel == ch {
			return c, resp, nil
		}
	}
}

// liveMsg is what the bridge sends.
type liveMsg struct {
	Type    string    `json:"type"`
	Channel string    `json:"channel"`
	Data    liveEvent `json:"data"`
}

// nextOf reads messages until one has data type typ (job progress and
// other events of the workspace are skipped).
func nextOf(t *testing.T, ctx context.Context, c *websocket.Conn, typ string) liveMsg {
	t.Helper()
	return nextEach(t, ctx, c, typ)[typ]
}

// nextEach reads messages until it has seen one of each data type in types,
// in any order: events of different channels (the workspace's and the
// user's) are relayed independently, so their order is not defined.
func nextEach(t *testing.T, ctx context.Context, c *websocket.Conn, types ...string) map[string]liveMsg {
	t.Helper()
	got := map[string]liveMsg{}
	for len(got) < len(types) {
		_, data, err := c.Read(ctx)
		require.NoError(t, err, "still waiting for %v, got %v", types, slices.Collect(maps.Keys(got)))
		var m liveMsg
		require.NoError(t, json.Unmarshal(data, &m))
		if _, seen := got[m.Data.Type]; m.Type == "message" && slices.Contains(types, m.Data.Type) && !seen {
			got[m.Data.Type] = m
		}
	}
	return got
}

func pngBytes(t *testing.T, w, h int) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 200, 255})
		}
	}
	var buf bytes.Buffer
	require.NoError(t, png.Encode(&buf, img))
	return buf.Bytes()
}

func TestSignUpLogInLogOut(t *testing.T) {
	t.Parallel()
	ta := newTestApp(t)
	b := ta.browser(t)
	b.signUp("acme", "ada@example.com")
	_, page := b.get("/w/acme/")
	assert.Contains(t, page, "ACME")
	assert.Contains(t, page, "@ada")

	code, _ := b.post("/w/acme/logout", nil)
	assert.Equal(t, 200, code)
	assert.Equal(t, "/w/acme/login", b.finalPath("/w/acme/"), "logged out: the workspace asks to log in")

	code, body := b.post("/login", url.Values{"workspace": {"acme"}, "email": {"ada@example.com"}, "password": {"wrong password here"}})
	assert.Equal(t, http.StatusUnauthorized, code)
	assert.Contains(t, body, "Wrong workspace, e-mail or password")
	code, _ = b.post("/login", url.Values{"workspace": {"nope"}, "email": {"ada@example.com"}, "password": {password}})
	assert.Equal(t, http.StatusUnauthorized, code, "an unknown workspace answers like a wrong password")
	b.login("acme", "ada@example.com")

	// Bad sign-ups change nothing.
	for _, f := range []url.Values{
		{"workspace_name": {"X"}, "workspace": {"acme"}, "email": {"x@example.com"}, "password": {password}},                    // taken
		{"workspace_name": {"X"}, "workspace": {"Bad Slug!"}, "email": {"x@example.com"}, "password": {password}},               // slug
		{"workspace_name": {"X"}, "workspace": {"other"}, "email": {"x@example.com"}, "password": {"password"}},                 // common
		{"workspace_name": {"X"}, "workspace": {"other"}, "email": {"not an address"}, "password": {password}},                  // e-mail
		{"workspace_name": {""}, "workspace": {"other"}, "email": {"x@example.com"}, "password": {password}},                    // name
		{"workspace_name": {"X"}, "workspace": {"x'; DROP TABLE notes;--"}, "email": {"x@example.com"}, "password": {password}}, // injection
	} {
		code, body := ta.browser(t).post("/signup", f)
		assert.True(t, code == http.StatusBadRequest || code == http.StatusConflict, "%v: %d %s", f, code, body)
	}
	var tenants int
	require.NoError(t, ta.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM justpg.tenancy_tenants`).Scan(&tenants))
	assert.Equal(t, 1, tenants)

	// A cross-site form post is refused (auth.Protect).
	code, _ = b.do("POST", "/w/acme/notes", strings.NewReader("title=x"), "application/x-www-form-urlencoded", "Sec-Fetch-Site", "cross-site")
	assert.Equal(t, http.StatusForbidden, code)
}

func TestEveryTenantTableIsProtected(t *testing.T) {
	t.Parallel()
	ta := newTestApp(t)
	ctx := context.Background()
	left, err := tenancy.Unprotected(ctx, ta.db.Pool)
	require.NoError(t, err)
	assert.Empty(t, left, "every table with a tenant_id column has the policy")
	tables, err := tenancy.ProtectedTables(ctx, ta.db.Pool)
	require.NoError(t, err)
	names := map[string]bool{}
	for _, pt := range tables {
		names[pt.Table.Name] = true
	}
	for _, want := range []string{"notes", "attachments", "members", "digests", "auth_users", "auth_sessions", "jobs", "files", "files_chunks", "realtime_events"} {
		assert.True(t, names[want], "%s is protected", want)
	}
	require.NoError(t, tenancy.Check(ctx, ta.app), "the request pool cannot bypass row-level security")
	require.Error(t, tenancy.Check(ctx, ta.sys), "the system pool bypasses it, and is used only in the background")
}

// TestWorkspacesAreIsolated: a user of workspace B can neither read,
// download, search nor receive anything of workspace A, through any route.
func TestWorkspacesAreIsolated(t *testing.T) {
	t.Parallel()
	ta := newTestApp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice, bob := ta.browser(t), ta.browser(t)
	alice.signUp("acme", "alice@example.com")
	bob.signUp("globex", "bob@example.com")

	bobLive, _, err := bob.live(ctx, "globex")
	require.NoError(t, err)
	defer bobLive.CloseNow()

	secret := alice.note("acme", "Secret merger plans", "codename zanzibar")
	code, _ := alice.upload("acme", secret, [2]string{"zanzibar.png", string(pngBytes(t, 64, 48))})
	require.Equal(t, 200, code)
	var fileID, attID string
	require.Eventually(t, func() bool {
		return ta.db.Pool.QueryRow(ctx, `SELECT file_id::text, id::text FROM public.attachments WHERE status = 'ready'`).Scan(&fileID, &attID) == nil
	}, 20*time.Second, 50*time.Millisecond)
	var thumbID string
	require.NoError(t, ta.db.Pool.QueryRow(ctx, `SELECT thumb_file_id::text FROM public.attachments`).Scan(&thumbID))

	// Alice sees her things.
	code, _ = alice.get("/w/acme/files/" + fileID)
	assert.Equal(t, 200, code)
	require.Eventually(t, func() bool {
		_, res := alice.get("/w/acme/search?q=zanzibar")
		return strings.Contains(res, "<mark>zanzibar</mark>") && strings.Contains(res, "<mark>zanzibar</mark> png")
	}, 20*time.Second, 100*time.Millisecond)

	// Bob's cookie means nothing in acme: its sessions are acme's rows.
	assert.Equal(t, "/w/acme/login", bob.finalPath("/w/acme/"))
	assert.Equal(t, "/w/acme/login", bob.finalPath("/w/acme/notes/"+secret))
	code, _ = bob.get("/w/acme/search?q=zanzibar")
	assert.Equal(t, http.StatusUnauthorized, code)
	_, resp, err := bob.live(ctx, "acme")
	require.Error(t, err)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	// In his own workspace, acme's ids are not found.
	for _, p := range []string{
		"/w/globex/notes/" + secret, "/w/globex/notes/" + secret + "/card", "/w/globex/attachments/" + attID + "/card",
		"/w/globex/files/" + fileID, "/w/globex/files/" + thumbID,
	} {
		code, body := bob.get(p)
		assert.Equal(t, http.StatusNotFound, code, "%s: %s", p, body)
		assert.NotContains(t, body, "zanzibar")
	}
	code, _ = bob.post("/w/globex/notes/"+secret, url.Values{"title": {"hijacked"}})
	assert.Equal(t, http.StatusNotFound, code)
	code, _ = bob.upload("globex", secret, [2]string{"x.txt", "x"})
	assert.Equal(t, http.StatusNotFound, code)
	_, res := bob.get("/w/globex/search?q=zanzibar")
	assert.Contains(t, res, "0 result(s)")
	_, res = bob.get("/w/globex/search?q=zanzibr+merger")
	assert.Contains(t, res, "0 result(s)", "no typo correction from another workspace's words either")
	_, page := bob.get("/w/globex/")
	assert.NotContains(t, page, "Secret merger")
	_, page = bob.get("/w/globex/jobs")
	assert.NotContains(t, page, "attachment_preview", "acme's jobs are not listed")
	assert.NotContains(t, page, "search_refresh_words")

	// Live: Bob's first event is his own workspace's note, not any of
	// acme's (published earlier, delivered in commit order).
	alice.note("acme", "Another acme note", "for acme only")
	bob.note("globex", "Globex roadmap", "ours")
	m := nextOf(t, ctx, bobLive, "note")
	assert.Equal(t, "Globex roadmap", m.Data.Title)
	assert.Equal(t, tenantChannel(workspaceID(t, ta, "globex")), m.Channel)
}

func workspaceID(t *testing.T, ta *testApp, slug string) string {
	var id string
	require.NoError(t, ta.db.Pool.QueryRow(context.Background(), `SELECT id::text FROM justpg.tenancy_tenants WHERE slug = $1`, slug).Scan(&id))
	return id
}

var inviteRE = regexp.MustCompile(`id="invite-link" readonly value="([^"]+)"`)

func TestInviteLiveNotesAndMentions(t *testing.T) {
	t.Parallel()
	ta := newTestApp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice, carol := ta.browser(t), ta.browser(t)
	alice.signUp("acme", "alice@example.com")

	code, page := alice.post("/w/acme/invite", url.Values{"email": {"carol@example.com"}})
	require.Equal(t, 200, code, page)
	m := inviteRE.FindStringSubmatch(page)
	require.NotNil(t, m, page)
	link := strings.ReplaceAll(m[1], "&amp;", "&")
	token := strings.TrimPrefix(link, "/w/acme/join?token=")
	tok, err := url.QueryUnescape(token)
	require.NoError(t, err)

	code, _ = carol.get(link)
	require.Equal(t, 200, code)
	code, page = carol.post("/w/acme/join", url.Values{"token": {tok}, "password": {password}})
	require.Equal(t, 200, code, page)
	assert.Contains(t, page, "@carol")
	code, _ = ta.browser(t).post("/w/acme/join", url.Values{"token": {tok}, "password": {password}})
	assert.Equal(t, http.StatusBadRequest, code, "an invitation works once")
	code, _ = alice.post("/w/acme/invite", url.Values{"email": {"carol@example.com"}})
	assert.Equal(t, http.StatusConflict, code)
	_, page = alice.get("/w/acme/members")
	assert.Contains(t, page, "carol@example.com")

	carolLive, _, err := carol.live(ctx, "acme")
	require.NoError(t, err)
	defer carolLive.CloseNow()
	id := alice.note("acme", "Launch checklist", "@carol please review")
	evs := nextEach(t, ctx, carolLive, "note", "mention")
	ev := evs["note"]
	assert.Equal(t, "Launch checklist", ev.Data.Title)
	assert.Equal(t, id, fmt.Sprint(ev.Data.ID))
	ev = evs["mention"]
	assert.Equal(t, "alice", ev.Data.By)
	assert.True(t, strings.HasPrefix(ev.Channel, "u:"), ev.Channel)

	// The card the browser fetches for the event.
	code, card := carol.get("/w/acme/notes/" + id + "/card")
	assert.Equal(t, 200, code)
	assert.Contains(t, card, "Launch checklist")

	// Carol is a member, not the owner: no admin page.
	code, _ = carol.get("/w/acme/admin")
	assert.Equal(t, http.StatusForbidden, code)
	code, _ = carol.post("/w/acme/admin/drill", nil)
	assert.Equal(t, http.StatusForbidden, code)
}

func TestSessionsLogOutOthers(t *testing.T) {
	t.Parallel()
	ta := newTestApp(t)
	laptop, phone := ta.browser(t), ta.browser(t)
	laptop.signUp("acme", "ada@example.com")
	phone.login("acme", "ada@example.com")
	_, page := laptop.get("/w/acme/sessions")
	assert.Equal(t, 2, strings.Count(page, "<tr><td>"), page)
	code, page := laptop.post("/w/acme/sessions/revoke-others", nil)
	require.Equal(t, 200, code)
	assert.Contains(t, page, "Logged out 1 other session(s)")
	assert.Equal(t, "/w/acme/login", phone.finalPath("/w/acme/"))
	assert.Equal(t, "/w/acme/", laptop.finalPath("/w/acme/"))
}

func TestUploadPreviewsAndRange(t *testing.T) {
	t.Parallel()
	ta := newTestApp(t)
	ctx := context.Background()
	b := ta.browser(t)
	b.signUp("acme", "ada@example.com")
	id := b.note("acme", "Photos", "")
	img := pngBytes(t, 600, 300)
	code, body := b.upload("acme", id, [2]string{"wide.png", string(img)}, [2]string{"notes.txt", "hello from a text file"},
		[2]string{"data.bin", "\x00\x01\x02"}, [2]string{"broken.png", "\x89PNG\r\n\x1a\nnot really"})
	require.Equal(t, 200, code, body)
	require.Eventually(t, func() bool {
		var pending int
		require.NoError(t, ta.db.Pool.QueryRow(ctx, `SELECT count(*) FROM public.attachments WHERE status = 'pending'`).Scan(&pending))
		return pending == 0
	}, 20*time.Second, 50*time.Millisecond)
	rows, err := ta.db.Pool.Query(ctx, `SELECT name, status, coalesce(thumb_file_id::text, ''), coalesce(preview, '') FROM public.attachments`)
	require.NoError(t, err)
	got := map[string][3]string{}
	for rows.Next() {
		var n, s, th, p string
		require.NoError(t, rows.Scan(&n, &s, &th, &p))
		got[n] = [3]string{s, th, p}
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, "ready", got["wide.png"][0])
	assert.Equal(t, [3]string{"ready", "", "hello from a text file"}, got["notes.txt"])
	assert.Equal(t, "none", got["data.bin"][0])
	assert.Equal(t, "failed", got["broken.png"][0])

	// The thumbnail is a 240×120 PNG, served to the workspace.
	code, thumb := b.get("/w/acme/files/" + got["wide.png"][1])
	require.Equal(t, 200, code)
	cfg, err := png.DecodeConfig(strings.NewReader(thumb))
	require.NoError(t, err)
	assert.Equal(t, [2]int{240, 120}, [2]int{cfg.Width, cfg.Height})

	// The note page shows it; Range requests are served.
	_, page := b.get("/w/acme/notes/" + id)
	assert.Contains(t, page, `src="/w/acme/files/`+got["wide.png"][1]+`"`)
	var fileID string
	require.NoError(t, ta.db.Pool.QueryRow(ctx, `SELECT file_id::text FROM public.attachments WHERE name = 'wide.png'`).Scan(&fileID))
	req, _ := http.NewRequest("GET", ta.srv.URL+"/w/acme/files/"+fileID, nil)
	req.Header.Set("Range", "bytes=1-3")
	resp, err := b.c.Do(req)
	require.NoError(t, err)
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusPartialContent, resp.StatusCode)
	assert.Equal(t, img[1:4], part)

	// The jobs page lists the workspace's preview jobs, completed.
	_, page = b.get("/w/acme/jobs")
	assert.Equal(t, 4, strings.Count(page, "attachment_preview"), page)

	// No files, or a missing note: refused, nothing stored.
	code, _ = b.upload("acme", id)
	assert.Equal(t, http.StatusBadRequest, code)
	code, _ = b.upload("acme", "999999", [2]string{"a.txt", "a"})
	assert.Equal(t, http.StatusNotFound, code)
	code, _ = b.upload("acme", id, [2]string{"evil\u202etxt.exe", "a"})
	assert.Equal(t, http.StatusBadRequest, code)
	var n int
	require.NoError(t, ta.db.Pool.QueryRow(ctx, `SELECT count(*) FROM public.attachments`).Scan(&n))
	assert.Equal(t, 4, n)
}

func TestSearchTypoTolerant(t *testing.T) {
	t.Parallel()
	ta := newTestApp(t)
	b := ta.browser(t)
	b.signUp("acme", "ada@example.com")
	b.note("acme", "Quarterly planning meeting", "Budget review with the finance team")
	b.note("acme", "Lunch menu", "Soup and bread")
	// The word lists are refreshed by a job after each write.
	require.Eventually(t, func() bool {
		_, res := b.get("/w/acme/search?q=quartely+planing")
		return strings.Contains(res, "<mark>Quarterly</mark>")
	}, 20*time.Second, 100*time.Millisecond)
	_, res := b.get("/w/acme/search?q=budg") // being typed: a prefix
	assert.Contains(t, res, "<mark>Budget</mark>")
	assert.NotContains(t, res, "Lunch")
	_, res = b.get("/w/acme/search?q=%3Cscript%3Ealert(1)%3C/script%3E")
	assert.NotContains(t, res, "<script>")
}

func TestDigestAndDrill(t *testing.T) {
	t.Parallel()
	ta := newTestApp(t)
	ctx := context.Background()
	b := ta.browser(t)
	b.signUp("acme", "ada@example.com")
	b.note("acme", "Kick-off", "first note")
	other := ta.browser(t)
	other.signUp("globex", "gus@example.com")

	// The daily job, as the scheduler inserts it: one digest per workspace.
	today := time.Now().UTC().Format(time.DateOnly)
	_, err := ta.jobs.Insert(ctx, ta.sys, digestAllJob{Day: today}, nil)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, page := b.get("/w/acme/")
		return strings.Contains(page, `id="digest"`)
	}, 20*time.Second, 100*time.Millisecond)
	_, page := b.get("/w/acme/")
	assert.Contains(t, page, "1 note(s) written or edited, 0 file(s) attached: Kick-off")
	require.Eventually(t, func() bool {
		_, page := other.get("/w/globex/")
		return strings.Contains(page, `id="digest"`)
	}, 20*time.Second, 100*time.Millisecond)
	_, page = other.get("/w/globex/")
	assert.Contains(t, page, "0 note(s)")
	assert.NotContains(t, page, "Kick-off")

	// Backups hold every workspace: only the first workspace's owners (the
	// operator's) see them.
	code, _ := other.get("/w/globex/admin")
	assert.Equal(t, http.StatusForbidden, code)
	code, _ = other.post("/w/globex/admin/drill", nil)
	assert.Equal(t, http.StatusForbidden, code)
	_, page = other.get("/w/globex/")
	assert.NotContains(t, page, "/admin")

	// Backups: none, then a drill on demand.
	_, page = b.get("/w/acme/admin")
	assert.Contains(t, page, "No backup yet")
	code, _ = b.post("/w/acme/admin/drill", nil)
	require.Equal(t, 200, code)
	require.Eventually(t, func() bool {
		_, page = b.get("/w/acme/admin")
		return strings.Contains(page, `id="drill-result"`) && !strings.Contains(page, "Not drilled yet")
	}, 40*time.Second, 200*time.Millisecond)
	assert.Contains(t, page, `class="ok">passed</strong>`, page)
	assert.Contains(t, page, `id="rto"`)
}
