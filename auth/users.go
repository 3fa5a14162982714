package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/justpg/justpg/internal/pgdb"
)

// User is an account.
type User struct {
	ID              string
	Email           string // normalised
	EmailVerifiedAt *time.Time
	TOTPEnabled     bool
	CreatedAt       time.Time
}

// tenantKey is the expression the e-mail index leads with: accounts are
// unique per tenant, and a lookup sees the tenant of the transaction
// (app.tenant_id) or, outside any tenant, the accounts without one.
const (
	tenantKey     = `COALESCE(tenant_id, '00000000-0000-0000-0000-000000000000'::uuid)`
	currentTenant = `COALESCE(NULLIF(current_setting('app.tenant_id', true), '')::uuid, '00000000-0000-0000-0000-000000000000'::uuid)`
	userCols      = `id::text, email, email_verified_at, totp_enabled_at IS NOT NULL, created_at`
)

func scanUser(row pgx.Row) (User, error) {
	var u User
	err := row.Scan(&u.ID, &u.Email, &u.EmailVerifiedAt, &u.TOTPEnabled, &u.CreatedAt)
	return u, err
}

// SignUp creates an account. The e-mail is normalised (NormalizeEmail) and
// must be unused in the current tenant (ErrEmailTaken); the password must
// pass CheckPassword (ErrWeakPassword). Sign-ups count against the client's
// per-address rate limit. It does not log the user in: call Login, or
// CreateSession after verifying the e-mail, as the application prefers.
func (a *Auth) SignUp(ctx context.Context, db DB, email, password string, c Client) (User, error) {
	e, err := NormalizeEmail(email)
	if err != nil {
		return User{}, err
	}
	if err := a.CheckPassword(password, e); err != nil {
		return User{}, err
	}
	if err := a.limitIP(ctx, db, c); err != nil {
		return User{}, err
	}
	pw, _ := preparePassword(password)
	hash, err := a.hash.Hash(ctx, pw)
	if err != nil {
		return User{}, err
	}
	var u User
	err = pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		var err error
		u, err = scanUser(tx.QueryRow(ctx, `INSERT INTO `+a.users+` (email, password_hash) VALUES ($1, $2)
			RETURNING `+userCols, e, hash))
		if err != nil {
			return err
		}
		return a.record(ctx, tx, EventSignUp, u.ID, c, nil)
	})
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == "23505" {
		return User{}, ErrEmailTaken
	}
	if err != nil {
		return User{}, fmt.Errorf("auth: sign-up: %w", err)
	}
	return u, nil
}

// User returns the account with id (ErrNotFound if none).
func (a *Auth) User(ctx context.Context, db DB, id string) (User, error) {
	if !validUUID(id) {
		return User{}, ErrNotFound
	}
	u, err := scanUser(db.QueryRow(ctx, `SELECT `+userCols+` FROM `+a.users+` WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("auth: reading user: %w", err)
	}
	return u, nil
}

// UserByEmail returns the account with the e-mail address in the current
// tenant (ErrNotFound if none; ErrInvalidEmail if it is not an address).
func (a *Auth) UserByEmail(ctx context.Context, db DB, email string) (User, error) {
	e, err := NormalizeEmail(email)
	if err != nil {
		return User{}, err
	}
	u, err := scanUser(db.QueryRow(ctx, `SELECT `+userCols+` FROM `+a.users+`
		WHERE `+tenantKey+` = `+currentTenant+` AND email = $1`, e))
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, fmt.Errorf("auth: reading user: %w", err)
	}
	return u, nil
}

// Credentials is what a log-in form sends.
type Credentials struct {
	Email    string
	Password string
	// Code is a TOTP code or a recovery code, needed when the account has
	// two-factor authentication (Login returns ErrTOTPRequired without it).
	Code string
}

// LoginResult is a successful log-in: the new session and its token.
type LoginResult struct {
	User    User
	Session Session
	// Token is the session token. It is not stored anywhere (only its
	// SHA-256 is): hand it to the client, e.g. with SetSessionCookie.
	Token string
}

type loginRow struct {
	user       User
	hash       string
	locked     bool
	totpSecret *string
	lastStep   *int64
}

// Login checks credentials and starts a session.
//
// It does not reveal whether an account exists: an unknown e-mail, a
// malformed e-mail or password, a wrong password and a locked account all
// return ErrInvalidCredentials after exactly one password verification.
// Consecutive failures lock the account with exponential back-off (see
// Config.LockoutThreshold); a lock always ends, and a successful log-in or
// password reset clears the count. Every attempt counts against the
// client's address (ErrRateLimited, before any hashing).
//
// With two-factor authentication on, a right password without Code returns
// ErrTOTPRequired; a wrong code returns ErrInvalidCode and counts as a
// failure. When the stored hash's parameters differ from the Hasher's, the
// password is re-hashed transparently.
func (a *Auth) Login(ctx context.Context, db DB, cr Credentials, c Client) (LoginResult, error) {
	if err := a.limitIP(ctx, db, c); err != nil {
		return LoginResult{}, err
	}
	pw, pwErr := preparePassword(cr.Password)
	if pwErr != nil { // still do the work, on at most MaxPasswordBytes
		pw = []byte(cr.Password[:min(len(cr.Password), MaxPasswordBytes)])
	}
	email, emailErr := NormalizeEmail(cr.Email)
	var row loginRow
	found := false
	if emailErr == nil {
		err := db.QueryRow(ctx, a.sqlLogin, email).Scan(
			&row.user.ID, &row.user.Email, &row.user.EmailVerifiedAt, &row.user.TOTPEnabled, &row.user.CreatedAt,
			&row.hash, &row.locked, &row.totpSecret, &row.lastStep)
		switch {
		case err == nil:
			found = true
		case !errors.Is(err, pgx.ErrNoRows):
			return LoginResult{}, fmt.Errorf("auth: log-in: %w", err)
		}
	}
	encoded := a.dummy
	if found {
		encoded = row.hash
	}
	ok, rehash, err := a.hash.Verify(ctx, pw, encoded)
	if err != nil && !errors.Is(err, ErrMalformedHash) {
		return LoginResult{}, err
	}
	ok = ok && found && pwErr == nil && err == nil
	switch {
	case !found:
		if err := a.record(ctx, db, EventLoginFailed, "", c, map[string]any{"reason": "unknown_email"}); err != nil {
			return LoginResult{}, err
		}
		return LoginResult{}, ErrInvalidCredentials
	case row.locked:
		if err := a.record(ctx, db, EventLoginFailed, row.user.ID, c, map[string]any{"reason": "locked"}); err != nil {
			return LoginResult{}, err
		}
		return LoginResult{}, ErrInvalidCredentials
	case !ok:
		if err := a.countFailure(ctx, db, row.user.ID, c, "password"); err != nil {
			return LoginResult{}, err
		}
		return LoginResult{}, ErrInvalidCredentials
	}

	if row.totpSecret != nil && cr.Code == "" {
		return LoginResult{}, ErrTOTPRequired
	}
	var newHash any
	if rehash {
		h, err := a.hash.Hash(ctx, pw)
		if err != nil {
			return LoginResult{}, err
		}
		newHash = h
	}
	var res LoginResult
	err = pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		secondFactor := ""
		if row.totpSecret != nil {
			how, err := a.checkSecondFactor(ctx, tx, row.user.ID, *row.totpSecret, cr.Code, c)
			if err != nil {
				return err
			}
			secondFactor = how
		}
		// The re-hash replaces only the hash it was verified against: a
		// password changed meanwhile is never overwritten with the old one.
		if _, err := tx.Exec(ctx, `UPDATE `+a.users+` SET failed_logins = 0, locked_until = NULL,
				password_hash = CASE WHEN password_hash = $3 THEN COALESCE($2, password_hash) ELSE password_hash END,
				updated_at = now() WHERE id = $1`,
			row.user.ID, newHash, row.hash); err != nil {
			return fmt.Errorf("auth: log-in: %w", err)
		}
		token, sess, err := a.createSession(ctx, tx, row.user.ID, c)
		if err != nil {
			return err
		}
		detail := map[string]any{"session_id": sess.ID, "rehashed": rehash}
		if secondFactor != "" {
			detail["second_factor"] = secondFactor
		}
		if err := a.record(ctx, tx, EventLogin, row.user.ID, c, detail); err != nil {
			return err
		}
		res = LoginResult{User: row.user, Session: sess, Token: token}
		return nil
	})
	if errors.Is(err, ErrInvalidCode) {
		if err := a.countFailure(ctx, db, row.user.ID, c, "second_factor"); err != nil {
			return LoginResult{}, err
		}
		return LoginResult{}, ErrInvalidCode
	}
	if err != nil {
		return LoginResult{}, err
	}
	return res, nil
}

// countFailure adds a failed log-in to the account and locks it once the
// threshold is reached: LockoutBase, doubling per further failure, capped at
// LockoutMax.
func (a *Auth) countFailure(ctx context.Context, db DB, userID string, c Client, reason string) error {
	var failures int
	var locked bool
	err := pgdb.Retry(ctx, db, func() error {
		return db.QueryRow(ctx, `UPDATE `+a.users+` SET failed_logins = failed_logins + 1, updated_at = now(),
			locked_until = CASE WHEN failed_logins + 1 >= $2
				THEN now() + least($3::float8 * pg_catalog.power(2, least(failed_logins + 1 - $2, 40)), $4::float8) * interval '1 microsecond'
				ELSE locked_until END
		WHERE id = $1 RETURNING failed_logins, failed_logins >= $2`,
			userID, a.cfg.LockoutThreshold, micros(a.cfg.LockoutBase), micros(a.cfg.LockoutMax)).Scan(&failures, &locked)
	})
	if err != nil {
		return fmt.Errorf("auth: counting a failed log-in: %w", err)
	}
	if err := a.record(ctx, db, EventLoginFailed, userID, c, map[string]any{"reason": reason, "failures": failures}); err != nil {
		return err
	}
	if locked {
		return a.record(ctx, db, EventLocked, userID, c, map[string]any{"failures": failures})
	}
	return nil
}

// ChangePassword replaces a logged-in user's password after checking the
// current one (ErrInvalidCredentials if wrong, counted as a failed log-in,
// and while the account is locked).
// Every other session of the user is revoked, keepSessionID (the session
// making the change; "" for none) stays, and outstanding reset tokens are
// invalidated. A malformed user or session id is ErrNotFound.
func (a *Auth) ChangePassword(ctx context.Context, db DB, userID, current, next, keepSessionID string, c Client) error {
	if !validUUID(userID) || (keepSessionID != "" && !validUUID(keepSessionID)) {
		return ErrNotFound
	}
	var email, encoded string
	var locked bool
	err := db.QueryRow(ctx, `SELECT email, password_hash, COALESCE(locked_until > now(), false) FROM `+a.users+`
		WHERE id = $1`, userID).Scan(&email, &encoded, &locked)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("auth: change password: %w", err)
	}
	if err := a.CheckPassword(next, email); err != nil {
		return err
	}
	cur, curErr := preparePassword(current)
	if curErr != nil {
		cur = []byte(current[:min(len(current), MaxPasswordBytes)])
	}
	ok, _, err := a.hash.Verify(ctx, cur, encoded)
	if err != nil && !errors.Is(err, ErrMalformedHash) {
		return err
	}
	if locked {
		return ErrInvalidCredentials // guessing the password here is held back like log-in
	}
	if !ok || curErr != nil || err != nil {
		if err := a.countFailure(ctx, db, userID, c, "change_password"); err != nil {
			return err
		}
		return ErrInvalidCredentials
	}
	nextPW, _ := preparePassword(next)
	hash, err := a.hash.Hash(ctx, nextPW)
	if err != nil {
		return err
	}
	return pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		if err := a.setPassword(ctx, tx, userID, hash); err != nil {
			return err
		}
		n, err := a.revokeSessions(ctx, tx, userID, keepSessionID)
		if err != nil {
			return err
		}
		return a.record(ctx, tx, EventPasswordChanged, userID, c, map[string]any{"sessions_revoked": n})
	})
}

// setPassword stores a new hash, clears lock-out state and invalidates
// outstanding reset tokens.
func (a *Auth) setPassword(ctx context.Context, tx DB, userID, hash string) error {
	if _, err := tx.Exec(ctx, `UPDATE `+a.users+` SET password_hash = $2, failed_logins = 0, locked_until = NULL,
		updated_at = now() WHERE id = $1`, userID, hash); err != nil {
		return fmt.Errorf("auth: storing the password: %w", err)
	}
	if _, err := tx.Exec(ctx, `UPDATE `+a.tokens+` SET used_at = now()
		WHERE user_id = $1 AND purpose = 'reset_password' AND used_at IS NULL`, userID); err != nil {
		return fmt.Errorf("auth: invalidating reset tokens: %w", err)
	}
	return nil
}

// DeleteUser removes an account with its sessions, tokens, keys and codes;
// the audit log keeps its rows and records the deletion.
func (a *Auth) DeleteUser(ctx context.Context, db DB, userID string, c Client) error {
	if !validUUID(userID) {
		return ErrNotFound
	}
	return pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		var email string
		err := tx.QueryRow(ctx, `DELETE FROM `+a.users+` WHERE id = $1 RETURNING email`, userID).Scan(&email)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("auth: deleting user: %w", err)
		}
		return a.record(ctx, tx, EventUserDeleted, userID, c, nil)
	})
}
