package auth_test

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/auth"
	"github.com/justpg/justpg/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// cheap are argon2id parameters that keep tests fast; one test runs the
// OWASP defaults.
var cheap = auth.Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// countingHasher counts Hash and Verify calls of the real hasher it wraps.
type countingHasher struct {
	auth.Hasher
	hashes, verifies atomic.Int64
}

func (c *countingHasher) Hash(ctx context.Context, pw []byte) (string, error) {
	c.hashes.Add(1)
	return c.Hasher.Hash(ctx, pw)
}

func (c *countingHasher) Verify(ctx context.Context, pw []byte, enc string) (bool, bool, error) {
	c.verifies.Add(1)
	return c.Hasher.Verify(ctx, pw, enc)
}

func newHasher(t testing.TB, p auth.Argon2Params) *countingHasher {
	h, err := auth.NewArgon2id(p)
	require.NoError(t, err)
	return &countingHasher{Hasher: h}
}

// captureMailer keeps the messages it is asked to send.
type captureMailer struct {
	mu   sync.Mutex
	msgs []auth.Message
}

func (m *captureMailer) Send(_ context.Context, _ auth.DB, msg auth.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.msgs = append(m.msgs, msg)
	return nil
}

func (m *captureMailer) all() []auth.Message {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]auth.Message(nil), m.msgs...)
}

func (m *captureMailer) last(t *testing.T) auth.Message {
	t.Helper()
	all := m.all()
	require.NotEmpty(t, all, "no message sent")
	return all[len(all)-1]
}

type env struct {
	db   *pgtest.DB
	pool *pgxpool.Pool
	a    *auth.Auth
	h    *countingHasher
	mail *captureMailer
}

func migrated() pgtest.Option {
	return pgtest.WithSetup("auth", func(ctx context.Context, pool *pgxpool.Pool) error {
		return auth.Migrate(ctx, pool)
	})
}

func setup(t *testing.T, mods ...func(*auth.Config)) *env {
	t.Helper()
	db := pgtest.NewDB(t, migrated())
	h := newHasher(t, cheap)
	mail := &captureMailer{}
	cfg := auth.Config{Hasher: h, Mailer: mail, IPLimit: -1}
	for _, m := range mods {
		m(&cfg)
	}
	a, err := auth.New(db.Pool, cfg)
	require.NoError(t, err)
	return &env{db: db, pool: db.Pool, a: a, h: h, mail: mail}
}

var ctx = context.Background()

const goodPW = "correct horse battery staple"

var client = auth.Client{IP: netip.MustParseAddr("192.0.2.10"), UserAgent: "test-agent/1.0"}

func (e *env) signUp(t *testing.T, email string) auth.User {
	t.Helper()
	u, err := e.a.SignUp(ctx, e.pool, email, goodPW, client)
	require.NoError(t, err)
	return u
}

func (e *env) login(t *testing.T, email, pw string) auth.LoginResult {
	t.Helper()
	res, err := e.a.Login(ctx, e.pool, auth.Credentials{Email: email, Password: pw}, client)
	require.NoError(t, err)
	return res
}

func (e *env) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, e.pool.QueryRow(ctx, sql, args...).Scan(&n))
	return n
}

func (e *env) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	_, err := e.pool.Exec(ctx, sql, args...)
	require.NoError(t, err)
}

// snapshot returns row counts of every auth table, to show bad input
// changed nothing.
func (e *env) snapshot(t *testing.T) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, tbl := range []string{"auth_users", "auth_sessions", "auth_tokens", "auth_api_keys", "auth_recovery_codes"} {
		out[tbl] = e.count(t, "SELECT count(*) FROM justpg."+tbl)
	}
	out["used_tokens"] = e.count(t, "SELECT count(*) FROM justpg.auth_tokens WHERE used_at IS NOT NULL")
	out["failed_logins"] = e.count(t, "SELECT COALESCE(sum(failed_logins), 0) FROM justpg.auth_users")
	out["revoked_keys"] = e.count(t, "SELECT count(*) FROM justpg.auth_api_keys WHERE revoked_at IS NOT NULL")
	return out
}
