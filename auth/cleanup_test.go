package auth_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/auth"
	"github.com/justpg/justpg/internal/pgtest"
)

func TestCleanupInBatches(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *auth.Config) { c.SessionIdleTimeout = time.Hour })
	u := e.signUp(t, "clean@example.com")
	var live []string
	for i := range 12 {
		res := e.login(t, "clean@example.com", goodPW)
		switch i % 3 {
		case 0:
			e.exec(t, `UPDATE justpg.auth_sessions SET expires_at = now() - interval '1 minute' WHERE id = $1`, res.Session.ID)
		case 1:
			e.exec(t, `UPDATE justpg.auth_sessions SET last_seen_at = now() - interval '2 hours' WHERE id = $1`, res.Session.ID)
		default:
			live = append(live, res.Token)
		}
	}
	for range 5 {
		require.NoError(t, e.a.RequestEmailVerification(ctx, e.pool, u.ID, client))
	}
	e.exec(t, `UPDATE justpg.auth_tokens SET expires_at = now() - interval '1 minute' WHERE used_at IS NOT NULL`)

	res, err := e.a.Cleanup(ctx, e.pool, 3)
	require.NoError(t, err)
	assert.Equal(t, auth.CleanupResult{Sessions: 8, Tokens: 4}, res)
	assert.Equal(t, 4, e.count(t, `SELECT count(*) FROM justpg.auth_sessions`))
	assert.Equal(t, 1, e.count(t, `SELECT count(*) FROM justpg.auth_tokens`))
	for _, tok := range live {
		_, err := e.a.ValidateSession(ctx, e.pool, tok)
		require.NoError(t, err)
	}
	res, err = e.a.Cleanup(ctx, e.pool, 0)
	require.NoError(t, err)
	assert.Zero(t, res)
}

// failingMailer fails to send; the token it was given must not survive.
type failingMailer struct{ kill func() }

func (f failingMailer) Send(ctx context.Context, db auth.DB, _ auth.Message) error {
	if f.kill != nil {
		f.kill()
		_, err := db.Exec(ctx, `SELECT 1`)
		return err
	}
	return errors.New("smtp: connection refused")
}

func TestFaults(t *testing.T) {
	t.Parallel()
	e := setup(t)
	u := e.signUp(t, "fault@example.com")

	// A mailer failure rolls the token back.
	a2, err := auth.New(e.pool, auth.Config{Hasher: e.h, Mailer: failingMailer{}, IPLimit: -1})
	require.NoError(t, err)
	err = a2.RequestPasswordReset(ctx, e.pool, "fault@example.com", client)
	require.ErrorContains(t, err, "smtp: connection refused")
	assert.Equal(t, 0, e.count(t, `SELECT count(*) FROM justpg.auth_tokens`))

	// The connection is killed in the middle of the transaction: an error,
	// and nothing half-written.
	a3, err := auth.New(e.pool, auth.Config{Hasher: e.h, Mailer: failingMailer{kill: func() { e.db.TerminateBackends(t) }}, IPLimit: -1})
	require.NoError(t, err)
	err = a3.RequestEmailVerification(ctx, e.pool, u.ID, client)
	require.Error(t, err)
	// Idle connections the server killed are found dead only when next
	// used; drop them now so that the checks below do not depend on timing.
	e.pool.Reset()
	assert.Equal(t, 0, e.count(t, `SELECT count(*) FROM justpg.auth_tokens`))
	// The pool recovers: the next operations work.
	res := e.login(t, "fault@example.com", goodPW)

	// A cancelled context: an error wrapping context.Canceled, nothing changed.
	before := e.snapshot(t)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = e.a.Login(cctx, e.pool, auth.Credentials{Email: "fault@example.com", Password: goodPW}, client)
	require.ErrorIs(t, err, context.Canceled)
	_, err = e.a.Login(cctx, e.pool, auth.Credentials{Email: "fault@example.com", Password: "wrong wrong"}, client)
	require.ErrorIs(t, err, context.Canceled)
	_, err = e.a.SignUp(cctx, e.pool, "new@example.com", goodPW, client)
	require.ErrorIs(t, err, context.Canceled)
	_, err = e.a.ValidateSession(cctx, e.pool, res.Token)
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, before, e.snapshot(t))
	_, err = e.a.ValidateSession(ctx, e.pool, res.Token)
	require.NoError(t, err)
}

// TestSessionsSurviveServerRestart: sessions live in PostgreSQL, so a
// restart of the database (or of every app instance) logs nobody out.
func TestSessionsSurviveServerRestart(t *testing.T) {
	t.Parallel()
	srv := pgtest.NewCluster(t, pgtest.ClusterOptions{})
	db := pgtest.NewDB(t, pgtest.OnServer(srv), migrated())
	a, err := auth.New(db.Pool, auth.Config{Hasher: newHasher(t, cheap), IPLimit: -1})
	require.NoError(t, err)
	_, err = a.SignUp(ctx, db.Pool, "restart@example.com", goodPW, client)
	require.NoError(t, err)
	res, err := a.Login(ctx, db.Pool, auth.Credentials{Email: "restart@example.com", Password: goodPW}, client)
	require.NoError(t, err)

	require.NoError(t, srv.Restart(ctx))
	var p *auth.Principal
	require.Eventually(t, func() bool {
		p, err = a.ValidateSession(ctx, db.Pool, res.Token)
		return err == nil || !strings.Contains(err.Error(), "conn")
	}, 30*time.Second, 100*time.Millisecond)
	require.NoError(t, err)
	assert.Equal(t, res.User.ID, p.User.ID)
}
