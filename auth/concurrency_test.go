package auth_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/auth"
)

// TestRenewalWritesOncePerInterval counts UPDATEs of the session row with a
// trigger while many requests validate the same session concurrently.
func TestRenewalWritesOncePerInterval(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *auth.Config) { c.SessionRenewInterval = time.Minute })
	e.signUp(t, "busy@example.com")
	res := e.login(t, "busy@example.com", goodPW)
	e.exec(t, `CREATE TABLE session_writes (n int NOT NULL);
		INSERT INTO session_writes VALUES (0);
		CREATE FUNCTION count_session_write() RETURNS trigger LANGUAGE plpgsql AS
			$$ BEGIN UPDATE session_writes SET n = n + 1; RETURN NEW; END $$;
		CREATE TRIGGER count_writes AFTER UPDATE ON justpg.auth_sessions
			FOR EACH ROW EXECUTE FUNCTION count_session_write();`)
	validateMany := func() {
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 5 {
					_, err := e.a.ValidateSession(ctx, e.pool, res.Token)
					assert.NoError(t, err)
				}
			})
		}
		wg.Wait()
	}
	validateMany()
	assert.Equal(t, 0, e.count(t, `SELECT n FROM session_writes`), "a fresh session is only read")

	e.exec(t, `UPDATE justpg.auth_sessions SET last_seen_at = now() - interval '2 minutes'`)
	e.exec(t, `UPDATE session_writes SET n = 0`)
	validateMany()
	assert.Equal(t, 1, e.count(t, `SELECT n FROM session_writes`), "40 concurrent validations of a stale session: one write")
}

// TestConcurrentFailuresAreAllCounted: failed log-ins racing each other are
// counted exactly, so parallel guessing cannot slip under the threshold.
func TestConcurrentFailuresAreAllCounted(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *auth.Config) { c.LockoutThreshold = 100 })
	u := e.signUp(t, "target@example.com")
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			_, err := e.a.Login(ctx, e.pool, auth.Credentials{Email: "target@example.com", Password: "guessing guessing"}, client)
			assert.ErrorIs(t, err, auth.ErrInvalidCredentials)
		})
	}
	wg.Wait()
	require.Equal(t, 12, e.count(t, `SELECT failed_logins FROM justpg.auth_users WHERE id = $1`, u.ID))
}
