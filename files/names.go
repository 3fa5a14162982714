package files

import (
	"encoding/json"
	"fmt"
	"mime"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ValidateName reports whether name is acceptable as a file name: 1 to
// MaxNameLen bytes of valid UTF-8, not "." or "..", without path separators
// ('/' and '\'), control characters (C0, DEL, C1) or bidirectional-text
// controls (which can disguise an extension). Names are stored as given,
// never cleaned silently.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalidName)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidName, len(name), MaxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidName)
	case name == "." || name == "..":
		return fmt.Errorf("%w: %q", ErrInvalidName, name)
	case strings.TrimSpace(name) == "":
		return fmt.Errorf("%w: only white space", ErrInvalidName)
	}
	for _, r := range name {
		switch {
		case r == '/' || r == '\\':
			return fmt.Errorf("%w: %q contains a path separator", ErrInvalidName, name)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f):
			return fmt.Errorf("%w: %q contains a control character", ErrInvalidName, name)
		case isBidiControl(r):
			return fmt.Errorf("%w: %q contains a bidirectional-text control", ErrInvalidName, name)
		}
	}
	return nil
}

func isBidiControl(r rune) bool {
	return r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x061c
}

// validateOwner checks an owner string: any UTF-8 text without control
// characters, at most MaxOwnerLen bytes.
func validateOwner(owner string) error {
	if len(owner) > MaxOwnerLen {
		return fmt.Errorf("%w: owner is %d bytes, more than %d", ErrInvalidInput, len(owner), MaxOwnerLen)
	}
	if !utf8.ValidString(owner) {
		return fmt.Errorf("%w: owner is not valid UTF-8", ErrInvalidInput)
	}
	for _, r := range owner {
		if unicode.IsControl(r) {
			return fmt.Errorf("%w: owner contains a control character", ErrInvalidInput)
		}
	}
	return nil
}

// normalizeMetadata checks custom metadata: empty means {}, otherwise a JSON
// object of at most MaxMetadataLen bytes.
func normalizeMetadata(m json.RawMessage) (json.RawMessage, error) {
	if len(m) == 0 {
		return json.RawMessage(`{}`), nil
	}
	if len(m) > MaxMetadataLen {
		return nil, fmt.Errorf("%w: metadata is %d bytes, more than %d", ErrInvalidInput, len(m), MaxMetadataLen)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(m, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("%w: metadata must be a JSON object", ErrInvalidInput)
	}
	if strings.Contains(string(m), `\u0000`) {
		return nil, fmt.Errorf("%w: metadata contains a NUL character", ErrInvalidInput)
	}
	return m, nil
}

// normalizeContentType parses a media type and returns it in canonical form
// with its bare, lower-case type/subtype.
func normalizeContentType(ct string) (full, base string, err error) {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || !strings.Contains(mt, "/") {
		return "", "", fmt.Errorf("%w: content type %q", ErrInvalidInput, ct)
	}
	full = mime.FormatMediaType(mt, params)
	if full == "" {
		return "", "", fmt.Errorf("%w: content type %q", ErrInvalidInput, ct)
	}
	return full, mt, nil
}

// ContentDisposition returns a Content-Disposition header value for name
// (RFC 6266): disposition ("attachment" or "inline"), a plain-ASCII
// filename fallback for old clients, and the exact name as an RFC 5987
// filename* parameter. The result never contains quotes, backslashes or
// control characters inside the fallback, so it cannot break out of the
// header.
func ContentDisposition(disposition, name string) string {
	var fb strings.Builder
	ascii := true
	for _, r := range name {
		switch {
		case r >= 0x20 && r < 0x7f && r != '"' && r != '\\' && r != '%' && r != ';':
			fb.WriteRune(r)
		default:
			ascii = false
			fb.WriteByte('_')
		}
	}
	v := disposition
	if fb.Len() > 0 {
		v += `; filename="` + fb.String() + `"`
	}
	if !ascii || fb.Len() == 0 {
		if name != "" {
			v += "; filename*=UTF-8''" + encodeRFC5987(name)
		}
	}
	return v
}

// encodeRFC5987 percent-encodes everything but RFC 5987 attr-chars.
func encodeRFC5987(s string) string {
	const hexdig = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexdig[c>>4])
		b.WriteByte(hexdig[c&15])
	}
	return b.String()
}
