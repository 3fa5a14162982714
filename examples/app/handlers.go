package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/justpg/justpg/auth"
	"github.com/justpg/justpg/backup"
	"github.com/justpg/justpg/files"
	"github.com/justpg/justpg/jobs"
	"github.com/justpg/justpg/realtime"
	"github.com/justpg/justpg/search"
	"github.com/justpg/justpg/tenancy"
)

// member is the signed-in user of a workspace request.
type member struct {
	ID, Email, Handle, Role string
	SessionID               string
	// Admin: an owner of the operator's workspace (Options.AdminWorkspace),
	// who sees the instance's backups on the admin page.
	Admin bool
}

type memberKey struct{}

func memberFrom(ctx context.Context) *member {
	m, _ := ctx.Value(memberKey{}).(*member)
	return m
}

func tenantChannel(id string) string { return "t:" + id }
func userChannel(id string) string   { return "u:" + id }

// liveEvent is what browsers of a workspace receive.
type liveEvent struct {
	Type   string `json:"type"` // note, attachment, mention, digest
	ID     int64  `json:"id,omitempty"`
	NoteID int64  `json:"note_id,omitempty"`
	Title  string `json:"title,omitempty"`
	By     string `json:"by,omitempty"`
}

// httpError is an error with the status and message to show.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errStatus(status int, msg string) error { return &httpError{status, msg} }

// handle adapts a handler that returns an error.
func (a *App) handle(fn func(w http.ResponseWriter, r *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			a.fail(w, r, err)
		}
	}
}

func (a *App) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := http.StatusInternalServerError, "Something went wrong."
	var he *httpError
	var pe *auth.PasswordError
	switch {
	case errors.As(err, &he):
		status, msg = he.status, he.msg
	case errors.As(err, &pe):
		status, msg = http.StatusBadRequest, "Password refused: "+pe.Reason+"."
	case errors.Is(err, auth.ErrInvalidCredentials):
		status, msg = http.StatusUnauthorized, "Wrong workspace, e-mail or password."
	case errors.Is(err, auth.ErrRateLimited):
		status, msg = http.StatusTooManyRequests, "Too many attempts from your address; wait a minute."
	case errors.Is(err, auth.ErrEmailTaken):
		status, msg = http.StatusConflict, "That e-mail address already has an account in this workspace."
	case errors.Is(err, auth.ErrInvalidEmail):
		status, msg = http.StatusBadRequest, "That is not an e-mail address."
	case errors.Is(err, auth.ErrInvalidToken), errors.Is(err, auth.ErrTokenUsed), errors.Is(err, auth.ErrTokenExpired):
		status, msg = http.StatusBadRequest, "This invitation link is not valid any more."
	case errors.Is(err, tenancy.ErrSlugTaken):
		status, msg = http.StatusConflict, "That workspace address is taken."
	case errors.Is(err, tenancy.ErrInvalid):
		status, msg = http.StatusBadRequest, "Workspace addresses are 1-48 lower-case letters, digits and hyphens."
	case errors.Is(err, tenancy.ErrNotFound):
		status, msg = http.StatusNotFound, "No such workspace."
	case errors.Is(err, files.ErrTooLarge):
		status, msg = http.StatusRequestEntityTooLarge, "That file is too large."
	case errors.Is(err, files.ErrInvalidName):
		status, msg = http.StatusBadRequest, "That file name is not allowed."
	case errors.Is(err, pgx.ErrNoRows):
		status, msg = http.StatusNotFound, "Not found."
	case errors.Is(err, context.Canceled):
		return // the client went away
	default:
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if r.Header.Get("Accept") == "application/json" || strings.HasSuffix(r.URL.Path, "/search") {
		http.Error(w, msg, status)
		return
	}
	w.WriteHeader(status)
	a.render(w, r, "error", map[string]any{"Title": http.StatusText(status), "Message": msg, "Status": status})
}

func (a *App) routes() (http.Handler, error) {
	if err := parseTemplates(); err != nil {
		return nil, err
	}
	ws := http.NewServeMux()
	ws.Handle("GET /w/{slug}/{$}", a.signedIn(a.handleWorkspace))
	ws.Handle("POST /w/{slug}/notes", a.signedIn(a.handleCreateNote))
	ws.Handle("GET /w/{slug}/notes/{id}", a.signedIn(a.handleNote))
	ws.Handle("POST /w/{slug}/notes/{id}", a.signedIn(a.handleEditNote))
	ws.Handle("GET /w/{slug}/notes/{id}/card", a.signedIn(a.handleNoteCard))
	ws.Handle("POST /w/{slug}/notes/{id}/files", a.signedIn(a.handleUpload))
	ws.Handle("GET /w/{slug}/attachments/{id}/card", a.signedIn(a.handleAttachmentCard))
	ws.Handle("GET /w/{slug}/files/{id}", a.signedIn(a.handleDownload()))
	ws.Handle("GET /w/{slug}/search", a.signedIn(a.handleSearch))
	ws.Handle("GET /w/{slug}/live", a.signedIn(func(w http.ResponseWriter, r *http.Request) error { a.bridge.ServeHTTP(w, r); return nil }))
	ws.Handle("GET /w/{slug}/members", a.signedIn(a.handleMembers))
	ws.Handle("POST /w/{slug}/invite", a.signedIn(a.handleInvite))
	ws.Handle("GET /w/{slug}/sessions", a.signedIn(a.handleSessions))
	ws.Handle("POST /w/{slug}/sessions/revoke-others", a.signedIn(a.handleRevokeOthers))
	ws.Handle("GET /w/{slug}/jobs", a.signedIn(a.handleJobs))
	ws.Handle("GET /w/{slug}/admin", a.signedIn(a.handleAdmin))
	ws.Handle("POST /w/{slug}/admin/drill", a.signedIn(a.handleDrill))
	ws.Handle("POST /w/{slug}/logout", a.signedIn(a.handleLogout))
	ws.Handle("GET /w/{slug}/join", a.handle(a.handleJoinForm))
	ws.Handle("POST /w/{slug}/join", a.handle(a.handleJoin))
	ws.Handle("GET /w/{slug}/login", a.handle(a.handleLoginForm))

	onErr := func(w http.ResponseWriter, r *http.Request, err error) { a.fail(w, r, err) }
	mux := http.NewServeMux()
	mux.Handle("/w/", a.tm.Middleware(a.app, tenancy.MiddlewareConfig{Resolve: tenancy.FromPath("/w/"), OnError: onErr})(ws))
	mux.Handle("GET /{$}", a.handle(a.handleHome))
	mux.Handle("POST /signup", a.handle(a.handleSignUp))
	mux.Handle("POST /login", a.handle(a.handleLogin))
	mux.Handle("GET /static/", http.FileServerFS(staticFS))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := a.app.Ping(r.Context()); err != nil {
			http.Error(w, "database unavailable", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return auth.Protect(securityHeaders(mux)), nil
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		if !strings.Contains(r.URL.Path, "/files/") { // downloads set their own (sandboxed) policy
			h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'")
		}
		next.ServeHTTP(w, r)
	})
}

// tx runs fn in a transaction scoped to the request's workspace, on the app
// role: row-level security decides what it sees.
func (a *App) tx(r *http.Request, fn func(tx pgx.Tx) error) error {
	return a.tm.InTenant(r.Context(), a.app, fn)
}

func workspace(r *http.Request) tenancy.Tenant {
	t, _ := tenancy.FromContext(r.Context())
	return t
}

// signedIn resolves the session cookie inside the workspace's transaction
// (sessions are rows of the workspace, so a cookie of another workspace is
// unknown here) and refuses anonymous requests.
func (a *App) signedIn(fn func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return a.handle(func(w http.ResponseWriter, r *http.Request) error {
		var m *member
		if token := a.auth.SessionToken(r); token != "" {
			err := a.tx(r, func(tx pgx.Tx) error {
				p, err := a.auth.ValidateSession(r.Context(), tx, token)
				if err != nil {
					return err
				}
				m = &member{ID: p.User.ID, Email: p.User.Email, SessionID: p.Session.ID}
				return tx.QueryRow(r.Context(), `SELECT handle, role, role = 'owner' AND $2 = coalesce(nullif($3, ''),
						(SELECT slug FROM justpg.tenancy_tenants ORDER BY created_at, id LIMIT 1))
					FROM public.members WHERE user_id = $1`, m.ID, workspace(r).Slug, a.opt.AdminWorkspace).
					Scan(&m.Handle, &m.Role, &m.Admin)
			})
			if errors.Is(err, auth.ErrInvalidToken) || errors.Is(err, auth.ErrTokenExpired) || errors.Is(err, pgx.ErrNoRows) {
				m = nil
			} else if err != nil {
				return err
			}
		}
		if m == nil {
			if r.Method == http.MethodGet && !strings.HasSuffix(r.URL.Path, "/live") && !strings.HasSuffix(r.URL.Path, "/search") {
				http.Redirect(w, r, "/w/"+workspace(r).Slug+"/login", http.StatusSeeOther)
				return nil
			}
			return errStatus(http.StatusUnauthorized, "Please log in.")
		}
		return fn(w, r.WithContext(context.WithValue(r.Context(), memberKey{}, m)))
	})
}

// authorizeLive lets a browser receive its workspace's channel and its own
// user channel, nothing else (no joins).
func (a *App) authorizeLive(r *http.Request) (realtime.Identity, error) {
	m := memberFrom(r.Context())
	if m == nil {
		return realtime.Identity{}, errors.New("not signed in")
	}
	channels := []string{tenantChannel(workspace(r).ID.String()), userChannel(m.ID)}
	return realtime.Identity{
		ID: m.ID, Channels: channels,
		// Joining one of its own channels again changes nothing, and the
		// "joined" answer comes after the bridge has subscribed to all of
		// them: the page's signal that live updates are flowing.
		CanJoin: func(ch string) bool { return slices.Contains(channels, ch) },
	}, nil
}

// ---- sign-up, log-in, invitations ----

func (a *App) handleHome(w http.ResponseWriter, r *http.Request) error {
	a.render(w, r, "home", map[string]any{"Title": "justpg notes", "Workspace": r.URL.Query().Get("workspace")})
	return nil
}

func (a *App) handleLoginForm(w http.ResponseWriter, r *http.Request) error {
	a.render(w, r, "home", map[string]any{"Title": "Log in", "Workspace": workspace(r).Slug})
	return nil
}

// handleSignUp creates a workspace (a tenant) and its first user, its owner.
func (a *App) handleSignUp(w http.ResponseWriter, r *http.Request) error {
	name := strings.TrimSpace(r.FormValue("workspace_name"))
	slug := strings.TrimSpace(strings.ToLower(r.FormValue("workspace")))
	email, password := strings.TrimSpace(r.FormValue("email")), r.FormValue("password")
	if name == "" || len(name) > 100 {
		return errStatus(http.StatusBadRequest, "Give the workspace a name (up to 100 characters).")
	}
	if err := tenancy.ValidateSlug(slug); err != nil {
		return err
	}
	norm, err := auth.NormalizeEmail(email)
	if err != nil {
		return err
	}
	if err := a.auth.CheckPassword(password, norm); err != nil {
		return err
	}
	// Provisioning a tenant is not tenant-scoped work: the system role does it.
	t, err := a.tm.Create(r.Context(), a.sys, tenancy.NewTenant{Slug: slug, Name: name})
	if err != nil {
		return err
	}
	var res auth.LoginResult
	err = a.tm.WithTenant(r.Context(), a.app, t.ID, func(tx pgx.Tx) error {
		u, err := a.auth.SignUp(r.Context(), tx, norm, password, auth.ClientFromRequest(r))
		if err != nil {
			return err
		}
		if err := a.addMember(r.Context(), tx, u.ID, norm, "owner"); err != nil {
			return err
		}
		token, s, err := a.auth.CreateSession(r.Context(), tx, u.ID, auth.ClientFromRequest(r))
		res = auth.LoginResult{User: u, Session: s, Token: token}
		return err
	})
	if err != nil {
		// Nothing was written in the workspace: remove it so the address is free again.
		if _, derr := a.sys.Exec(context.WithoutCancel(r.Context()), `DELETE FROM justpg.tenancy_tenants WHERE id = $1`, t.ID); derr != nil {
			a.log.Error("removing workspace after failed sign-up", "tenant", t.ID, "err", derr)
		}
		return err
	}
	a.auth.SetSessionCookie(w, res.Token, res.Session)
	http.Redirect(w, r, "/w/"+t.Slug+"/", http.StatusSeeOther)
	return nil
}

func (a *App) handleLogin(w http.ResponseWriter, r *http.Request) error {
	slug := strings.TrimSpace(strings.ToLower(r.FormValue("workspace")))
	t, err := a.tm.BySlug(r.Context(), a.app, slug)
	if errors.Is(err, tenancy.ErrNotFound) || errors.Is(err, tenancy.ErrInvalid) || errors.Is(err, tenancy.ErrDeleted) {
		return auth.ErrInvalidCredentials // same answer as a wrong password
	}
	if err != nil {
		return err
	}
	var res auth.LoginResult
	err = a.tm.WithTenant(r.Context(), a.app, t.ID, func(tx pgx.Tx) error {
		res, err = a.auth.Login(r.Context(), tx, auth.Credentials{Email: r.FormValue("email"), Password: r.FormValue("password")}, auth.ClientFromRequest(r))
		return err
	})
	if err != nil {
		return err
	}
	a.auth.SetSessionCookie(w, res.Token, res.Session)
	http.Redirect(w, r, "/w/"+t.Slug+"/", http.StatusSeeOther)
	return nil
}

func (a *App) handleLogout(w http.ResponseWriter, r *http.Request) error {
	err := a.tx(r, func(tx pgx.Tx) error {
		return a.auth.Logout(r.Context(), tx, a.auth.SessionToken(r), auth.ClientFromRequest(r))
	})
	if err != nil && !errors.Is(err, auth.ErrInvalidToken) {
		return err
	}
	a.auth.ClearSessionCookie(w)
	http.Redirect(w, r, "/", http.StatusSeeOther)
	return nil
}

var handleRE = regexp.MustCompile(`[^a-z0-9._-]+`)

// addMember adds the user to the workspace with a unique @handle made from
// the e-mail's local part.
func (a *App) addMember(ctx context.Context, tx pgx.Tx, userID, email, role string) error {
	base := handleRE.ReplaceAllString(strings.ToLower(strings.SplitN(email, "@", 2)[0]), "-")
	base = strings.Trim(base, "._-")
	if base == "" {
		base = "user"
	}
	if len(base) > 28 {
		base = base[:28]
	}
	_, err := tx.Exec(ctx, `INSERT INTO public.members (user_id, handle, role)
		SELECT $1, h, $3 FROM (
			SELECT $2::text AS h, 0 AS n UNION ALL SELECT $2 || '-' || i, i FROM generate_series(2, 999) i) c
		WHERE NOT EXISTS (SELECT 1 FROM public.members m WHERE m.handle = c.h)
		ORDER BY n LIMIT 1`, userID, base, role)
	return err
}

// mailbox collects the one-time tokens auth hands to the Mailer during one
// request, so the invitation link can be shown to whoever invited.
type mailbox struct{ msgs []auth.Message }

type mailboxKey struct{}

// inviteMailer is the app's auth.Mailer. The app sends no e-mail: the only
// token it asks for is an invitation (a reset-style token for an account
// created by a teammate), whose link the inviter passes on.
type inviteMailer struct{}

func (inviteMailer) Send(ctx context.Context, _ auth.DB, m auth.Message) error {
	box, ok := ctx.Value(mailboxKey{}).(*mailbox)
	if !ok {
		return errors.New("app: this demo sends no e-mail")
	}
	box.msgs = append(box.msgs, m)
	return nil
}

// handleInvite creates the invitee's account with a random password and a
// reset-style token, and shows the link that lets them choose a password.
func (a *App) handleInvite(w http.ResponseWriter, r *http.Request) error {
	email, err := auth.NormalizeEmail(strings.TrimSpace(r.FormValue("email")))
	if err != nil {
		return err
	}
	random := make([]byte, 32)
	if _, err := rand.Read(random); err != nil {
		return err
	}
	box := &mailbox{}
	ctx := context.WithValue(r.Context(), mailboxKey{}, box)
	err = a.tx(r, func(tx pgx.Tx) error {
		u, err := a.auth.SignUp(ctx, tx, email, base64.RawURLEncoding.EncodeToString(random), auth.ClientFromRequest(r))
		if err != nil {
			return err
		}
		if err := a.addMember(ctx, tx, u.ID, email, "member"); err != nil {
			return err
		}
		return a.auth.RequestPasswordReset(ctx, tx, email, auth.ClientFromRequest(r))
	})
	if err != nil {
		return err
	}
	if len(box.msgs) != 1 {
		return errors.New("app: no invitation token was issued")
	}
	link := "/w/" + workspace(r).Slug + "/join?token=" + url.QueryEscape(box.msgs[0].Token)
	return a.renderMembers(w, r, map[string]any{"InviteLink": link, "Invited": email})
}

func (a *App) handleJoinForm(w http.ResponseWriter, r *http.Request) error {
	a.render(w, r, "join", map[string]any{"Title": "Join " + workspace(r).Name, "Token": r.URL.Query().Get("token"), "WS": workspace(r)})
	return nil
}

// handleJoin consumes the invitation (auth's reset token: single use,
// expiring), sets the password and logs the new member in.
func (a *App) handleJoin(w http.ResponseWriter, r *http.Request) error {
	var token string
	var s auth.Session
	err := a.tx(r, func(tx pgx.Tx) error {
		uid, err := a.auth.ResetPassword(r.Context(), tx, r.FormValue("token"), r.FormValue("password"), auth.ClientFromRequest(r))
		if err != nil {
			return err
		}
		token, s, err = a.auth.CreateSession(r.Context(), tx, uid, auth.ClientFromRequest(r))
		return err
	})
	if err != nil {
		return err
	}
	a.auth.SetSessionCookie(w, token, s)
	http.Redirect(w, r, "/w/"+workspace(r).Slug+"/", http.StatusSeeOther)
	return nil
}

// ---- notes ----

type note struct {
	ID          int64
	Title, Body string
	Author      string
	UpdatedAt   time.Time
	Attachments []attachment
}

type attachment struct {
	ID          int64
	NoteID      int64
	FileID      string
	Name        string
	ContentType string
	Size        int64
	Status      string
	ThumbID     *string
	Preview     *string
	JobID       *int64
	JobState    string
}

const noteColumns = `n.id, n.title, n.body, m.handle, n.updated_at`

func scanNote(row pgx.CollectableRow) (note, error) {
	var n note
	err := row.Scan(&n.ID, &n.Title, &n.Body, &n.Author, &n.UpdatedAt)
	return n, err
}

func (a *App) handleWorkspace(w http.ResponseWriter, r *http.Request) error {
	var notes []note
	var digest *struct {
		Day     time.Time
		Summary string
	}
	err := a.tx(r, func(tx pgx.Tx) error {
		rows, _ := tx.Query(r.Context(), `SELECT `+noteColumns+` FROM public.notes n
			JOIN public.members m ON m.user_id = n.author_id ORDER BY n.updated_at DESC, n.id DESC LIMIT 100`)
		var err error
		if notes, err = pgx.CollectRows(rows, scanNote); err != nil {
			return err
		}
		var d struct {
			Day     time.Time
			Summary string
		}
		err = tx.QueryRow(r.Context(), `SELECT day, summary FROM public.digests ORDER BY day DESC LIMIT 1`).Scan(&d.Day, &d.Summary)
		if err == nil {
			digest = &d
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	a.render(w, r, "workspace", map[string]any{"Title": workspace(r).Name, "Notes": notes, "Digest": digest})
	return nil
}

var mentionRE = regexp.MustCompile(`(?:^|[^\w@])@([a-z0-9][a-z0-9._-]{0,31})`)

// saveNote inserts (id 0) or updates a note, and in the same transaction
// publishes it to the workspace's browsers, notifies mentioned members,
// and queues the refresh of the typo word lists: all or nothing.
func (a *App) saveNote(r *http.Request, tx pgx.Tx, id int64) (int64, error) {
	ctx, m := r.Context(), memberFrom(r.Context())
	title, body := strings.TrimSpace(r.FormValue("title")), strings.TrimSpace(r.FormValue("body"))
	if title == "" || len(title) > 200 || len(body) > 20000 {
		return 0, errStatus(http.StatusBadRequest, "A note needs a title (up to 200 characters) and at most 20,000 characters of text.")
	}
	var err error
	if id == 0 {
		err = tx.QueryRow(ctx, `INSERT INTO public.notes (author_id, title, body) VALUES ($1, $2, $3) RETURNING id`,
			m.ID, title, body).Scan(&id)
	} else {
		err = tx.QueryRow(ctx, `UPDATE public.notes SET title = $2, body = $3, updated_at = now() WHERE id = $1 RETURNING id`,
			id, title, body).Scan(&id)
	}
	if err != nil {
		return 0, err
	}
	msgs := []realtime.Message{}
	ev, _ := jsonBytes(liveEvent{Type: "note", ID: id, Title: title, By: m.Handle})
	msgs = append(msgs, realtime.Message{Channel: tenantChannel(workspace(r).ID.String()), Payload: ev})
	var handles []string
	for _, s := range mentionRE.FindAllStringSubmatch(title+"\n"+body, 20) {
		handles = append(handles, strings.TrimRight(s[1], "."))
	}
	if len(handles) > 0 {
		rows, _ := tx.Query(ctx, `SELECT user_id::text FROM public.members WHERE handle = ANY($1) AND user_id <> $2`, handles, m.ID)
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return 0, err
		}
		mention, _ := jsonBytes(liveEvent{Type: "mention", ID: id, Title: title, By: m.Handle})
		for _, uid := range ids {
			msgs = append(msgs, realtime.Message{Channel: userChannel(uid), Payload: mention})
		}
	}
	if err := a.broker.PublishBatch(ctx, tx, msgs); err != nil {
		return 0, err
	}
	if _, err := a.jobs.Insert(ctx, tx, refreshWordsJob{}, nil); err != nil {
		return 0, err
	}
	return id, nil
}

func (a *App) handleCreateNote(w http.ResponseWriter, r *http.Request) error {
	var id int64
	err := a.tx(r, func(tx pgx.Tx) (err error) {
		id, err = a.saveNote(r, tx, 0)
		return err
	})
	if err != nil {
		return err
	}
	http.Redirect(w, r, fmt.Sprintf("/w/%s/notes/%d", workspace(r).Slug, id), http.StatusSeeOther)
	return nil
}

func (a *App) handleEditNote(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if err := a.tx(r, func(tx pgx.Tx) error { _, err := a.saveNote(r, tx, id); return err }); err != nil {
		return err
	}
	http.Redirect(w, r, fmt.Sprintf("/w/%s/notes/%d", workspace(r).Slug, id), http.StatusSeeOther)
	return nil
}

func pathID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, errStatus(http.StatusNotFound, "Not found.")
	}
	return id, nil
}

// loadNote reads one note with its attachments and their jobs' states.
func (a *App) loadNote(ctx context.Context, tx pgx.Tx, id int64) (note, error) {
	rows, _ := tx.Query(ctx, `SELECT `+noteColumns+` FROM public.notes n
		JOIN public.members m ON m.user_id = n.author_id WHERE n.id = $1`, id)
	n, err := pgx.CollectExactlyOneRow(rows, scanNote)
	if err != nil {
		return n, err
	}
	rows, _ = tx.Query(ctx, attachmentQuery+` WHERE a.note_id = $1 ORDER BY a.id`, id)
	n.Attachments, err = pgx.CollectRows(rows, scanAttachment)
	return n, err
}

// attachmentQuery reads attachments with their job's state. The jobs table
// is protected like the app's own: only this workspace's jobs join.
const attachmentQuery = `SELECT a.id, a.note_id, a.file_id::text, a.name, a.content_type, a.size, a.status,
	a.thumb_file_id::text, a.preview, a.job_id, coalesce(j.state::text, '')
	FROM public.attachments a LEFT JOIN justpg.jobs j ON j.id = a.job_id`

func scanAttachment(row pgx.CollectableRow) (attachment, error) {
	var x attachment
	err := row.Scan(&x.ID, &x.NoteID, &x.FileID, &x.Name, &x.ContentType, &x.Size, &x.Status, &x.ThumbID, &x.Preview, &x.JobID, &x.JobState)
	return x, err
}

func (a *App) handleNote(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var n note
	if err := a.tx(r, func(tx pgx.Tx) (err error) { n, err = a.loadNote(r.Context(), tx, id); return err }); err != nil {
		return err
	}
	a.render(w, r, "note", map[string]any{"Title": n.Title, "Note": n})
	return nil
}

func (a *App) handleNoteCard(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var n note
	if err := a.tx(r, func(tx pgx.Tx) (err error) { n, err = a.loadNote(r.Context(), tx, id); return err }); err != nil {
		return err
	}
	a.renderFragment(w, r, "note_card", n)
	return nil
}

func (a *App) handleAttachmentCard(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var x attachment
	err = a.tx(r, func(tx pgx.Tx) error {
		rows, _ := tx.Query(r.Context(), attachmentQuery+` WHERE a.id = $1`, id)
		x, err = pgx.CollectExactlyOneRow(rows, scanAttachment)
		return err
	})
	if err != nil {
		return err
	}
	a.renderFragment(w, r, "attachment", x)
	return nil
}

// handleUpload stores the files of a multipart form (streamed, never whole
// in memory), their attachment rows and their preview jobs in one
// transaction of the workspace.
func (a *App) handleUpload(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	r.Body = http.MaxBytesReader(w, r.Body, a.opt.MaxUpload+1<<20)
	mr, err := r.MultipartReader()
	if err != nil {
		return errStatus(http.StatusBadRequest, "Expected a file upload form.")
	}
	m := memberFrom(r.Context())
	err = a.tx(r, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(r.Context(), `SELECT EXISTS (SELECT 1 FROM public.notes WHERE id = $1)`, id).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return pgx.ErrNoRows
		}
		stored := 0
		for {
			part, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return errStatus(http.StatusBadRequest, "The upload was cut short.")
			}
			if part.FileName() == "" {
				continue
			}
			ctype, _, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
			f, err := a.store.Put(r.Context(), tx, part, files.PutOptions{
				Name: part.FileName(), ContentType: ctype, DetectOctetStream: true, Owner: m.ID,
			})
			if err != nil {
				return err
			}
			var attID int64
			if err := tx.QueryRow(r.Context(), `INSERT INTO public.attachments (note_id, file_id, name, name_words, content_type, size)
				VALUES ($1, $2, $3, regexp_replace($3, '[^[:alnum:]]+', ' ', 'g'), $4, $5) RETURNING id`, id, f.ID, f.Name, f.ContentType, f.Size).Scan(&attID); err != nil {
				return err
			}
			res, err := a.jobs.Insert(r.Context(), tx, previewJob{AttachmentID: attID}, nil)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(r.Context(), `UPDATE public.attachments SET job_id = $2 WHERE id = $1`, attID, res.Job.ID); err != nil {
				return err
			}
			ev, _ := jsonBytes(liveEvent{Type: "attachment", ID: attID, NoteID: id})
			if err := a.broker.Publish(r.Context(), tx, tenantChannel(workspace(r).ID.String()), ev); err != nil {
				return err
			}
			stored++
		}
		if stored == 0 {
			return errStatus(http.StatusBadRequest, "Choose a file to upload.")
		}
		_, err := a.jobs.Insert(r.Context(), tx, refreshWordsJob{}, nil)
		return err
	})
	if err != nil {
		return err
	}
	http.Redirect(w, r, fmt.Sprintf("/w/%s/notes/%d", workspace(r).Slug, id), http.StatusSeeOther)
	return nil
}

// handleDownload serves a workspace's files (Range, conditional requests)
// in a transaction scoped to the workspace: another workspace's file id is
// a 404.
func (a *App) handleDownload() func(w http.ResponseWriter, r *http.Request) error {
	h := a.store.DownloadHandler(files.HandlerConfig{
		Scope: func(r *http.Request, fn func(db files.DB) error) error {
			return a.tx(r, func(tx pgx.Tx) error { return fn(tx) })
		},
		Inline: true,
		ErrorLog: func(r *http.Request, err error) {
			a.log.Warn("download", "path", r.URL.Path, "err", err)
		},
	})
	return func(w http.ResponseWriter, r *http.Request) error {
		if _, err := uuid.Parse(r.PathValue("id")); err != nil {
			return errStatus(http.StatusNotFound, "Not found.")
		}
		h.ServeHTTP(w, r)
		return nil
	}
}

// ---- search ----

type searchHit struct {
	NoteID int64
	Title  string
	// Snippets are search's highlights: HTML-escaped text with <mark>.
	Snippet   string
	FileName  string
	FileID    string
	Match     search.Match
	IsFile    bool
	AttNoteID int64
}

func (a *App) handleSearch(w http.ResponseWriter, r *http.Request) error {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	var hits []searchHit
	var corrections map[string][]string
	if q != "" && len(q) <= 200 {
		err := a.tx(r, func(tx pgx.Tx) error {
			notes, err := a.notesIx.Search(r.Context(), tx, search.Query{Text: q, Limit: 10, Highlight: true})
			if err != nil {
				return err
			}
			corrections = notes.Corrections
			for _, h := range notes.Hits {
				id, _ := strconv.ParseInt(h.Key, 10, 64)
				hit := searchHit{NoteID: id, Title: h.Highlights["title"], Snippet: h.Highlights["body"], Match: h.Match}
				hits = append(hits, hit)
			}
			atts, err := a.attIx.Search(r.Context(), tx, search.Query{Text: q, Limit: 10, Highlight: true})
			if err != nil {
				return err
			}
			for _, h := range atts.Hits {
				id, _ := strconv.ParseInt(h.Key, 10, 64)
				var noteID int64
				var fileID, title string
				err := tx.QueryRow(r.Context(), `SELECT a.note_id, a.file_id::text, n.title FROM public.attachments a
					JOIN public.notes n ON n.id = a.note_id WHERE a.id = $1`, id).Scan(&noteID, &fileID, &title)
				if errors.Is(err, pgx.ErrNoRows) {
					continue
				}
				if err != nil {
					return err
				}
				hits = append(hits, searchHit{IsFile: true, NoteID: noteID, Title: title, FileName: h.Highlights["name_words"], FileID: fileID, Match: h.Match})
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	a.renderFragment(w, r, "search_results", map[string]any{"Q": q, "Hits": hits, "Corrections": corrections, "WS": workspace(r)})
	return nil
}

// ---- members, sessions, jobs, admin ----

func (a *App) handleMembers(w http.ResponseWriter, r *http.Request) error {
	return a.renderMembers(w, r, map[string]any{})
}

type memberRow struct {
	Handle, Email, Role string
	JoinedAt            time.Time
}

func (a *App) renderMembers(w http.ResponseWriter, r *http.Request, data map[string]any) error {
	var members []memberRow
	err := a.tx(r, func(tx pgx.Tx) error {
		rows, _ := tx.Query(r.Context(), `SELECT m.handle, u.email::text, m.role, m.joined_at FROM public.members m
			JOIN justpg.auth_users u ON u.id = m.user_id ORDER BY m.joined_at, m.handle`)
		var err error
		members, err = pgx.CollectRows(rows, pgx.RowToStructByPos[memberRow])
		return err
	})
	if err != nil {
		return err
	}
	data["Title"], data["Members"] = "Members", members
	a.render(w, r, "members", data)
	return nil
}

func (a *App) handleSessions(w http.ResponseWriter, r *http.Request) error {
	var sessions []auth.Session
	err := a.tx(r, func(tx pgx.Tx) (err error) {
		sessions, err = a.auth.Sessions(r.Context(), tx, memberFrom(r.Context()).ID)
		return err
	})
	if err != nil {
		return err
	}
	a.render(w, r, "sessions", map[string]any{"Title": "Sessions", "Sessions": sessions, "Revoked": r.URL.Query().Get("revoked")})
	return nil
}

func (a *App) handleRevokeOthers(w http.ResponseWriter, r *http.Request) error {
	m := memberFrom(r.Context())
	var n int64
	err := a.tx(r, func(tx pgx.Tx) (err error) {
		n, err = a.auth.RevokeSessions(r.Context(), tx, m.ID, m.SessionID, auth.ClientFromRequest(r))
		return err
	})
	if err != nil {
		return err
	}
	http.Redirect(w, r, fmt.Sprintf("/w/%s/sessions?revoked=%d", workspace(r).Slug, n), http.StatusSeeOther)
	return nil
}

func (a *App) handleJobs(w http.ResponseWriter, r *http.Request) error {
	var list []*jobs.JobRow
	err := a.tx(r, func(tx pgx.Tx) error {
		// The jobs table is protected like the app's: List sees this
		// workspace's jobs only. Newest first, the latest 50.
		var after int64
		for {
			page, err := a.jobs.List(r.Context(), tx, jobs.ListParams{After: after, Limit: 1000})
			if err != nil {
				return err
			}
			list = append(list, page.Jobs...)
			if len(list) > 50 {
				list = list[len(list)-50:]
			}
			if page.Next == 0 {
				return nil
			}
			after = page.Next
		}
	})
	if err != nil {
		return err
	}
	for i, j := 0, len(list)-1; i < j; i, j = i+1, j-1 {
		list[i], list[j] = list[j], list[i]
	}
	a.render(w, r, "jobs", map[string]any{"Title": "Jobs", "Jobs": list})
	return nil
}

// handleAdmin shows the instance's backups: the last one, its last drill and
// the restore time that drill measured. Backups hold every workspace, so
// only the owners of the operator's workspace see it (Options.AdminWorkspace,
// by default the first workspace signed up).
func (a *App) handleAdmin(w http.ResponseWriter, r *http.Request) error {
	if !memberFrom(r.Context()).Admin {
		return errStatus(http.StatusForbidden, "Only the owners of the operator's workspace see the admin page.")
	}
	list, err := a.backups.List(r.Context())
	if err != nil {
		return err
	}
	var last *backup.Backup
	if len(list) > 0 {
		last = &list[len(list)-1]
		for i := range list {
			if list[i].Finished.After(last.Finished) {
				last = &list[i]
			}
		}
	}
	// The backup job belongs to no workspace: read its state as the system.
	page, err := a.jobs.List(r.Context(), a.sys, jobs.ListParams{Kind: backupJob{}.Kind(), Limit: 1000})
	if err != nil {
		return err
	}
	var job *jobs.JobRow
	if n := len(page.Jobs); n > 0 {
		job = page.Jobs[n-1]
	}
	a.render(w, r, "admin", map[string]any{"Title": "Admin", "Last": last, "Count": len(list), "Job": job})
	return nil
}

func (a *App) handleDrill(w http.ResponseWriter, r *http.Request) error {
	if !memberFrom(r.Context()).Admin {
		return errStatus(http.StatusForbidden, "Only the owners of the operator's workspace can run a drill.")
	}
	// Unique: while one backup job waits or runs, another click adds none.
	if _, err := a.jobs.Insert(r.Context(), a.sys, backupJob{}, nil); err != nil {
		return err
	}
	http.Redirect(w, r, "/w/"+workspace(r).Slug+"/admin", http.StatusSeeOther)
	return nil
}
