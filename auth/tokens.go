package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/justpg/justpg/internal/pgdb"
)

// Purpose says what a one-time token is for.
type Purpose string

// One-time token purposes.
const (
	PurposeVerifyEmail   Purpose = "verify_email"
	PurposeResetPassword Purpose = "reset_password"
)

// Message is a one-time token to deliver to a user. The application's Mailer
// turns it into an e-mail with a link such as
// https://example.com/reset?token=<Token>.
type Message struct {
	Purpose   Purpose
	UserID    string
	To        string // the normalised e-mail address
	Token     string // the secret; only its SHA-256 is stored
	ExpiresAt time.Time
}

// Mailer delivers one-time tokens. Implementations should send the message
// (or enqueue it, ideally in the same transaction: Send is called inside the
// transaction that stored the token, with that transaction as db) and return
// an error if they could not, which rolls the token back.
type Mailer interface {
	Send(ctx context.Context, db DB, m Message) error
}

// LogMailer "sends" messages by logging them, token included. It is for
// development only: anyone who can read the logs can take over accounts.
type LogMailer struct {
	Logger *slog.Logger
}

// Send implements Mailer.
func (l LogMailer) Send(ctx context.Context, _ DB, m Message) error {
	log := l.Logger
	if log == nil {
		log = slog.Default()
	}
	log.InfoContext(ctx, "auth: mail (LogMailer, development only)",
		"purpose", string(m.Purpose), "to", m.To, "token", m.Token, "expires_at", m.ExpiresAt)
	return nil
}

// RequestPasswordReset sends a reset token to the account with email, if
// there is one. It returns nil whether or not the account exists, so the
// answer reveals nothing; it counts against the client's rate limit. A new
// request invalidates the user's earlier unused reset tokens.
func (a *Auth) RequestPasswordReset(ctx context.Context, db DB, email string, c Client) error {
	if a.mail == nil {
		return ErrNoMailer // before the lookup: the answer must not depend on the account
	}
	if err := a.limitIP(ctx, db, c); err != nil {
		return err
	}
	u, err := a.UserByEmail(ctx, db, email)
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalidEmail) {
		return a.record(ctx, db, EventResetRequested, "", c, map[string]any{"known": false})
	}
	if err != nil {
		return err
	}
	return a.issue(ctx, db, u, PurposeResetPassword, a.cfg.ResetTokenTTL, c)
}

// RequestEmailVerification sends a verification token for the user's
// current address. A new request invalidates earlier unused ones.
func (a *Auth) RequestEmailVerification(ctx context.Context, db DB, userID string, c Client) error {
	u, err := a.User(ctx, db, userID)
	if err != nil {
		return err
	}
	return a.issue(ctx, db, u, PurposeVerifyEmail, a.cfg.VerifyTokenTTL, c)
}

func (a *Auth) issue(ctx context.Context, db DB, u User, p Purpose, ttl time.Duration, c Client) error {
	if a.mail == nil {
		return ErrNoMailer
	}
	token, hash := newToken()
	return pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE `+a.tokens+` SET used_at = now()
			WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL`, u.ID, string(p)); err != nil {
			return fmt.Errorf("auth: invalidating earlier tokens: %w", err)
		}
		var exp time.Time
		if err := tx.QueryRow(ctx, `INSERT INTO `+a.tokens+` (user_id, purpose, token_hash, email, expires_at)
			VALUES ($1, $2, $3, $4, now() + $5 * interval '1 microsecond') RETURNING expires_at`,
			u.ID, string(p), hash, u.Email, micros(ttl)).Scan(&exp); err != nil {
			return fmt.Errorf("auth: storing token: %w", err)
		}
		if p == PurposeResetPassword {
			if err := a.record(ctx, tx, EventResetRequested, u.ID, c, map[string]any{"known": true}); err != nil {
				return err
			}
		}
		if err := a.mail.Send(ctx, tx, Message{Purpose: p, UserID: u.ID, To: u.Email, Token: token, ExpiresAt: exp}); err != nil {
			return fmt.Errorf("auth: sending %s: %w", p, err)
		}
		return nil
	})
}

// consume marks a token used, atomically: of two concurrent uses exactly
// one gets the row. It tells unknown, used and expired tokens apart.
func (a *Auth) consume(ctx context.Context, tx DB, token string, p Purpose) (userID, email string, err error) {
	hash, err := parseToken(token)
	if err != nil {
		return "", "", err
	}
	err = tx.QueryRow(ctx, `UPDATE `+a.tokens+` SET used_at = now()
		WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()
		RETURNING user_id::text, email`, hash, string(p)).Scan(&userID, &email)
	if err == nil {
		return userID, email, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return "", "", fmt.Errorf("auth: consuming token: %w", err)
	}
	var used, expired bool
	err = tx.QueryRow(ctx, `SELECT used_at IS NOT NULL, expires_at <= now() FROM `+a.tokens+`
		WHERE token_hash = $1 AND purpose = $2`, hash, string(p)).Scan(&used, &expired)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", "", ErrInvalidToken
	case err != nil:
		return "", "", fmt.Errorf("auth: consuming token: %w", err)
	case used:
		return "", "", ErrTokenUsed
	default:
		return "", "", ErrTokenExpired
	}
}

// ResetPassword sets a new password with a reset token. The password is
// checked first (ErrWeakPassword leaves the token usable); then, in one
// transaction, the token is consumed (ErrInvalidToken, ErrTokenUsed,
// ErrTokenExpired), the password stored, the lock-out cleared and every
// session of the user revoked. It returns the user's id.
func (a *Auth) ResetPassword(ctx context.Context, db DB, token, password string, c Client) (string, error) {
	hash, err := parseToken(token)
	if err != nil {
		return "", err
	}
	// Look before hashing: an unknown, used or expired token costs no
	// argon2id work (nobody may make the server hash for free), and the
	// policy is checked against the account's e-mail before the token is
	// burnt. The consumption below still decides races.
	var email string
	var used, expired bool
	err = db.QueryRow(ctx, `SELECT email, used_at IS NOT NULL, expires_at <= now() FROM `+a.tokens+`
		WHERE token_hash = $1 AND purpose = 'reset_password'`, hash).Scan(&email, &used, &expired)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", ErrInvalidToken
	case err != nil:
		return "", fmt.Errorf("auth: reset: %w", err)
	case used:
		return "", ErrTokenUsed
	case expired:
		return "", ErrTokenExpired
	}
	if err := a.CheckPassword(password, email); err != nil {
		return "", err
	}
	pw, _ := preparePassword(password)
	encoded, err := a.hash.Hash(ctx, pw)
	if err != nil {
		return "", err
	}
	var userID string
	err = pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		var err error
		if userID, _, err = a.consume(ctx, tx, token, PurposeResetPassword); err != nil {
			return err
		}
		if err := a.setPassword(ctx, tx, userID, encoded); err != nil {
			return err
		}
		n, err := a.revokeSessions(ctx, tx, userID, "")
		if err != nil {
			return err
		}
		return a.record(ctx, tx, EventPasswordReset, userID, c, map[string]any{"sessions_revoked": n})
	})
	if err != nil {
		return "", err
	}
	return userID, nil
}

// VerifyEmail consumes a verification token and marks the address
// verified. A token issued for an address the user no longer has is
// ErrInvalidToken. It returns the user's id.
func (a *Auth) VerifyEmail(ctx context.Context, db DB, token string, c Client) (string, error) {
	var userID string
	err := pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		id, email, err := a.consume(ctx, tx, token, PurposeVerifyEmail)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE `+a.users+` SET email_verified_at = COALESCE(email_verified_at, now()),
			updated_at = now() WHERE id = $1 AND email = $2`, id, email)
		if err != nil {
			return fmt.Errorf("auth: verifying e-mail: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return ErrInvalidToken
		}
		userID = id
		return a.record(ctx, tx, EventEmailVerified, id, c, map[string]any{"email": email})
	})
	if err != nil {
		return "", err
	}
	return userID, nil
}
