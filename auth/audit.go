package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"
)

// Event names a security event in the audit log.
type Event string

// Events recorded in the audit log.
const (
	EventSignUp          Event = "signup"
	EventLogin           Event = "login"
	EventLoginFailed     Event = "login_failed"
	EventLocked          Event = "account_locked"
	EventLogout          Event = "logout"
	EventSessionRevoked  Event = "session_revoked"
	EventSessionRotated  Event = "session_rotated"
	EventPasswordChanged Event = "password_changed"
	EventResetRequested  Event = "password_reset_requested"
	EventPasswordReset   Event = "password_reset"
	EventEmailVerified   Event = "email_verified"
	EventAPIKeyCreated   Event = "api_key_created"
	EventAPIKeyRevoked   Event = "api_key_revoked"
	EventTOTPEnabled     Event = "totp_enabled"
	EventTOTPDisabled    Event = "totp_disabled"
	EventRecoveryUsed    Event = "recovery_code_used"
	EventRateLimited     Event = "rate_limited"
	EventUserDeleted     Event = "user_deleted"
)

// AuditEntry is one row of the audit log.
type AuditEntry struct {
	ID        int64
	At        time.Time
	Event     Event
	UserID    string // empty when no account was identified
	IP        netip.Addr
	UserAgent string
	Detail    map[string]any
}

func (a *Auth) record(ctx context.Context, db DB, ev Event, userID string, c Client, detail map[string]any) error {
	if detail == nil {
		detail = map[string]any{}
	}
	// The JSON text, not the map: pgx can encode a map only for a parameter
	// it knows to be json, and in its exec and simple-protocol modes (which
	// PgBouncer users configure) it does not ask.
	js, err := json.Marshal(detail)
	if err != nil {
		return fmt.Errorf("auth: writing the audit log: %w", err)
	}
	var uid any
	if userID != "" {
		uid = userID
	}
	if _, err := db.Exec(ctx, `INSERT INTO `+a.audit+` (event, user_id, ip, user_agent, detail)
		VALUES ($1, $2, $3, $4, $5)`, string(ev), uid, c.ip(), c.ua(), string(js)); err != nil {
		return fmt.Errorf("auth: writing the audit log: %w", err)
	}
	return nil
}

// AuditLog returns the newest limit (1-1000) audit entries of a user, newest
// first. userID "" lists events of every user, including those where no
// account was identified (failed log-ins for unknown e-mails).
func (a *Auth) AuditLog(ctx context.Context, db DB, userID string, limit int) ([]AuditEntry, error) {
	if limit < 1 || limit > 1000 {
		return nil, fmt.Errorf("%w: limit must be 1-1000", ErrInvalidInput)
	}
	var uid any
	if userID != "" {
		if !validUUID(userID) {
			return nil, ErrNotFound
		}
		uid = userID
	}
	rows, err := db.Query(ctx, `SELECT id, at, event, COALESCE(user_id::text, ''), COALESCE(host(ip), ''), user_agent, detail
		FROM `+a.audit+` WHERE ($1::uuid IS NULL OR user_id = $1) ORDER BY at DESC, id DESC LIMIT $2`, uid, limit)
	if err != nil {
		return nil, fmt.Errorf("auth: reading the audit log: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		var ip string
		if err := rows.Scan(&e.ID, &e.At, &e.Event, &e.UserID, &ip, &e.UserAgent, &e.Detail); err != nil {
			return nil, fmt.Errorf("auth: reading the audit log: %w", err)
		}
		e.IP, _ = netip.ParseAddr(ip)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("auth: reading the audit log: %w", err)
	}
	return out, nil
}

// validUUID reports whether s is a UUID in canonical text form, so that a
// malformed id is ErrNotFound rather than a database error.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F') {
				return false
			}
		}
	}
	return true
}
