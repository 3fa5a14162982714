package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
)

// tokenBytes is the entropy of every session token, one-time token and API
// key: 256 bits.
const tokenBytes = 32

// tokenLen is the length of a token's text: unpadded URL-safe base64.
var tokenLen = base64.RawURLEncoding.EncodedLen(tokenBytes)

// newToken returns a fresh random token's text and the SHA-256 that is the
// only thing stored.
func newToken() (text string, hash []byte) {
	raw := randomBytes(tokenBytes)
	sum := sha256.Sum256(raw)
	return base64.RawURLEncoding.EncodeToString(raw), sum[:]
}

// parseToken checks a token's text and returns its SHA-256. Anything that
// is not exactly 43 characters of unpadded URL-safe base64 encoding 32 bytes
// is ErrInvalidToken, before any database work.
func parseToken(s string) ([]byte, error) {
	if len(s) != tokenLen {
		return nil, fmt.Errorf("%w: wrong length", ErrInvalidToken)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(raw) != tokenBytes {
		return nil, fmt.Errorf("%w: not a token", ErrInvalidToken)
	}
	sum := sha256.Sum256(raw)
	return sum[:], nil
}

// parseAPIKey splits "<prefix>_<token>" and returns the token's hash.
func (a *Auth) parseAPIKey(s string) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, a.cfg.APIKeyPrefix+"_")
	if !ok {
		return nil, fmt.Errorf("%w: not an API key", ErrInvalidToken)
	}
	return parseToken(rest)
}
