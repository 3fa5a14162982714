package auth_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/auth"
	"github.com/justpg/justpg/internal/pgtest"
)

// Sessions whose search_path holds only the application's own schema, or
// nothing (not public, where the extensions are, nor justpg): the whole
// account life cycle still works, and so do the tables' defaults
// (gen_random_uuid, the tenant stamp) evaluated in those sessions.
func TestAuthWithUnusualSearchPath(t *testing.T) {
	t.Parallel()
	for _, sp := range []string{"app", "''", "pg_catalog"} {
		t.Run(sp, func(t *testing.T) {
			t.Parallel()
			db := pgtest.NewDB(t, migrated(), pgtest.WithPoolConfig(func(c *pgxpool.Config) {
				c.ConnConfig.RuntimeParams["search_path"] = sp
			}))
			_, err := db.Pool.Exec(ctx, `CREATE SCHEMA app`)
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
			_, err = a.AuditLog(ctx, db.Pool, u.ID, 10)
			require.NoError(t, err)
			_, err = a.Cleanup(ctx, db.Pool, 100)
			require.NoError(t, err)
		})
	}
}
