package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/justpg/justpg/internal/pgdb"
)

// RecoveryCodeCount is how many recovery codes EnableTOTP issues.
const RecoveryCodeCount = 10

const totpPeriod = 30

var totpOpts = totp.ValidateOpts{Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// TOTPSetup is what a user needs to add the account to an authenticator
// app: show URL as a QR code, or Secret for typing in.
type TOTPSetup struct {
	Secret string
	URL    string
}

// BeginTOTP creates a new (not yet active) TOTP secret for a user. It
// becomes active when EnableTOTP receives a valid code from it; calling
// BeginTOTP again replaces a pending secret.
func (a *Auth) BeginTOTP(ctx context.Context, db DB, userID string) (TOTPSetup, error) {
	u, err := a.User(ctx, db, userID)
	if err != nil {
		return TOTPSetup{}, err
	}
	if u.TOTPEnabled {
		return TOTPSetup{}, ErrTOTPAlreadyEnabled
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: a.cfg.TOTPIssuer, AccountName: u.Email, Period: totpPeriod,
		SecretSize: 20, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return TOTPSetup{}, fmt.Errorf("auth: generating TOTP secret: %w", err)
	}
	tag, err := db.Exec(ctx, `UPDATE `+a.users+` SET totp_secret = $2, totp_last_step = NULL, updated_at = now()
		WHERE id = $1 AND totp_enabled_at IS NULL`, userID, key.Secret())
	if err != nil {
		return TOTPSetup{}, fmt.Errorf("auth: storing TOTP secret: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return TOTPSetup{}, ErrTOTPAlreadyEnabled
	}
	return TOTPSetup{Secret: key.Secret(), URL: key.URL()}, nil
}

// EnableTOTP activates the pending secret once the user proves it with a
// current code (ErrInvalidCode otherwise), and returns RecoveryCodeCount
// single-use recovery codes, shown once (only their hashes are stored).
// The caller should then RotateSession: the session's privileges changed.
func (a *Auth) EnableTOTP(ctx context.Context, db DB, userID, code string, c Client) ([]string, error) {
	if !validUUID(userID) {
		return nil, ErrNotFound
	}
	var codes []string
	err := pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		var secret *string
		var enabled bool
		err := tx.QueryRow(ctx, `SELECT totp_secret, totp_enabled_at IS NOT NULL FROM `+a.users+` WHERE id = $1 FOR UPDATE`,
			userID).Scan(&secret, &enabled)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return ErrNotFound
		case err != nil:
			return fmt.Errorf("auth: enabling TOTP: %w", err)
		case enabled:
			return ErrTOTPAlreadyEnabled
		case secret == nil:
			return ErrTOTPNotEnrolled
		}
		if err := a.useTOTPCode(ctx, tx, userID, *secret, code, time.Now()); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE `+a.users+` SET totp_enabled_at = now(), updated_at = now() WHERE id = $1`, userID); err != nil {
			return fmt.Errorf("auth: enabling TOTP: %w", err)
		}
		if codes, err = a.newRecoveryCodes(ctx, tx, userID); err != nil {
			return err
		}
		return a.record(ctx, tx, EventTOTPEnabled, userID, c, nil)
	})
	if err != nil {
		return nil, err
	}
	return codes, nil
}

// DisableTOTP turns two-factor authentication off and deletes the secret
// and recovery codes. Applications should ask for the password (or a code)
// before calling it.
func (a *Auth) DisableTOTP(ctx context.Context, db DB, userID string, c Client) error {
	if !validUUID(userID) {
		return ErrNotFound
	}
	return pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE `+a.users+` SET totp_secret = NULL, totp_enabled_at = NULL, totp_last_step = NULL,
			updated_at = now() WHERE id = $1 AND totp_enabled_at IS NOT NULL`, userID)
		if err != nil {
			return fmt.Errorf("auth: disabling TOTP: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return ErrTOTPNotEnrolled
		}
		if _, err := tx.Exec(ctx, `DELETE FROM `+a.recovery+` WHERE user_id = $1`, userID); err != nil {
			return fmt.Errorf("auth: disabling TOTP: %w", err)
		}
		return a.record(ctx, tx, EventTOTPDisabled, userID, c, nil)
	})
}

// RegenerateRecoveryCodes replaces a user's recovery codes with fresh ones.
func (a *Auth) RegenerateRecoveryCodes(ctx context.Context, db DB, userID string) ([]string, error) {
	u, err := a.User(ctx, db, userID)
	if err != nil {
		return nil, err
	}
	if !u.TOTPEnabled {
		return nil, ErrTOTPNotEnrolled
	}
	var codes []string
	err = pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		codes, err = a.newRecoveryCodes(ctx, tx, userID)
		return err
	})
	return codes, err
}

func (a *Auth) newRecoveryCodes(ctx context.Context, tx DB, userID string) ([]string, error) {
	if _, err := tx.Exec(ctx, `DELETE FROM `+a.recovery+` WHERE user_id = $1`, userID); err != nil {
		return nil, fmt.Errorf("auth: replacing recovery codes: %w", err)
	}
	codes := make([]string, RecoveryCodeCount)
	hashes := make([][]byte, RecoveryCodeCount)
	enc := base32.StdEncoding.WithPadding(base32.NoPadding)
	for i := range codes {
		raw := strings.ToLower(enc.EncodeToString(randomBytes(10))) // 80 bits, 16 characters
		codes[i] = raw[0:4] + "-" + raw[4:8] + "-" + raw[8:12] + "-" + raw[12:16]
		hashes[i] = recoveryHash(raw)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+a.recovery+` (user_id, code_hash) SELECT $1, pg_catalog.unnest($2::bytea[])`,
		userID, hashes); err != nil {
		return nil, fmt.Errorf("auth: storing recovery codes: %w", err)
	}
	return codes, nil
}

// recoveryHash hashes a normalised recovery code. A plain SHA-256 is enough:
// the codes carry 80 random bits, so there is nothing to brute-force offline.
func recoveryHash(normalised string) []byte {
	sum := sha256.Sum256([]byte("justpg-recovery\x00" + normalised))
	return sum[:]
}

func normaliseRecovery(code string) (string, bool) {
	var b strings.Builder
	for _, r := range strings.ToLower(code) {
		switch {
		case r == '-' || r == ' ':
		case r >= 'a' && r <= 'z' || r >= '2' && r <= '7':
			b.WriteRune(r)
		default:
			return "", false
		}
	}
	return b.String(), b.Len() == 16
}

// checkSecondFactor accepts a 6-digit TOTP code or a recovery code.
func (a *Auth) checkSecondFactor(ctx context.Context, tx DB, userID, secret, code string, c Client) (string, error) {
	code = strings.TrimSpace(code)
	if len(code) == 6 && strings.Trim(code, "0123456789") == "" {
		return "totp", a.useTOTPCode(ctx, tx, userID, secret, code, time.Now())
	}
	norm, ok := normaliseRecovery(code)
	if !ok {
		return "", ErrInvalidCode
	}
	tag, err := tx.Exec(ctx, `UPDATE `+a.recovery+` SET used_at = now()
		WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL`, userID, recoveryHash(norm))
	if err != nil {
		return "", fmt.Errorf("auth: checking recovery code: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return "", ErrInvalidCode
	}
	return "recovery_code", a.record(ctx, tx, EventRecoveryUsed, userID, c, nil)
}

// useTOTPCode accepts code if it is valid for the time step of now or one
// step either side, and only if that step is later than the last step this
// user has used: a code, once accepted, cannot be replayed, nor can an
// older one.
func (a *Auth) useTOTPCode(ctx context.Context, tx DB, userID, secret, code string, now time.Time) error {
	if len(code) != 6 {
		return ErrInvalidCode
	}
	cur := now.Unix() / totpPeriod
	matched := int64(-1)
	for _, step := range []int64{cur - 1, cur, cur + 1} {
		want, err := totp.GenerateCodeCustom(secret, time.Unix(step*totpPeriod, 0), totpOpts)
		if err != nil {
			return fmt.Errorf("auth: TOTP: %w", err)
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			matched = step
		}
	}
	if matched < 0 {
		return ErrInvalidCode
	}
	tag, err := tx.Exec(ctx, `UPDATE `+a.users+` SET totp_last_step = $2
		WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)`, userID, matched)
	if err != nil {
		return fmt.Errorf("auth: recording TOTP step: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrInvalidCode // replay of a step already used
	}
	return nil
}
