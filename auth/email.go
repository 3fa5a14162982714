package auth

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// NormalizeEmail validates an e-mail address and returns the form stored and
// compared: surrounding white space removed, Unicode NFC, lower-cased. So
// "  Alice@Example.COM " and "alice@example.com" are one account.
//
// It accepts addr-spec addresses as people type them: one "@", a local part
// of 1-64 bytes and a domain of dot-separated labels (each 1-63 bytes, not
// starting or ending with "-"), 254 bytes at most in all, no white space,
// control characters, quotes, brackets, commas, semicolons or backslashes.
// Internationalised addresses (UTF-8 letters) are accepted. The error wraps
// ErrInvalidEmail.
func NormalizeEmail(email string) (string, error) {
	bad := func(why string) (string, error) { return "", fmt.Errorf("%w: %s", ErrInvalidEmail, why) }
	if len(email) > 1024 {
		return bad("too long")
	}
	if !utf8.ValidString(email) {
		return bad("not valid UTF-8")
	}
	e := norm.NFC.String(strings.ToLower(norm.NFC.String(strings.TrimSpace(email))))
	if e == "" {
		return bad("empty")
	}
	if len(e) > 254 {
		return bad("longer than 254 bytes")
	}
	at := strings.LastIndexByte(e, '@')
	if at < 0 {
		return bad("no @")
	}
	local, domain := e[:at], e[at+1:]
	if local == "" || len(local) > 64 {
		return bad("the part before @ must have 1-64 bytes")
	}
	for _, r := range e {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == 0xfffd ||
			!unicode.IsPrint(r) || strings.ContainsRune(`"(),:;<>[\]`, r) {
			return bad(fmt.Sprintf("character %q is not allowed", r))
		}
	}
	if strings.Contains(local, "@") {
		return bad("more than one @")
	}
	if local[0] == '.' || local[len(local)-1] == '.' || strings.Contains(local, "..") {
		return bad("misplaced dot before @")
	}
	if domain == "" {
		return bad("no domain")
	}
	for label := range strings.SplitSeq(domain, ".") {
		if label == "" || len(label) > 63 {
			return bad("the domain has an empty or over-long label")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return bad("a domain label starts or ends with '-'")
		}
		for _, r := range label {
			if !(r == '-' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)) {
				return bad(fmt.Sprintf("character %q is not allowed in the domain", r))
			}
		}
	}
	return e, nil
}
