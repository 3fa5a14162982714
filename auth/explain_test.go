package auth

import (
	"context"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
)

// TestHotQueriesUseIndexes EXPLAINs the exact queries run on every request
// and log-in over enough rows that a sequential scan would be chosen if no
// index served them.
func TestHotQueriesUseIndexes(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t, pgtest.WithSetup("auth", func(ctx context.Context, pool *pgxpool.Pool) error {
		return Migrate(ctx, pool)
	}))
	ctx := context.Background()
	h, err := NewArgon2id(Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	require.NoError(t, err)
	a, err := New(db.Pool, Config{Hasher: h})
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `
		INSERT INTO justpg.auth_users (email, password_hash)
			SELECT 'user' || i || '@example.com', 'x' FROM generate_series(1, 1000) i;
		INSERT INTO justpg.auth_sessions (user_id, token_hash, expires_at)
			SELECT id, sha256(convert_to(id::text, 'UTF8')), now() + interval '1 day' FROM justpg.auth_users;
		INSERT INTO justpg.auth_api_keys (user_id, name, key_hash, hint)
			SELECT id, 'k', sha256(convert_to(email, 'UTF8')), 'h' FROM justpg.auth_users;
		INSERT INTO justpg.auth_tokens (user_id, purpose, token_hash, email, expires_at)
			SELECT id, 'reset_password', sha256(convert_to(email || 'r', 'UTF8')), email, now() + interval '1 hour' FROM justpg.auth_users;
		ANALYZE justpg.auth_users, justpg.auth_sessions, justpg.auth_api_keys, justpg.auth_tokens;`)
	require.NoError(t, err)
	hash := sha256.Sum256([]byte("probe"))

	plan := func(sql string, args ...any) string {
		t.Helper()
		var lines []string
		rows, err := db.Pool.Query(ctx, "EXPLAIN "+sql, args...)
		require.NoError(t, err)
		for rows.Next() {
			var l string
			require.NoError(t, rows.Scan(&l))
			lines = append(lines, l)
		}
		require.NoError(t, rows.Err())
		return strings.Join(lines, "\n")
	}
	cases := []struct {
		name, sql, index string
		args             []any
	}{
		{"session lookup", a.sqlSession, "auth_sessions_token_hash_key", []any{hash[:], int64(1), int64(1)}},
		{"API key lookup", a.sqlAPIKey, "auth_api_keys_key_hash_key", []any{hash[:], int64(1)}},
		{"log-in lookup", a.sqlLogin, "auth_users_email_key", []any{"user42@example.com"}},
		{"token consumption", `UPDATE justpg.auth_tokens SET used_at = now()
			WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()`, "auth_tokens_token_hash_key",
			[]any{hash[:], "reset_password"}},
		{"list sessions", `SELECT id FROM justpg.auth_sessions WHERE user_id = $1 AND expires_at > now()`, "auth_sessions_user_idx",
			[]any{"00000000-0000-0000-0000-000000000001"}},
	}
	for _, c := range cases {
		p := plan(c.sql, c.args...)
		require.Contains(t, p, c.index, "%s:\n%s", c.name, p)
		require.NotContains(t, p, "Seq Scan on auth_sessions", "%s:\n%s", c.name, p)
	}
}
