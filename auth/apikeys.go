package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/justpg/justpg/internal/pgdb"
)

// APIKey describes a personal access token. The secret itself is returned
// once by CreateAPIKey and never stored (only its SHA-256).
type APIKey struct {
	ID         string
	UserID     string
	Name       string
	Hint       string // the key's prefix and last four characters, for lists
	Scopes     []string
	CreatedAt  time.Time
	ExpiresAt  *time.Time
	RevokedAt  *time.Time
	LastUsedAt *time.Time
}

const keyCols = `id::text, user_id::text, name, hint, scopes, created_at, expires_at, revoked_at, last_used_at`

func scanKey(row pgx.Row, extra ...any) (APIKey, error) {
	var k APIKey
	err := row.Scan(append([]any{&k.ID, &k.UserID, &k.Name, &k.Hint, &k.Scopes, &k.CreatedAt, &k.ExpiresAt,
		&k.RevokedAt, &k.LastUsedAt}, extra...)...)
	return k, err
}

func validScope(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune(":._-", r)) {
			return false
		}
	}
	return true
}

// CreateAPIKey issues a key "<prefix>_<43 characters>" for a user with the
// given scopes (each [a-z0-9:._-], at most 64 bytes; ErrInvalidScope) and
// name (1-100 bytes of valid UTF-8), expiring after ttl (0 = never). The
// returned secret is shown once: it cannot be recovered later.
func (a *Auth) CreateAPIKey(ctx context.Context, db DB, userID, name string, scopes []string, ttl time.Duration, c Client) (secret string, key APIKey, err error) {
	if !validUUID(userID) {
		return "", APIKey{}, ErrNotFound
	}
	if name == "" || len(name) > 100 || strings.ContainsRune(name, 0) || strings.ToValidUTF8(name, "") != name {
		return "", APIKey{}, fmt.Errorf("%w: key name must be 1-100 bytes of UTF-8 without NUL", ErrInvalidInput)
	}
	if ttl < 0 {
		return "", APIKey{}, fmt.Errorf("%w: negative ttl", ErrInvalidInput)
	}
	clean := make([]string, 0, len(scopes))
	for _, s := range scopes {
		if !validScope(s) {
			return "", APIKey{}, fmt.Errorf("%w: %q", ErrInvalidScope, s)
		}
		clean = append(clean, s)
	}
	token, hash := newToken()
	secret = a.cfg.APIKeyPrefix + "_" + token
	hint := a.cfg.APIKeyPrefix + "_…" + token[len(token)-4:]
	var exp any
	if ttl > 0 {
		exp = micros(ttl)
	}
	err = pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		var err error
		key, err = scanKey(tx.QueryRow(ctx, `INSERT INTO `+a.keys+` (user_id, name, key_hash, hint, scopes, expires_at)
			SELECT u.id, $2, $3, $4, $5, now() + $6 * interval '1 microsecond' FROM `+a.users+` u WHERE u.id = $1
			RETURNING `+keyCols, userID, name, hash, hint, clean, exp))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("auth: creating API key: %w", err)
		}
		return a.record(ctx, tx, EventAPIKeyCreated, userID, c, map[string]any{"key_id": key.ID, "scopes": clean})
	})
	if err != nil {
		return "", APIKey{}, err
	}
	return secret, key, nil
}

// ValidateAPIKey resolves a key into its user. Malformed, unknown and
// revoked keys are ErrInvalidToken, expired ones ErrTokenExpired.
// last_used_at is written at most once per APIKeyTouchInterval.
func (a *Auth) ValidateAPIKey(ctx context.Context, db DB, secret string) (*Principal, error) {
	hash, err := a.parseAPIKey(secret)
	if err != nil {
		return nil, err
	}
	var p Principal
	var expired, stale bool
	k, err := scanKey(db.QueryRow(ctx, a.sqlAPIKey, hash, micros(a.cfg.APIKeyTouchInterval)),
		&p.User.Email, &p.User.EmailVerifiedAt, &p.User.TOTPEnabled, &p.User.CreatedAt, &expired, &stale)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: unknown API key", ErrInvalidToken)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: validating API key: %w", err)
	}
	if k.RevokedAt != nil {
		return nil, fmt.Errorf("%w: revoked API key", ErrInvalidToken)
	}
	if expired {
		return nil, ErrTokenExpired
	}
	if stale {
		err := pgdb.Retry(ctx, db, func() error {
			return db.QueryRow(ctx, `UPDATE `+a.keys+` SET last_used_at = now() WHERE id = $1
			AND (last_used_at IS NULL OR last_used_at <= now() - $2 * interval '1 microsecond') RETURNING last_used_at`,
				k.ID, micros(a.cfg.APIKeyTouchInterval)).Scan(&k.LastUsedAt)
		})
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("auth: touching API key: %w", err)
		}
	}
	p.User.ID = k.UserID
	p.APIKey = &k
	return &p, nil
}

// APIKeys lists a user's keys, revoked and expired ones included, newest
// first.
func (a *Auth) APIKeys(ctx context.Context, db DB, userID string) ([]APIKey, error) {
	if !validUUID(userID) {
		return nil, ErrNotFound
	}
	rows, err := db.Query(ctx, `SELECT `+keyCols+` FROM `+a.keys+` WHERE user_id = $1 ORDER BY created_at DESC, id`, userID)
	if err != nil {
		return nil, fmt.Errorf("auth: listing API keys: %w", err)
	}
	defer rows.Close()
	var out []APIKey
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, fmt.Errorf("auth: listing API keys: %w", err)
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("auth: listing API keys: %w", err)
	}
	return out, nil
}

// RevokeAPIKey revokes one of a user's keys; it stops working on the next
// request. A key of another user, or one already revoked, is ErrNotFound.
func (a *Auth) RevokeAPIKey(ctx context.Context, db DB, userID, keyID string, c Client) error {
	if !validUUID(userID) || !validUUID(keyID) {
		return ErrNotFound
	}
	return pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE `+a.keys+` SET revoked_at = now()
			WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL`, keyID, userID)
		if err != nil {
			return fmt.Errorf("auth: revoking API key: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return a.record(ctx, tx, EventAPIKeyRevoked, userID, c, map[string]any{"key_id": keyID})
	})
}
