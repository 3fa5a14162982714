package auth_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/auth"
)

func code(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	require.NoError(t, err)
	return c
}

func TestTOTPAndRecoveryCodes(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *auth.Config) { c.LockoutThreshold = 20 })
	u := e.signUp(t, "2fa@example.com")
	_, err := e.a.EnableTOTP(ctx, e.pool, u.ID, "123456", client)
	require.ErrorIs(t, err, auth.ErrTOTPNotEnrolled)

	setupInfo, err := e.a.BeginTOTP(ctx, e.pool, u.ID)
	require.NoError(t, err)
	assert.Contains(t, setupInfo.URL, "otpauth://totp/")
	assert.Contains(t, setupInfo.URL, "2fa@example.com")

	// Not active until confirmed: log-in needs no code yet.
	e.login(t, "2fa@example.com", goodPW)

	now := time.Now()
	wrong := code(t, setupInfo.Secret, now.Add(-10*time.Minute))
	_, err = e.a.EnableTOTP(ctx, e.pool, u.ID, wrong, client)
	require.ErrorIs(t, err, auth.ErrInvalidCode)
	recovery, err := e.a.EnableTOTP(ctx, e.pool, u.ID, code(t, setupInfo.Secret, time.Now()), client)
	require.NoError(t, err)
	require.Len(t, recovery, auth.RecoveryCodeCount)
	assert.Equal(t, 0, e.count(t, `SELECT count(*) FROM justpg.auth_recovery_codes WHERE position(convert_to($1, 'UTF8') in code_hash) > 0`, recovery[0]))
	_, err = e.a.BeginTOTP(ctx, e.pool, u.ID)
	require.ErrorIs(t, err, auth.ErrTOTPAlreadyEnabled)

	cr := auth.Credentials{Email: "2fa@example.com", Password: goodPW}
	_, err = e.a.Login(ctx, e.pool, cr, client)
	require.ErrorIs(t, err, auth.ErrTOTPRequired)
	// The wrong password still gets the generic answer, not a hint that
	// the account has 2FA.
	_, err = e.a.Login(ctx, e.pool, auth.Credentials{Email: "2fa@example.com", Password: "nope nope nope"}, client)
	require.ErrorIs(t, err, auth.ErrInvalidCredentials)

	// A code valid for no step near now.
	for i := 0; ; i++ {
		cr.Code = fmt.Sprintf("%06d", i)
		n := time.Now()
		if cr.Code != code(t, setupInfo.Secret, n) && cr.Code != code(t, setupInfo.Secret, n.Add(-30*time.Second)) &&
			cr.Code != code(t, setupInfo.Secret, n.Add(30*time.Second)) && cr.Code != code(t, setupInfo.Secret, n.Add(60*time.Second)) {
			break
		}
	}
	_, err = e.a.Login(ctx, e.pool, cr, client)
	require.ErrorIs(t, err, auth.ErrInvalidCode)

	// A current code works once; replaying it (or any earlier step) fails.
	cr.Code = code(t, setupInfo.Secret, time.Now().Add(30*time.Second))
	res, err := e.a.Login(ctx, e.pool, cr, client)
	require.NoError(t, err)
	assert.True(t, res.User.TOTPEnabled)
	_, err = e.a.Login(ctx, e.pool, cr, client)
	require.ErrorIs(t, err, auth.ErrInvalidCode, "replay refused")
	cr.Code = code(t, setupInfo.Secret, time.Now())
	_, err = e.a.Login(ctx, e.pool, cr, client)
	require.ErrorIs(t, err, auth.ErrInvalidCode, "an earlier step is refused too")

	// Recovery codes: any formatting, each once.
	cr.Code = "  " + recovery[3] + " "
	_, err = e.a.Login(ctx, e.pool, cr, client)
	require.NoError(t, err)
	_, err = e.a.Login(ctx, e.pool, cr, client)
	require.ErrorIs(t, err, auth.ErrInvalidCode)
	cr.Code = recovery[4][:4] + recovery[4][5:9] + recovery[4][10:]
	_, err = e.a.Login(ctx, e.pool, cr, client)
	require.NoError(t, err)
	for _, bad := range []string{"'; --", "\x00\x00\x00\x00\x00\x00", "zzzz-zzzz-zzzz-zzz!", "12345", "1234567"} {
		cr.Code = bad
		_, err = e.a.Login(ctx, e.pool, cr, client)
		require.ErrorIs(t, err, auth.ErrInvalidCode, bad)
	}
	assert.Equal(t, 2, e.count(t, `SELECT count(*) FROM justpg.auth_recovery_codes WHERE used_at IS NOT NULL`))
	// Wrong codes count as failed log-ins (brute-force protection).
	assert.Positive(t, e.count(t, `SELECT failed_logins FROM justpg.auth_users WHERE id = $1`, u.ID))

	fresh, err := e.a.RegenerateRecoveryCodes(ctx, e.pool, u.ID)
	require.NoError(t, err)
	cr.Code = recovery[5]
	_, err = e.a.Login(ctx, e.pool, cr, client)
	require.ErrorIs(t, err, auth.ErrInvalidCode, "old codes are gone")
	cr.Code = fresh[0]
	_, err = e.a.Login(ctx, e.pool, cr, client)
	require.NoError(t, err)

	require.NoError(t, e.a.DisableTOTP(ctx, e.pool, u.ID, client))
	require.ErrorIs(t, e.a.DisableTOTP(ctx, e.pool, u.ID, client), auth.ErrTOTPNotEnrolled)
	e.login(t, "2fa@example.com", goodPW)
	assert.Equal(t, 0, e.count(t, `SELECT count(*) FROM justpg.auth_recovery_codes`))
}
