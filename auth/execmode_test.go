package auth_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/auth"
	"github.com/justpg/justpg/internal/pgtest"
)

// The audit log is written and read in every pgx exec mode. In the exec and
// simple-protocol modes (what PgBouncer users configure) pgx does not learn
// that the detail parameter is jsonb, and could not encode a map for it:
// every audited call (sign-up, log-in…) failed.
func TestAuditLogInEveryExecMode(t *testing.T) {
	t.Parallel()
	for _, mode := range pgtest.ExecModes {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			db := pgtest.NewDB(t, migrated(), pgtest.InMode(mode))
			a, err := auth.New(db.Pool, auth.Config{Hasher: newHasher(t, cheap), Mailer: &captureMailer{}, IPLimit: -1})
			require.NoError(t, err)
			u, err := a.SignUp(ctx, db.Pool, "modes@example.com", goodPW, client)
			require.NoError(t, err)
			_, err = a.Login(ctx, db.Pool, auth.Credentials{Email: "modes@example.com", Password: "not the password"}, client)
			require.ErrorIs(t, err, auth.ErrInvalidCredentials)
			res, err := a.Login(ctx, db.Pool, auth.Credentials{Email: "modes@example.com", Password: goodPW}, client)
			require.NoError(t, err)
			log, err := a.AuditLog(ctx, db.Pool, u.ID, 10)
			require.NoError(t, err)
			require.Len(t, log, 3)
			assert.Equal(t, auth.EventLogin, log[0].Event)
			assert.Equal(t, map[string]any{"session_id": res.Session.ID, "rehashed": false}, log[0].Detail)
			assert.Equal(t, auth.EventLoginFailed, log[1].Event)
			assert.Equal(t, map[string]any{"reason": "password", "failures": float64(1)}, log[1].Detail)
			assert.Equal(t, auth.EventSignUp, log[2].Event)
			assert.Equal(t, map[string]any{}, log[2].Detail)
			assert.Equal(t, client.IP, log[2].IP)
			assert.Equal(t, client.UserAgent, log[2].UserAgent)
		})
	}
}
