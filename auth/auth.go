package auth

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/justpg/justpg/internal/ident"
	"github.com/justpg/justpg/internal/migrate"
	"github.com/justpg/justpg/internal/pgdb"
)

// DB runs statements: a *pgxpool.Pool, *pgxpool.Conn, *pgx.Conn or pgx.Tx.
// Every operation takes one, so callers can make auth writes part of their
// own transaction.
type DB = pgdb.DB

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the package's migration files (NNN_name.sql at the
// root), for teams that apply migrations with their own tool.
func Migrations() fs.FS {
	return migrate.Sub(migrationFiles, "migrations")
}

// Migrate creates or upgrades the auth tables in the schema "justpg".
func Migrate(ctx context.Context, db DB) error {
	return MigrateSchema(ctx, db, migrate.DefaultSchema)
}

// MigrateSchema creates or upgrades the auth tables in schema.
func MigrateSchema(ctx context.Context, db DB, schema string) error {
	return migrate.Apply(ctx, db, schema, "auth", Migrations())
}

// Errors callers branch on with errors.Is.
var (
	// ErrInvalidCredentials is the one answer to a failed log-in: unknown
	// e-mail, wrong password, wrong second factor or a temporarily locked
	// account all look the same to the caller (and cost the same hashing).
	ErrInvalidCredentials = errors.New("auth: invalid e-mail or password")
	// ErrTOTPRequired means the password was right and the account has
	// two-factor authentication: ask for a code and call Login again with it.
	ErrTOTPRequired = errors.New("auth: a two-factor code is required")
	// ErrRateLimited means too many attempts came from one client address.
	ErrRateLimited = errors.New("auth: too many attempts, try again later")
	// ErrInvalidEmail means an e-mail address failed validation.
	ErrInvalidEmail = errors.New("auth: invalid e-mail address")
	// ErrEmailTaken means another account already uses the e-mail address.
	ErrEmailTaken = errors.New("auth: e-mail address already registered")
	// ErrWeakPassword is wrapped by every password policy violation; see
	// PasswordError for the reason.
	ErrWeakPassword = errors.New("auth: password does not meet the policy")
	// ErrInvalidToken means a token is malformed, unknown, revoked or of
	// another kind. Expired and used tokens have their own errors.
	ErrInvalidToken = errors.New("auth: invalid token")
	// ErrTokenExpired means a one-time token or session has expired.
	ErrTokenExpired = errors.New("auth: token expired")
	// ErrTokenUsed means a one-time token was already consumed (or replaced
	// by a later request).
	ErrTokenUsed = errors.New("auth: token already used")
	// ErrNotFound means the user, session or key does not exist or does not
	// belong to the given user.
	ErrNotFound = errors.New("auth: not found")
	// ErrTOTPNotEnrolled means the user has not begun (or not confirmed)
	// two-factor enrolment.
	ErrTOTPNotEnrolled = errors.New("auth: two-factor authentication is not set up")
	// ErrTOTPAlreadyEnabled means two-factor authentication is already on.
	ErrTOTPAlreadyEnabled = errors.New("auth: two-factor authentication is already enabled")
	// ErrInvalidCode means a TOTP or recovery code was wrong or already used.
	ErrInvalidCode = errors.New("auth: invalid or already used code")
	// ErrInvalidScope means a scope name is empty, too long or has
	// characters outside [a-z0-9:._-].
	ErrInvalidScope = errors.New("auth: invalid scope")
	// ErrNoMailer means a verification or reset token was requested but
	// Config.Mailer is nil.
	ErrNoMailer = errors.New("auth: no Mailer configured")
	// ErrInvalidInput means another argument (a name, a limit) is invalid.
	ErrInvalidInput = errors.New("auth: invalid input")
)

// Config configures an Auth. The zero value is usable: every zero field
// means the documented default.
type Config struct {
	// Schema holds the auth tables (default "justpg"); migrate it with
	// MigrateSchema.
	Schema string

	// Hasher hashes and verifies passwords (default: NewArgon2id with
	// DefaultArgon2Params, i.e. OWASP's argon2id parameters).
	Hasher Hasher
	// MinPasswordLength is the minimum number of characters (default 8,
	// NIST SP 800-63B's floor for passwords used with a second factor).
	// Passwords may be up to MaxPasswordBytes long.
	MinPasswordLength int
	// CommonPasswords reports whether a (lower-cased) password is too common
	// to accept (default: the embedded list of the 10,000 most common).
	CommonPasswords func(lower string) bool

	// SessionIdleTimeout ends a session not used for this long (default 12h).
	SessionIdleTimeout time.Duration
	// SessionAbsoluteTimeout ends a session this long after log-in whatever
	// its use (default 7 days).
	SessionAbsoluteTimeout time.Duration
	// SessionRenewInterval is how stale last_seen_at may get before a
	// validation writes it again (default 1 minute): a busy session costs
	// one write per interval, not one per request.
	SessionRenewInterval time.Duration

	// ResetTokenTTL is the life of a password-reset token (default 30m).
	ResetTokenTTL time.Duration
	// VerifyTokenTTL is the life of an e-mail verification token (default 24h).
	VerifyTokenTTL time.Duration

	// LockoutThreshold is the number of consecutive failed log-ins after
	// which an account is locked for LockoutBase, doubling with each
	// further failure up to LockoutMax (defaults 5, 30s, 15m). A lock always
	// ends; a successful log-in or password reset clears the count.
	LockoutThreshold int
	// LockoutBase is the first lock's length (default 30s).
	LockoutBase time.Duration
	// LockoutMax caps a lock's length (default 15m).
	LockoutMax time.Duration
	// IPLimit is how many log-in, sign-up and reset requests one client
	// address may make per IPWindow (defaults 30 per minute). A negative
	// IPLimit disables the per-address limit.
	IPLimit int
	// IPWindow is the per-address rate-limit window (default 1 minute).
	IPWindow time.Duration

	// APIKeyPrefix starts every API key (default "jpk"), so secret scanners
	// and people can recognise one; letters and digits only.
	APIKeyPrefix string
	// APIKeyTouchInterval is how stale an API key's last_used_at may get
	// before a use writes it again (default 1 minute).
	APIKeyTouchInterval time.Duration

	// TOTPIssuer names the service in authenticator apps (default "justpg").
	TOTPIssuer string

	// Mailer sends verification and reset links. Without one, requesting
	// them fails with ErrNoMailer (rather than dropping tokens silently or
	// writing them to production logs); use LogMailer in development.
	Mailer Mailer

	// CookieName is the session cookie's name (default "__Host-session").
	// The __Host- prefix makes browsers refuse the cookie unless it is
	// Secure, host-only and for path "/".
	CookieName string
	// InsecureCookie drops the Secure attribute (and requires a CookieName
	// without the __Host- prefix). Only for plain-HTTP local development.
	InsecureCookie bool

	// Logger receives errors the middleware cannot return (default: discard).
	Logger *slog.Logger
}

// Auth is the entry point: users, sessions, tokens, keys, second factors
// and the HTTP middleware. It is safe for concurrent use.
type Auth struct {
	db    DB
	cfg   Config
	hash  Hasher
	dummy string // hash of a random password: verified for unknown users
	mail  Mailer
	log   *slog.Logger

	users, sessions, tokens, keys, recovery, limits, audit string // qualified tables

	sqlSession, sqlAPIKey, sqlLogin string // hot queries, built once
}

// New validates cfg, fills in defaults and returns an Auth. db (normally the
// application's pool) is what the HTTP middleware uses to resolve sessions and
// API keys; every other operation takes its DB as an argument. New does not
// touch the database: run Migrate first.
func New(db DB, cfg Config) (*Auth, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: nil DB", ErrInvalidInput)
	}
	if cfg.Schema == "" {
		cfg.Schema = migrate.DefaultSchema
	}
	q := func(t string) (string, error) { return ident.Quote(cfg.Schema, t) }
	a := &Auth{db: db}
	var err error
	for _, t := range []struct {
		dst  *string
		name string
	}{
		{&a.users, "auth_users"}, {&a.sessions, "auth_sessions"}, {&a.tokens, "auth_tokens"},
		{&a.keys, "auth_api_keys"}, {&a.recovery, "auth_recovery_codes"},
		{&a.limits, "auth_rate_limits"}, {&a.audit, "auth_audit"},
	} {
		if *t.dst, err = q(t.name); err != nil {
			return nil, fmt.Errorf("auth: schema: %w", err)
		}
	}
	a.buildQueries()
	neg := func(name string, d time.Duration) error {
		if d < 0 {
			return fmt.Errorf("%w: %s is negative", ErrInvalidInput, name)
		}
		return nil
	}
	for name, d := range map[string]time.Duration{
		"SessionIdleTimeout": cfg.SessionIdleTimeout, "SessionAbsoluteTimeout": cfg.SessionAbsoluteTimeout,
		"SessionRenewInterval": cfg.SessionRenewInterval, "ResetTokenTTL": cfg.ResetTokenTTL,
		"VerifyTokenTTL": cfg.VerifyTokenTTL, "LockoutBase": cfg.LockoutBase, "LockoutMax": cfg.LockoutMax,
		"IPWindow": cfg.IPWindow, "APIKeyTouchInterval": cfg.APIKeyTouchInterval,
	} {
		if err := neg(name, d); err != nil {
			return nil, err
		}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.SessionIdleTimeout, 12*time.Hour)
	def(&cfg.SessionAbsoluteTimeout, 7*24*time.Hour)
	def(&cfg.SessionRenewInterval, time.Minute)
	def(&cfg.ResetTokenTTL, 30*time.Minute)
	def(&cfg.VerifyTokenTTL, 24*time.Hour)
	def(&cfg.LockoutBase, 30*time.Second)
	def(&cfg.LockoutMax, 15*time.Minute)
	def(&cfg.IPWindow, time.Minute)
	def(&cfg.APIKeyTouchInterval, time.Minute)
	if cfg.SessionIdleTimeout > cfg.SessionAbsoluteTimeout {
		return nil, fmt.Errorf("%w: SessionIdleTimeout exceeds SessionAbsoluteTimeout", ErrInvalidInput)
	}
	if cfg.LockoutMax < cfg.LockoutBase {
		return nil, fmt.Errorf("%w: LockoutMax is shorter than LockoutBase", ErrInvalidInput)
	}
	switch {
	case cfg.MinPasswordLength == 0:
		cfg.MinPasswordLength = 8
	case cfg.MinPasswordLength < 0 || cfg.MinPasswordLength > 64:
		return nil, fmt.Errorf("%w: MinPasswordLength must be between 1 and 64", ErrInvalidInput)
	}
	if cfg.CommonPasswords == nil {
		cfg.CommonPasswords = IsCommonPassword
	}
	switch {
	case cfg.LockoutThreshold == 0:
		cfg.LockoutThreshold = 5
	case cfg.LockoutThreshold < 0:
		return nil, fmt.Errorf("%w: LockoutThreshold is negative", ErrInvalidInput)
	}
	if cfg.IPLimit == 0 {
		cfg.IPLimit = 30
	}
	if cfg.APIKeyPrefix == "" {
		cfg.APIKeyPrefix = "jpk"
	}
	for _, r := range cfg.APIKeyPrefix {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') || len(cfg.APIKeyPrefix) > 16 {
			return nil, fmt.Errorf("%w: APIKeyPrefix must be 1-16 letters or digits", ErrInvalidInput)
		}
	}
	if cfg.TOTPIssuer == "" {
		cfg.TOTPIssuer = "justpg"
	}
	if cfg.CookieName == "" {
		cfg.CookieName = "__Host-session"
	}
	if cfg.InsecureCookie && strings.HasPrefix(cfg.CookieName, "__Host-") {
		return nil, fmt.Errorf("%w: a __Host- cookie must be Secure; choose another CookieName with InsecureCookie", ErrInvalidInput)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Hasher == nil {
		h, err := NewArgon2id(DefaultArgon2Params)
		if err != nil {
			return nil, err
		}
		cfg.Hasher = h
	}
	a.cfg, a.hash, a.mail, a.log = cfg, cfg.Hasher, cfg.Mailer, cfg.Logger
	if a.dummy, err = a.hash.Hash(context.Background(), randomBytes(32)); err != nil {
		return nil, fmt.Errorf("auth: preparing the dummy hash: %w", err)
	}
	return a, nil
}

// Config returns the configuration in force, defaults filled in.
func (a *Auth) Config() Config { return a.cfg }

// Client describes where a request comes from, for sessions, rate limits and
// the audit log. Both fields are optional.
type Client struct {
	// IP is the client address (invalid = unknown; no per-IP limit).
	IP netip.Addr
	// UserAgent is the User-Agent header, truncated to 512 bytes.
	UserAgent string
}

func (c Client) ip() any {
	if !c.IP.IsValid() {
		return nil
	}
	// inet has no zone ("fe80::1%eth0"): the address is stored without it.
	return c.IP.Unmap().WithZone("").String()
}

func (c Client) ua() string {
	ua := strings.ToValidUTF8(strings.ReplaceAll(c.UserAgent, "\x00", ""), "")
	if len(ua) > 512 {
		ua = strings.ToValidUTF8(ua[:512], "")
	}
	return ua
}

// buildQueries prepares the text of the hot queries (the ones every request
// or log-in runs; tests EXPLAIN them to prove they use their indexes).
func (a *Auth) buildQueries() {
	a.sqlSession = `SELECT s.id::text, s.user_id::text, s.created_at, s.last_seen_at, s.expires_at,
			s.user_agent, COALESCE(host(s.ip), ''),
			u.email, u.email_verified_at, u.totp_enabled_at IS NOT NULL, u.created_at,
			s.expires_at <= now() OR s.last_seen_at <= now() - $2 * interval '1 microsecond',
			s.last_seen_at <= now() - $3 * interval '1 microsecond'
		FROM ` + a.sessions + ` s JOIN ` + a.users + ` u ON u.id = s.user_id
		WHERE s.token_hash = $1`
	a.sqlAPIKey = `SELECT k.id::text, k.user_id::text, k.name, k.hint, k.scopes, k.created_at,
			k.expires_at, k.revoked_at, k.last_used_at,
			u.email, u.email_verified_at, u.totp_enabled_at IS NOT NULL, u.created_at,
			COALESCE(k.expires_at <= now(), false),
			COALESCE(k.last_used_at <= now() - $2 * interval '1 microsecond', true)
		FROM ` + a.keys + ` k JOIN ` + a.users + ` u ON u.id = k.user_id
		WHERE k.key_hash = $1`
	a.sqlLogin = `SELECT ` + userCols + `, password_hash, COALESCE(locked_until > now(), false),
			CASE WHEN totp_enabled_at IS NOT NULL THEN totp_secret END, totp_last_step
		FROM ` + a.users + ` WHERE ` + tenantKey + ` = ` + currentTenant + ` AND email = $1`
}
