package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
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

func FuzzParseToken(f *testing.F) {
	text, _ := newToken()
	for _, s := range []string{text, "", text[:42], text + "=", "jpk_" + text, "\x00", strings.Repeat("A", 43), strings.Repeat("_", 43)} {
		f.Add(s)
	}
	a := &Auth{cfg: Config{APIKeyPrefix: "jpk"}}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := parseToken(s)
		if err == nil {
			if len(h) != 32 {
				t.Fatalf("hash of %d bytes", len(h))
			}
			raw, derr := base64.RawURLEncoding.DecodeString(s)
			if derr != nil || base64.RawURLEncoding.EncodeToString(raw) != s {
				t.Fatalf("accepted a non-canonical token %q", s)
			}
		} else if !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("error %v is not ErrInvalidToken", err)
		}
		if _, err := a.parseAPIKey(s); err != nil && !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("API key error %v is not ErrInvalidToken", err)
		}
	})
}

func FuzzDecodeArgon2(f *testing.F) {
	h, _ := NewArgon2id(Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32})
	enc, _ := h.Hash(context.Background(), []byte("pw"))
	for _, s := range []string{enc, "", "$argon2id$", "$argon2id$v=19$m=1,t=1,p=1$$", strings.Replace(enc, "m=64", "m=4294967295", 1)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, salt, key, err := decodeArgon2(s)
		if err != nil {
			if !errors.Is(err, ErrMalformedHash) {
				t.Fatalf("error %v is not ErrMalformedHash", err)
			}
			return
		}
		if p.Memory > maxArgon2Memory || p.Time < 1 || p.Threads < 1 || len(salt) < 8 || len(key) < 16 {
			t.Fatalf("accepted out-of-range parameters %+v", p)
		}
	})
}
