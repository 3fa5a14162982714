package pgtest

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// EnvExecMode selects the pgx query exec mode of the pools NewDB makes (the
// test's pool and the template's, where WithSetup runs), so that the whole
// suite can be run as users behind PgBouncer run it:
//
//	JUSTPG_TEST_EXEC_MODE=exec go test ./...
//
// The values are pgx's names for the modes (see pgx.QueryExecMode) or their
// short forms:
//
//	cache_statement, statement   QueryExecModeCacheStatement (pgx's default)
//	cache_describe               QueryExecModeCacheDescribe
//	describe_exec, describe      QueryExecModeDescribeExec
//	exec                         QueryExecModeExec
//	simple_protocol, simple      QueryExecModeSimpleProtocol
//
// Unset or empty leaves pgx's default. Any other value fails the tests that
// call NewDB. A WithPoolConfig option sees the mode already set and may
// change it (a test that must run in one mode sets it there). Tests that
// build their own connection configurations call ApplyExecMode; tests that
// cannot work in some mode adapt, asking InExecMode.
const EnvExecMode = "JUSTPG_TEST_EXEC_MODE"

// ExecModes are all of pgx's query exec modes, for tests that run in each.
var ExecModes = []pgx.QueryExecMode{
	pgx.QueryExecModeCacheStatement,
	pgx.QueryExecModeCacheDescribe,
	pgx.QueryExecModeDescribeExec,
	pgx.QueryExecModeExec,
	pgx.QueryExecModeSimpleProtocol,
}

// InMode is a NewDB option (a WithPoolConfig) that sets the pool's exec
// mode, whatever EnvExecMode says, for a test that runs in each of
// ExecModes.
func InMode(mode pgx.QueryExecMode) Option {
	return WithPoolConfig(func(c *pgxpool.Config) { c.ConnConfig.DefaultQueryExecMode = mode })
}

var execModes = map[string]pgx.QueryExecMode{
	"cache_statement": pgx.QueryExecModeCacheStatement,
	"statement":       pgx.QueryExecModeCacheStatement,
	"cache_describe":  pgx.QueryExecModeCacheDescribe,
	"describe_exec":   pgx.QueryExecModeDescribeExec,
	"describe":        pgx.QueryExecModeDescribeExec,
	"exec":            pgx.QueryExecModeExec,
	"simple_protocol": pgx.QueryExecModeSimpleProtocol,
	"simple":          pgx.QueryExecModeSimpleProtocol,
}

var execMode struct {
	once sync.Once
	mode pgx.QueryExecMode
	set  bool
	err  error
}

// ExecMode reports the mode EnvExecMode selects; set is false when the
// variable is unset or empty, and err is non-nil for an unknown value.
func ExecMode() (mode pgx.QueryExecMode, set bool, err error) {
	execMode.once.Do(func() {
		v := strings.ToLower(strings.TrimSpace(os.Getenv(EnvExecMode)))
		if v == "" {
			return
		}
		m, ok := execModes[v]
		if !ok {
			execMode.err = fmt.Errorf("pgtest: %s=%q is not a pgx exec mode (exec, simple, describe, cache_describe, cache_statement)", EnvExecMode, v)
			return
		}
		execMode.mode, execMode.set = m, true
	})
	return execMode.mode, execMode.set, execMode.err
}

// ApplyExecMode sets cfg's DefaultQueryExecMode to the mode EnvExecMode
// selects, if any, for a test that connects with a configuration of its own.
// It fails the test when the variable's value is unknown.
func ApplyExecMode(tb testing.TB, cfg *pgx.ConnConfig) {
	tb.Helper()
	if err := applyExecMode(cfg); err != nil {
		tb.Fatal(err)
	}
}

func applyExecMode(cfg *pgx.ConnConfig) error {
	mode, set, err := ExecMode()
	if err == nil && set {
		cfg.DefaultQueryExecMode = mode
	}
	return err
}

// InExecMode reports whether EnvExecMode selects one of modes.
func InExecMode(modes ...pgx.QueryExecMode) bool {
	mode, set, _ := ExecMode()
	return set && slices.Contains(modes, mode)
}
