package auth

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
	"golang.org/x/text/unicode/norm"
)

// MaxPasswordBytes caps a password's length (in bytes, after Unicode
// normalisation). Longer passwords are refused when set, and fail log-in
// after the same hashing work as any other failure, so nobody can make the
// server hash megabytes.
const MaxPasswordBytes = 1024

// Hasher hashes passwords into self-describing strings and verifies them.
// Tests can wrap one to count calls. Implementations must be safe for
// concurrent use.
type Hasher interface {
	// Hash returns the encoded hash of password.
	Hash(ctx context.Context, password []byte) (string, error)
	// Verify reports whether password matches encoded, and whether encoded
	// should be replaced by a fresh Hash because its parameters are not the
	// current ones. A malformed encoded string is an error.
	Verify(ctx context.Context, password []byte, encoded string) (ok, rehash bool, err error)
}

// Argon2Params are argon2id's cost parameters.
type Argon2Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
	SaltLen uint32 // bytes
	KeyLen  uint32 // bytes
}

// DefaultArgon2Params are OWASP's recommended argon2id parameters
// (Password Storage Cheat Sheet): 19 MiB, 2 passes, 1 lane.
var DefaultArgon2Params = Argon2Params{Memory: 19 * 1024, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}

// ErrMalformedHash means an encoded password hash could not be parsed.
var ErrMalformedHash = errors.New("auth: malformed password hash")

// Argon2id is the default Hasher. Encoded hashes use the PHC string format
// shared with the reference implementation:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>   (unpadded standard base64)
//
// At most Concurrency hashes run at once (default GOMAXPROCS); further
// callers wait (or give up when their context ends), so a burst of log-ins
// costs bounded memory: Concurrency × Memory.
type Argon2id struct {
	p   Argon2Params
	sem chan struct{}
}

// NewArgon2id returns an Argon2id hasher with params and a concurrency limit
// of GOMAXPROCS.
func NewArgon2id(p Argon2Params) (*Argon2id, error) {
	return NewArgon2idLimit(p, runtime.GOMAXPROCS(0))
}

// NewArgon2idLimit is NewArgon2id with an explicit limit on concurrent hashes.
func NewArgon2idLimit(p Argon2Params, concurrency int) (*Argon2id, error) {
	switch {
	case p.Memory < 8*uint32(p.Threads) || p.Time < 1 || p.Threads < 1:
		return nil, fmt.Errorf("%w: argon2id needs time >= 1, threads >= 1, memory >= 8*threads KiB", ErrInvalidInput)
	case p.SaltLen < 16 || p.KeyLen < 16 || p.SaltLen > 64 || p.KeyLen > 64:
		return nil, fmt.Errorf("%w: argon2id salt and key lengths must be 16-64 bytes", ErrInvalidInput)
	case concurrency < 1:
		return nil, fmt.Errorf("%w: concurrency must be at least 1", ErrInvalidInput)
	}
	return &Argon2id{p: p, sem: make(chan struct{}, concurrency)}, nil
}

// Params returns the parameters new hashes use.
func (h *Argon2id) Params() Argon2Params { return h.p }

func (h *Argon2id) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("auth: waiting to hash: %w", err)
	}
	select {
	case h.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("auth: waiting to hash: %w", ctx.Err())
	}
}

// Hash implements Hasher.
func (h *Argon2id) Hash(ctx context.Context, password []byte) (string, error) {
	salt := randomBytes(int(h.p.SaltLen))
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	key := argon2.IDKey(password, salt, h.p.Time, h.p.Memory, h.p.Threads, h.p.KeyLen)
	<-h.sem
	return encodeArgon2(h.p, salt, key), nil
}

// Verify implements Hasher.
func (h *Argon2id) Verify(ctx context.Context, password []byte, encoded string) (bool, bool, error) {
	p, salt, key, err := decodeArgon2(encoded)
	if err != nil {
		return false, false, err
	}
	if err := h.acquire(ctx); err != nil {
		return false, false, err
	}
	got := argon2.IDKey(password, salt, p.Time, p.Memory, p.Threads, uint32(len(key)))
	<-h.sem
	ok := subtle.ConstantTimeCompare(got, key) == 1
	rehash := p.Memory != h.p.Memory || p.Time != h.p.Time || p.Threads != h.p.Threads ||
		uint32(len(salt)) != h.p.SaltLen || uint32(len(key)) != h.p.KeyLen
	return ok, rehash, nil
}

var b64 = base64.RawStdEncoding

func encodeArgon2(p Argon2Params, salt, key []byte) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// maxArgon2Memory bounds the memory a stored hash may ask for (1 GiB), so a
// tampered row cannot make Verify allocate without limit.
const maxArgon2Memory = 1 << 20

func decodeArgon2(s string) (p Argon2Params, salt, key []byte, err error) {
	bad := func(why string) (Argon2Params, []byte, []byte, error) {
		return Argon2Params{}, nil, nil, fmt.Errorf("%w: %s", ErrMalformedHash, why)
	}
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return bad("not an argon2id PHC string")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return bad("unsupported version")
	}
	for kv := range strings.SplitSeq(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, perr := strconv.ParseUint(v, 10, 32)
		if !ok || perr != nil {
			return bad("bad parameter " + strconv.Quote(kv))
		}
		switch k {
		case "m":
			p.Memory = uint32(n)
		case "t":
			p.Time = uint32(n)
		case "p":
			if n > 255 {
				return bad("too many lanes")
			}
			p.Threads = uint8(n)
		default:
			return bad("unknown parameter " + strconv.Quote(k))
		}
	}
	if p.Time < 1 || p.Threads < 1 || p.Memory < 8*uint32(p.Threads) || p.Memory > maxArgon2Memory || p.Time > 100 {
		return bad("parameters out of range")
	}
	if salt, err = b64.DecodeString(parts[4]); err != nil || len(salt) < 8 {
		return bad("bad salt")
	}
	if key, err = b64.DecodeString(parts[5]); err != nil || len(key) < 16 || len(key) > 64 {
		return bad("bad key")
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(key))
	return p, salt, key, nil
}

// PasswordError says why a password was refused. It wraps ErrWeakPassword.
type PasswordError struct {
	Reason string
}

// Error implements error.
func (e *PasswordError) Error() string { return "auth: password " + e.Reason }

// Unwrap returns ErrWeakPassword.
func (e *PasswordError) Unwrap() error { return ErrWeakPassword }

// preparePassword normalises a password (NFKC, as NIST SP 800-63B suggests
// for Unicode) and reports whether it is acceptable as input at all. It does
// not apply the policy.
func preparePassword(pw string) ([]byte, error) {
	if !utf8.ValidString(pw) {
		return nil, &PasswordError{Reason: "is not valid UTF-8"}
	}
	if strings.IndexByte(pw, 0) >= 0 {
		return nil, &PasswordError{Reason: "contains a NUL byte"}
	}
	if len(pw) > 4*MaxPasswordBytes { // don't normalise megabytes
		return nil, &PasswordError{Reason: fmt.Sprintf("is longer than %d bytes", MaxPasswordBytes)}
	}
	n := norm.NFKC.String(pw)
	if len(n) > MaxPasswordBytes {
		return nil, &PasswordError{Reason: fmt.Sprintf("is longer than %d bytes", MaxPasswordBytes)}
	}
	return []byte(n), nil
}

// CheckPassword applies the password policy (NIST SP 800-63B): at least
// MinPasswordLength characters, at most MaxPasswordBytes bytes, valid UTF-8
// without NUL, not among the common passwords and not the e-mail address
// itself (or its local part). There are no composition rules. The error wraps
// ErrWeakPassword and is a *PasswordError.
func (a *Auth) CheckPassword(password, email string) error {
	pw, err := preparePassword(password)
	if err != nil {
		return err
	}
	if n := utf8.RuneCount(pw); n < a.cfg.MinPasswordLength {
		return &PasswordError{Reason: fmt.Sprintf("must have at least %d characters", a.cfg.MinPasswordLength)}
	}
	if strings.TrimFunc(string(pw), unicode.IsSpace) == "" {
		return &PasswordError{Reason: "is only white space"}
	}
	lower := strings.ToLower(string(pw))
	if a.cfg.CommonPasswords(lower) {
		return &PasswordError{Reason: "is too common"}
	}
	if e, err := NormalizeEmail(email); err == nil {
		local, _, _ := strings.Cut(e, "@")
		if lower == e || lower == local {
			return &PasswordError{Reason: "must not be the e-mail address"}
		}
	}
	return nil
}

//go:embed common_passwords.txt
var commonPasswordsText string

var commonPasswords = sync.OnceValue(func() map[string]struct{} {
	m := make(map[string]struct{}, 10000)
	sc := bufio.NewScanner(strings.NewReader(commonPasswordsText))
	for sc.Scan() {
		if line := sc.Text(); line != "" && !strings.HasPrefix(line, "#") {
			m[line] = struct{}{}
		}
	}
	return m
})

// IsCommonPassword reports whether lower (a lower-cased password) is among
// the 10,000 most common passwords embedded in this package (zxcvbn's
// frequency list, from the Xato corpus; see gen_common.go).
func IsCommonPassword(lower string) bool {
	_, ok := commonPasswords()[lower]
	return ok
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return b
}
