// Package auth keeps accounts, sessions and tokens in PostgreSQL: sign-up,
// log-in, server-side sessions, e-mail verification, password reset, API
// keys and TOTP two-factor authentication, safe by default.
package auth
