package auth_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/auth"
	"github.com/justpg/justpg/internal/pgtest"
)

// Statements that auth runs on their own (counting a failed log-in,
// renewing a session) and that wait for a concurrent writer of their row
// succeed when the sessions' default isolation is REPEATABLE READ (a role's
// or database's setting). At that level the statement's snapshot predates
// the writer's commit and PostgreSQL raises a serialization failure, which
// Login and ValidateSession returned instead of their usual results.
func TestRowWritersThatWaitSucceedUnderRepeatableRead(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t, migrated(), pgtest.WithSetting("default_transaction_isolation", "repeatable read"))
	a, err := auth.New(db.Pool, auth.Config{Hasher: newHasher(t, cheap), Mailer: &captureMailer{}, IPLimit: -1,
		SessionRenewInterval: time.Minute})
	require.NoError(t, err)
	e := &env{db: db, pool: db.Pool, a: a}
	u := e.signUp(t, "raced@example.com")
	token := e.login(t, "raced@example.com", goodPW).Token
	e.exec(t, `UPDATE justpg.auth_sessions SET last_seen_at = now() - interval '2 minutes'`)

	// race runs op while another transaction holds its freshly updated row,
	// and commits that transaction once op waits for it.
	race := func(update string, op func() error) error {
		other, err := db.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
		require.NoError(t, err)
		defer func() { _ = other.Rollback(ctx) }()
		_, err = other.Exec(ctx, update, u.ID)
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { done <- op() }()
		pgtest.WaitForLockWaiter(t, db.Pool, "transactionid")
		require.NoError(t, other.Commit(ctx))
		return <-done
	}

	err = race(`UPDATE justpg.auth_users SET updated_at = now() WHERE id = $1`, func() error {
		_, err := a.Login(ctx, db.Pool, auth.Credentials{Email: "raced@example.com", Password: "wrong wrong wrong"}, client)
		return err
	})
	assert.ErrorIs(t, err, auth.ErrInvalidCredentials)
	assert.Equal(t, 1, e.count(t, `SELECT failed_logins FROM justpg.auth_users WHERE id = $1`, u.ID))

	// Another request renewed the session first: losing that race is fine.
	err = race(`UPDATE justpg.auth_sessions SET last_seen_at = now() WHERE user_id = $1`, func() error {
		_, err := a.ValidateSession(ctx, db.Pool, token)
		return err
	})
	assert.NoError(t, err)
}
