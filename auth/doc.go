// Package auth keeps accounts, sessions and tokens in PostgreSQL — sign-up,
// log-in, server-side sessions, e-mail verification, password reset, API
// keys, TOTP two-factor authentication and an audit log — with the defaults
// an auditor expects (OWASP cheat sheets, ASVS, NIST SP 800-63B). It
// replaces a hosted identity service such as Auth0 for applications that
// already run PostgreSQL.
//
// # Setting up
//
//	if err := auth.Migrate(ctx, pool); err != nil { ... } // tables in schema "justpg"
//	a, err := auth.New(pool, auth.Config{Mailer: myMailer})
//	http.ListenAndServe(addr, auth.Protect(a.Middleware(mux)))
//
// Every operation takes a DB — the pool, a connection or the caller's own
// pgx.Tx — so sign-up can commit together with the application's own rows.
// The zero Config is safe; see its fields for the defaults.
//
// # Passwords
//
// Passwords are hashed with argon2id (golang.org/x/crypto/argon2) at OWASP's
// parameters (19 MiB, 2 passes, 1 lane) into a self-describing PHC string
// ("$argon2id$v=19$m=19456,t=2,p=1$salt$hash"). When the parameters change,
// each user's hash is replaced at their next successful log-in. At most
// GOMAXPROCS hashes run at once, so a burst of log-ins cannot exhaust
// memory; waiting callers give up with their context.
//
// The policy follows NIST SP 800-63B: a minimum length (8 by default), no
// composition rules, up to MaxPasswordBytes (1 KiB) accepted, Unicode
// normalised with NFKC, and a check against the 10,000 most common
// passwords (embedded; from zxcvbn's frequency list, see gen_common.go) and
// the user's own e-mail address.
//
// # Log-in without account enumeration
//
// Login answers ErrInvalidCredentials for an unknown e-mail, a wrong
// password and a locked account alike, after exactly one password
// verification in each case (unknown e-mails are checked against a dummy
// hash), so neither the answer nor the hashing time tells whether an
// account exists. Consecutive failures lock the account with exponential
// back-off (LockoutThreshold, LockoutBase doubling to LockoutMax); a lock
// always ends and a password reset clears it, so an attacker cannot lock a
// user out for good. Each client address (IPv6: each /64) gets IPLimit
// log-in, sign-up and reset attempts per IPWindow. Both counters live in
// PostgreSQL and so hold across application instances. SignUp does report
// ErrEmailTaken: applications that must hide even that should answer
// "check your mail" and send a reset link to the existing account instead.
//
// # Sessions
//
// A session token is 256 random bits (43 characters of URL-safe base64);
// only its SHA-256 is stored. Sessions end after SessionIdleTimeout without
// use and SessionAbsoluteTimeout after log-in, checked against the database
// clock. Validation is one indexed read that joins the user; last_seen_at is
// written at most once per SessionRenewInterval. Every log-in creates a new
// session with a new token; RotateSession issues a new token for the same
// session when its privileges change. Users can list their sessions
// (created, last seen, user agent, address) and revoke one, all, or all but
// the current one; a password change revokes the others and a reset revokes
// all. Revocation is effective on the next request.
//
// # One-time tokens
//
// E-mail verification and password-reset tokens are random, stored hashed,
// expire quickly (ResetTokenTTL 30 minutes, VerifyTokenTTL 24 hours) and are
// consumed with a single UPDATE ... WHERE used_at IS NULL RETURNING, so of
// two concurrent uses exactly one wins. A new request invalidates the
// earlier tokens. Delivery is the application's: a Mailer is called inside
// the transaction that stored the token (LogMailer logs it, for development).
// RequestPasswordReset answers the same whether or not the account exists.
//
// # API keys
//
// CreateAPIKey returns "<prefix>_<43 characters>" once; only its SHA-256 is
// stored, with a hint for lists, scopes, an optional expiry, revocation and
// last-used tracking (written at most once per APIKeyTouchInterval).
//
// # Two-factor authentication
//
// BeginTOTP and EnableTOTP enrol an authenticator app (RFC 6238 via
// github.com/pquerna/otp: SHA-1, 6 digits, 30 s, ±1 step); enabling returns
// RecoveryCodeCount single-use recovery codes, stored hashed. A code's time
// step is recorded when used, so a code cannot be replayed, nor an earlier
// one used after it. Login then answers ErrTOTPRequired until Credentials
// carries a code; wrong codes count as failed log-ins.
//
// # HTTP
//
// Middleware resolves "Authorization: Bearer <API key>" or the session
// cookie into a Principal in the request context (PrincipalFrom).
// RequireUser and RequireScope guard handlers. Protect applies Go's
// http.CrossOriginProtection against cross-site request forgery. The cookie
// is "__Host-session", HttpOnly, Secure, SameSite=Lax (SetSessionCookie).
// Behind a reverse proxy, set r.RemoteAddr from the trusted header before
// the middleware: the package never trusts X-Forwarded-For itself.
//
// # Audit and clean-up
//
// Security events (sign-up, log-in success and failure, lock, reset, session
// and key revocation, 2FA changes, rate limiting, account deletion) are
// written to an audit table with time, user, address and user agent, in the
// same transaction as the change; AuditLog reads them. Cleanup deletes expired sessions and
// tokens in batches; run it periodically. Audit rows are kept until the
// application deletes them.
//
// # Tenancy
//
// The tables that hold per-user data carry tenant_id, stamped from the
// app.tenant_id setting, and e-mail addresses are unique per tenant, so
// row-level security policies (see the tenancy package) isolate tenants:
// run the operations in a transaction scoped to the tenant, and resolve
// requests with ScopedMiddleware, which looks credentials up in that
// transaction (a session of another tenant is then unknown). The rate-limit
// counters (auth_rate_limits) are keyed by client address and are not tenant
// data.
//
// # Limits
//
// TOTP secrets are stored as they are (encrypt the database or its disk if
// that matters to you); there is no WebAuthn, OAuth/OIDC login or e-mail
// change flow; the Mailer is the application's to implement. Whether an
// unverified address may log in is the application's decision
// (User.EmailVerifiedAt).
package auth
