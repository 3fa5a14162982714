package backup

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultDrillMaxAge is the age after which SweepDrills (and every Drill,
// before it starts) drops a drill database that nobody is connected to.
const DefaultDrillMaxAge = 24 * time.Hour

// drillNameRE matches the temporary databases of drills:
// justpg_drill_<unix seconds of the start>_<random>.
var drillNameRE = regexp.MustCompile(`^justpg_drill_([0-9]{1,12})_[0-9a-f]{8}$`)

func drillDatabaseName(started time.Time) string {
	return fmt.Sprintf("justpg_drill_%d_%s", started.Unix(), randomHex(4))
}

// drillStarted reads the start time from a drill database's name.
func drillStarted(name string) (time.Time, bool) {
	m := drillNameRE.FindStringSubmatch(name)
	if m == nil {
		return time.Time{}, false
	}
	sec, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(sec, 0), true
}

// SweepDrills drops the temporary databases of drills that crashed (a
// killed process, a lost machine) on the drill server: those whose name
// says they started more than maxAge ago (DefaultDrillMaxAge when maxAge
// is zero or negative). It is safe while other drills run: a live drill
// holds a session on its database from just after creating it to the end,
// and the sweep drops without FORCE, which the server refuses for a
// database in use; younger databases are not touched at all. It returns
// the databases it dropped. Every Drill sweeps with DefaultDrillMaxAge
// first.
func (m *Manager) SweepDrills(ctx context.Context, maxAge time.Duration) ([]string, error) {
	cfg := m.pool.Config().ConnConfig.Copy()
	if m.cfg.DrillConnString != "" {
		var err error
		if cfg, err = pgx.ParseConfig(m.cfg.DrillConnString); err != nil {
			return nil, fmt.Errorf("backup: DrillConnString: %w", err)
		}
	}
	noTimeouts(cfg)
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("backup: connecting to the drill server: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if maxAge <= 0 {
		maxAge = DefaultDrillMaxAge
	}
	dropped, err := sweepDrills(ctx, conn, maxAge, time.Now())
	for _, d := range dropped {
		m.log.InfoContext(ctx, "backup: dropped stale drill database", "database", d)
	}
	return dropped, err
}

func sweepDrills(ctx context.Context, db DB, maxAge time.Duration, now time.Time) ([]string, error) {
	rows, err := db.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE E'justpg\\_drill\\_%' ORDER BY 1`)
	if err != nil {
		return nil, fmt.Errorf("backup: listing drill databases: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("backup: listing drill databases: %w", err)
	}
	var dropped []string
	var errs []error
	for _, name := range names {
		started, ok := drillStarted(name)
		if !ok || now.Sub(started) < maxAge {
			continue
		}
		_, err := db.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize())
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			dropped = append(dropped, name)
		case errors.As(err, &pgErr) && pgErr.Code == "55006":
			// In use: a drill (or its pg_restore) is still working on it.
		case ctx.Err() != nil:
			return dropped, fmt.Errorf("backup: sweeping drill databases: %w", ctx.Err())
		default:
			errs = append(errs, fmt.Errorf("backup: dropping stale drill database %s: %w", name, err))
		}
	}
	return dropped, errors.Join(errs...)
}

// The timeouts a role or database may set for its sessions, which backup's
// own sessions turn off as pg_dump and pg_restore do for theirs: creating,
// dropping, restoring into and counting a database take as long as they
// take, and a dump's snapshot transaction idles while pg_dump works.
var timeoutSettings = []string{"statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout"}

// noTimeouts turns the timeouts off for the sessions cfg opens.
func noTimeouts(cfg *pgx.ConnConfig) {
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	for _, name := range timeoutSettings {
		cfg.RuntimeParams[name] = "0"
	}
}

// noTimeoutsSQL is three select-list items turning them off for the rest of
// the transaction.
const noTimeoutsSQL = `set_config('statement_timeout', '0', true), set_config('lock_timeout', '0', true),
	set_config('idle_in_transaction_session_timeout', '0', true)`
