package pgtest

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// EnvSession gives the sessions of the pools NewDB makes (the test's pool and
// the template's, where WithSetup runs) PostgreSQL settings of their own, sent
// as run-time parameters at connection start, so that the whole suite can be
// run as users whose roles, databases or servers have non-default settings
// run it:
//
//	JUSTPG_TEST_SESSION="default_transaction_isolation=serializable" go test ./...
//	JUSTPG_TEST_SESSION="TimeZone=Pacific/Chatham;DateStyle=SQL, DMY;IntervalStyle=iso_8601" go test ./...
//
// The value is name=value pairs separated by semicolons; values are taken as
// written (spaces and commas included). Unset or empty sets nothing. A value
// without "=" fails the tests that call NewDB; an unknown setting or value
// fails them when the pool connects. A WithPoolConfig option sees the
// parameters already set and may change them. Tests that build their own
// connection configurations call ApplySession.
const EnvSession = "JUSTPG_TEST_SESSION"

var session struct {
	once   sync.Once
	params map[string]string
	err    error
}

// SessionParams reports the settings EnvSession gives (nil when it is unset
// or empty), and an error when its value is malformed.
func SessionParams() (map[string]string, error) {
	session.once.Do(func() {
		for _, kv := range strings.Split(os.Getenv(EnvSession), ";") {
			if strings.TrimSpace(kv) == "" {
				continue
			}
			k, v, ok := strings.Cut(kv, "=")
			k = strings.TrimSpace(k)
			if !ok || k == "" {
				session.err = fmt.Errorf("pgtest: %s: %q is not name=value", EnvSession, kv)
				return
			}
			if session.params == nil {
				session.params = map[string]string{}
			}
			session.params[k] = strings.TrimSpace(v)
		}
	})
	return session.params, session.err
}

// ApplySession adds the settings EnvSession gives to cfg's RuntimeParams, for
// a test that connects with a configuration of its own. It fails the test
// when the variable's value is malformed.
func ApplySession(tb testing.TB, cfg *pgx.ConnConfig) {
	tb.Helper()
	if err := applySession(cfg); err != nil {
		tb.Fatal(err)
	}
}

func applySession(cfg *pgx.ConnConfig) error {
	params, err := SessionParams()
	if err != nil {
		return err
	}
	if len(params) > 0 && cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	for k, v := range params {
		cfg.RuntimeParams[k] = v
	}
	return nil
}

// WithSetting is a NewDB option giving the pool's sessions the PostgreSQL
// setting name = value from their start, as a role's or database's
// setting would (it overrides EnvSession's value for name).
func WithSetting(name, value string) Option {
	return WithPoolConfig(func(c *pgxpool.Config) { c.ConnConfig.RuntimeParams[name] = value })
}

// WithSearchPath is WithSetting for search_path; "" leaves the default.
func WithSearchPath(sp string) Option {
	if sp == "" {
		return WithPoolConfig(func(*pgxpool.Config) {})
	}
	return WithSetting("search_path", sp)
}
