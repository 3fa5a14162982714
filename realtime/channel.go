package realtime

import (
	"fmt"

	"github.com/justpg/justpg/internal/ident"
)

// MaxChannelLen is the longest channel name in bytes: PostgreSQL's
// identifier limit. Longer names would be silently truncated by LISTEN and
// could collide, so they are refused.
const MaxChannelLen = ident.MaxLen

// ValidateChannel reports whether name is a valid channel name: 1 to 63
// bytes of ASCII letters, digits and the characters _ - . : @ (for names
// such as "user:42", "room.lobby" or "orders-eu").
//
// Channel names are case-sensitive and used exactly as given: LISTEN always
// quotes the name (so "Room" and "room" are two channels, as they are for
// pg_notify), and nothing is ever folded to lower case.
func ValidateChannel(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidChannel)
	}
	if len(name) > MaxChannelLen {
		return fmt.Errorf("%w: %q is %d bytes, longer than %d", ErrInvalidChannel, name, len(name), MaxChannelLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_', c == '-', c == '.', c == ':', c == '@':
		default:
			return fmt.Errorf("%w: %q has the byte %q at %d; allowed are letters, digits and _ - . : @",
				ErrInvalidChannel, name, c, i)
		}
	}
	return nil
}

// quoteChannel returns the channel quoted for LISTEN/UNLISTEN.
func quoteChannel(name string) (string, error) {
	if err := ValidateChannel(name); err != nil {
		return "", err
	}
	return ident.Quote(name)
}
