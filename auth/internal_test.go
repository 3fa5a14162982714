package auth

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestHashingIsBounded fills the hasher's slots and shows that a further
// caller waits (and gives up with its context) instead of allocating.
func TestHashingIsBounded(t *testing.T) {
	t.Parallel()
	h, err := NewArgon2idLimit(Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, 2)
	require.NoError(t, err)
	enc, err := h.Hash(context.Background(), []byte("pw"))
	require.NoError(t, err)
	h.sem <- struct{}{}
	h.sem <- struct{}{}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = h.Hash(ctx, []byte("pw"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	_, _, err = h.Verify(ctx, []byte("pw"), enc)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	<-h.sem
	ok, _, err := h.Verify(context.Background(), []byte("pw"), enc)
	require.NoError(t, err)
	require.True(t, ok)

	cancelled, stop := context.WithCancel(context.Background())
	stop()
	_, err = h.Hash(cancelled, []byte("pw"))
	require.ErrorIs(t, err, context.Canceled)
}

func TestTokenRoundTrip(t *testing.T) {
	t.Parallel()
	text, hash := newToken()
	got, err := parseToken(text)
	require.NoError(t, err)
	require.Equal(t, hash, got)
	for _, bad := range []string{"", text[:42], text + "A", text[:42] + "=", text[:42] + "*", "\x00" + text[1:]} {
		_, err := parseToken(bad)
		require.ErrorIs(t, err, ErrInvalidToken, "%q", bad)
	}
}
