package auth_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/auth"
	"github.com/justpg/justpg/internal/pgtest"
)

// Sessions whose search_path holds only the application's own schema, or
// nothing (not public, where the extensions are, nor justpg), and sessions
// with the default search_path ("$user", public) where public holds objects
// shadowing built-ins (pgtest.ShadowingSQL), as a role allowed to create
// there could plant them: the whole account life cycle still works, and so
// do the tables' defaults (gen_random_uuid, the tenant stamp) evaluated in
// those sessions.
func TestAuthWithUnusualSearchPath(t *testing.T) {
	t.Parallel()
	for _, tc := range pgtest.SearchPathCases {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			db := pgtest.NewDB(t, migrated(), pgtest.WithSearchPath(tc.SearchPath))
			_, err := db.Pool.Exec(ctx, tc.SetupSQL())
			require.NoError(t, err)
			mail := &captureMailer{}
			a, err := auth.New(db.Pool, auth.Config{Hasher: newHasher(t, cheap), Mailer: mail})
			require.NoError(t, err)

			u, err := a.SignUp(ctx, db.Pool, "Ada@Example.com", goodPW, client)
			require.NoError(t, err)
			res, err := a.Login(ctx, db.Pool, auth.Credentials{Email: "ada@example.com", Password: goodPW}, client)
			require.NoError(t, err)
			p, err := a.ValidateSession(ctx, db.Pool, res.Token)
			require.NoError(t, err)
			assert.Equal(t, u.ID, p.User.ID)
			_, err = a.RotateSession(ctx, db.Pool, res.Token, client)
			require.NoError(t, err)

			require.NoError(t, a.RequestPasswordReset(ctx, db.Pool, "ada@example.com", client))
			msg := mail.last(t)
			_, err = a.ResetPassword(ctx, db.Pool, msg.Token, "a brand new passphrase 42", client)
			require.NoError(t, err)
			_, err = a.Login(ctx, db.Pool, auth.Credentials{Email: "ada@example.com", Password: "a brand new passphrase 42"}, client)
			require.NoError(t, err)

			secret, _, err := a.CreateAPIKey(ctx, db.Pool, u.ID, "ci", []string{"read"}, 0, client)
			require.NoError(t, err)
			_, err = a.ValidateAPIKey(ctx, db.Pool, secret)
			require.NoError(t, err)
			enrol, err := a.BeginTOTP(ctx, db.Pool, u.ID)
			require.NoError(t, err)
			recovery, err := a.EnableTOTP(ctx, db.Pool, u.ID, code(t, enrol.Secret, time.Now()), client)
			require.NoError(t, err)
			assert.NotEmpty(t, recovery)
			_, err = a.RegenerateRecoveryCodes(ctx, db.Pool, u.ID)
			require.NoError(t, err)
			_, err = a.AuditLog(ctx, db.Pool, u.ID, 10)
			require.NoError(t, err)
			_, err = a.Cleanup(ctx, db.Pool, 100)
			require.NoError(t, err)

			// A wrong password locks the account out (threshold 1).
			strict, err := auth.New(db.Pool, auth.Config{Hasher: newHasher(t, cheap), LockoutThreshold: 1})
			require.NoError(t, err)
			_, err = strict.Login(ctx, db.Pool, auth.Credentials{Email: "ada@example.com", Password: "wrong"}, client)
			require.ErrorIs(t, err, auth.ErrInvalidCredentials)
			var locked bool
			require.NoError(t, db.Pool.QueryRow(ctx, `SELECT locked_until > now() FROM justpg.auth_users WHERE id = $1`, u.ID).Scan(&locked))
			assert.True(t, locked)
		})
	}
}
