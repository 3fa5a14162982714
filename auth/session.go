package auth

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/justpg/justpg/internal/pgdb"
)

// Session is a logged-in session as listed to its user.
type Session struct {
	ID         string
	UserID     string
	CreatedAt  time.Time
	LastSeenAt time.Time
	ExpiresAt  time.Time // absolute expiry; idle expiry is LastSeenAt + SessionIdleTimeout
	UserAgent  string
	IP         netip.Addr
}

const sessionCols = `id::text, user_id::text, created_at, last_seen_at, expires_at, user_agent, COALESCE(host(ip), '')`

func scanSession(row pgx.Row, extra ...any) (Session, error) {
	var s Session
	var ip string
	err := row.Scan(append([]any{&s.ID, &s.UserID, &s.CreatedAt, &s.LastSeenAt, &s.ExpiresAt, &s.UserAgent, &ip}, extra...)...)
	s.IP, _ = netip.ParseAddr(ip)
	return s, err
}

// CreateSession starts a session for a user without checking a password
// (for flows that authenticated the user another way, e.g. right after
// verifying the e-mail). Login calls it for you.
func (a *Auth) CreateSession(ctx context.Context, db DB, userID string, c Client) (token string, s Session, err error) {
	if !validUUID(userID) {
		return "", Session{}, ErrNotFound
	}
	err = pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		token, s, err = a.createSession(ctx, tx, userID, c)
		if err != nil {
			return err
		}
		return a.record(ctx, tx, EventLogin, userID, c, map[string]any{"session_id": s.ID, "method": "direct"})
	})
	return token, s, err
}

func (a *Auth) createSession(ctx context.Context, db DB, userID string, c Client) (string, Session, error) {
	token, hash := newToken()
	s, err := scanSession(db.QueryRow(ctx, `INSERT INTO `+a.sessions+` AS s (user_id, token_hash, expires_at, user_agent, ip)
		SELECT u.id, $2, now() + $3 * interval '1 microsecond', $4, $5 FROM `+a.users+` u WHERE u.id = $1
		RETURNING `+sessionCols, userID, hash, micros(a.cfg.SessionAbsoluteTimeout), c.ua(), c.ip()))
	if errors.Is(err, pgx.ErrNoRows) {
		return "", Session{}, ErrNotFound
	}
	if err != nil {
		return "", Session{}, fmt.Errorf("auth: creating session: %w", err)
	}
	return token, s, nil
}

// Principal is who a request acts as: a user through a session, or through
// an API key with scopes.
type Principal struct {
	User    User
	Session *Session // set for cookie sessions
	APIKey  *APIKey  // set for API keys
}

// HasScope reports whether the principal may act with scope: sessions may do
// everything their user may; API keys only what their scopes list.
func (p *Principal) HasScope(scope string) bool {
	if p == nil {
		return false
	}
	if p.APIKey == nil {
		return p.Session != nil
	}
	for _, s := range p.APIKey.Scopes {
		if s == scope {
			return true
		}
	}
	return false
}

// ValidateSession resolves a session token into its session and user. It
// returns ErrInvalidToken for a malformed, unknown or revoked token and
// ErrTokenExpired once the idle or absolute timeout has passed (both checked
// against the database clock). A valid session's last_seen_at is written at
// most once per SessionRenewInterval, so validation is normally a single
// indexed read.
func (a *Auth) ValidateSession(ctx context.Context, db DB, token string) (*Principal, error) {
	hash, err := parseToken(token)
	if err != nil {
		return nil, err
	}
	var p Principal
	var expired, stale bool
	s, err := scanSession(db.QueryRow(ctx, a.sqlSession, hash, micros(a.cfg.SessionIdleTimeout), micros(a.cfg.SessionRenewInterval)),
		&p.User.Email, &p.User.EmailVerifiedAt, &p.User.TOTPEnabled, &p.User.CreatedAt, &expired, &stale)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: unknown session", ErrInvalidToken)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: validating session: %w", err)
	}
	if expired {
		return nil, ErrTokenExpired
	}
	if stale {
		// At most one writer wins per interval; losing the race is fine.
		// (On its own under REPEATABLE READ or SERIALIZABLE, losing it is
		// a serialization failure; run again, the update finds nothing.)
		err := pgdb.Retry(ctx, db, func() error {
			return db.QueryRow(ctx, `UPDATE `+a.sessions+` SET last_seen_at = now()
			WHERE id = $1 AND last_seen_at <= now() - $2 * interval '1 microsecond' RETURNING last_seen_at`,
				s.ID, micros(a.cfg.SessionRenewInterval)).Scan(&s.LastSeenAt)
		})
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("auth: renewing session: %w", err)
		}
	}
	p.User.ID = s.UserID
	p.Session = &s
	return &p, nil
}

// RotateSession replaces a valid session's token with a new one (same
// session, same expiry) and returns it; the old token stops working at once.
// Call it whenever the session's privileges change (enabling two-factor,
// gaining a role, re-authenticating for a sensitive action) so that a token
// captured before cannot ride the new privileges.
func (a *Auth) RotateSession(ctx context.Context, db DB, token string, c Client) (string, error) {
	old, err := parseToken(token)
	if err != nil {
		return "", err
	}
	next, hash := newToken()
	var id, userID string
	err = pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `UPDATE `+a.sessions+` SET token_hash = $2, last_seen_at = now()
			WHERE token_hash = $1 AND expires_at > now() AND last_seen_at > now() - $3 * interval '1 microsecond'
			RETURNING id::text, user_id::text`, old, hash, micros(a.cfg.SessionIdleTimeout)).Scan(&id, &userID)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrInvalidToken
		}
		if err != nil {
			return fmt.Errorf("auth: rotating session: %w", err)
		}
		return a.record(ctx, tx, EventSessionRotated, userID, c, map[string]any{"session_id": id})
	})
	if err != nil {
		return "", err
	}
	return next, nil
}

// Logout ends the session of token. An unknown or malformed token is
// ErrInvalidToken (the caller should clear the cookie either way).
func (a *Auth) Logout(ctx context.Context, db DB, token string, c Client) error {
	hash, err := parseToken(token)
	if err != nil {
		return err
	}
	return pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		var id, userID string
		err := tx.QueryRow(ctx, `DELETE FROM `+a.sessions+` WHERE token_hash = $1 RETURNING id::text, user_id::text`,
			hash).Scan(&id, &userID)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrInvalidToken
		}
		if err != nil {
			return fmt.Errorf("auth: logout: %w", err)
		}
		return a.record(ctx, tx, EventLogout, userID, c, map[string]any{"session_id": id})
	})
}

// Sessions lists a user's live sessions, newest first.
func (a *Auth) Sessions(ctx context.Context, db DB, userID string) ([]Session, error) {
	if !validUUID(userID) {
		return nil, ErrNotFound
	}
	rows, err := db.Query(ctx, `SELECT `+sessionCols+` FROM `+a.sessions+`
		WHERE user_id = $1 AND expires_at > now() AND last_seen_at > now() - $2 * interval '1 microsecond'
		ORDER BY created_at DESC, id`, userID, micros(a.cfg.SessionIdleTimeout))
	if err != nil {
		return nil, fmt.Errorf("auth: listing sessions: %w", err)
	}
	defer rows.Close()
	var out []Session
	for rows.Next() {
		s, err := scanSession(rows)
		if err != nil {
			return nil, fmt.Errorf("auth: listing sessions: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("auth: listing sessions: %w", err)
	}
	return out, nil
}

// RevokeSession ends one session of a user. A session id that does not
// exist or belongs to another user is ErrNotFound, and nothing changes.
func (a *Auth) RevokeSession(ctx context.Context, db DB, userID, sessionID string, c Client) error {
	if !validUUID(userID) || !validUUID(sessionID) {
		return ErrNotFound
	}
	return pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM `+a.sessions+` WHERE id = $1 AND user_id = $2`, sessionID, userID)
		if err != nil {
			return fmt.Errorf("auth: revoking session: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return a.record(ctx, tx, EventSessionRevoked, userID, c, map[string]any{"session_id": sessionID})
	})
}

// RevokeSessions ends every session of a user except keepSessionID ("" ends
// them all: "log out everywhere") and returns how many it ended.
func (a *Auth) RevokeSessions(ctx context.Context, db DB, userID, keepSessionID string, c Client) (int64, error) {
	if !validUUID(userID) || (keepSessionID != "" && !validUUID(keepSessionID)) {
		return 0, ErrNotFound
	}
	var n int64
	err := pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		var err error
		if n, err = a.revokeSessions(ctx, tx, userID, keepSessionID); err != nil || n == 0 {
			return err
		}
		return a.record(ctx, tx, EventSessionRevoked, userID, c, map[string]any{"count": n, "kept": keepSessionID})
	})
	return n, err
}

func (a *Auth) revokeSessions(ctx context.Context, db DB, userID, keepSessionID string) (int64, error) {
	var keep any
	if keepSessionID != "" {
		keep = keepSessionID
	}
	tag, err := db.Exec(ctx, `DELETE FROM `+a.sessions+` WHERE user_id = $1 AND ($2::uuid IS NULL OR id <> $2)`, userID, keep)
	if err != nil {
		return 0, fmt.Errorf("auth: revoking sessions: %w", err)
	}
	return tag.RowsAffected(), nil
}
