package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrTargetBeforeBackup is returned when a recovery target time lies
// before the base backup started: that backup cannot reach it, an older
// base backup is needed.
var ErrTargetBeforeBackup = errors.New("backup: recovery target is before the base backup")

// PITROptions configures PreparePITR.
type PITROptions struct {
	// BaseBackup is a plain-format base backup directory (BaseBackup's Dir).
	BaseBackup string
	// DataDir is the data directory to create; it must not exist or be
	// empty. The base backup is copied, never modified.
	DataDir string
	// RestoreCommand fetches archived WAL, e.g. RestoreCommand(bin, repo).
	RestoreCommand string
	// TargetTime is the moment to recover to; zero recovers to the end of
	// the archived WAL.
	TargetTime time.Time
	// TargetAction is what the server does on reaching the target:
	// "promote" (default: open for writes on a new timeline), "pause" or
	// "shutdown".
	TargetAction string
	// Exclusive stops just before transactions committed exactly at
	// TargetTime instead of just after them.
	Exclusive bool
	// Chown gives the new data directory to UID/GID (the user that runs the
	// server), for a process running as root.
	Chown    bool
	UID, GID int
}

// PreparePITR lays out a data directory for point-in-time recovery,
// PostgreSQL 12+ style: a copy of the base backup, recovery.signal, and
// restore_command, recovery_target_time and recovery_target_action appended
// to postgresql.auto.conf. Start a server on DataDir afterwards
// (StartServer, or systemd or your orchestrator) and call ConfirmRecovery.
//
// A target before the base backup's start is refused with
// ErrTargetBeforeBackup before anything is written.
func PreparePITR(ctx context.Context, o PITROptions) error {
	if o.BaseBackup == "" || o.DataDir == "" {
		return fmt.Errorf("%w: BaseBackup and DataDir are required", ErrConfig)
	}
	if strings.TrimSpace(o.RestoreCommand) == "" {
		return fmt.Errorf("%w: RestoreCommand is required", ErrConfig)
	}
	switch o.TargetAction {
	case "":
		o.TargetAction = "promote"
	case "promote", "pause", "shutdown":
	default:
		return fmt.Errorf("%w: TargetAction %q (use promote, pause or shutdown)", ErrConfig, o.TargetAction)
	}
	if _, err := os.Stat(filepath.Join(o.BaseBackup, "PG_VERSION")); err != nil {
		return fmt.Errorf("%w: %s is not a plain-format base backup: %w", ErrConfig, o.BaseBackup, err)
	}
	if !o.TargetTime.IsZero() {
		if start, ok := backupStartTime(o.BaseBackup); ok && o.TargetTime.Before(start) {
			return fmt.Errorf("%w: target %s, base backup started %s", ErrTargetBeforeBackup,
				o.TargetTime.UTC().Format(time.RFC3339Nano), start.UTC().Format(time.RFC3339))
		}
	}
	if entries, err := os.ReadDir(o.DataDir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%w: data directory %s is not empty", ErrConfig, o.DataDir)
	}
	if err := copyDir(ctx, o.BaseBackup, o.DataDir); err != nil {
		return fmt.Errorf("backup: copying the base backup: %w", err)
	}
	// The manifest describes the backup, not the recovered cluster.
	_ = os.Remove(filepath.Join(o.DataDir, "backup_manifest"))
	conf := "\n# point-in-time recovery, written by justpg backup\n" +
		"restore_command = " + confQuote(o.RestoreCommand) + "\n" +
		"recovery_target_action = " + confQuote(o.TargetAction) + "\n"
	if !o.TargetTime.IsZero() {
		conf += "recovery_target_time = " + confQuote(o.TargetTime.UTC().Format("2006-01-02 15:04:05.999999-07:00")) + "\n"
		conf += fmt.Sprintf("recovery_target_inclusive = %t\n", !o.Exclusive)
	}
	f, err := os.OpenFile(filepath.Join(o.DataDir, "postgresql.auto.conf"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if _, err := io.WriteString(f, conf); err != nil {
		f.Close()
		return fmt.Errorf("backup: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := os.WriteFile(filepath.Join(o.DataDir, "recovery.signal"), nil, 0o600); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if o.Chown {
		err := filepath.WalkDir(o.DataDir, func(p string, _ fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, o.UID, o.GID)
		})
		if err != nil {
			return fmt.Errorf("backup: giving the data directory to %d:%d: %w", o.UID, o.GID, err)
		}
	}
	return nil
}

// confQuote quotes a value for postgresql.conf.
func confQuote(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", "''") + "'"
}

// copyDir copies a base backup (regular files, directories and symlinks)
// with private permissions, as PostgreSQL requires of a data directory.
func copyDir(ctx context.Context, src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o700)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			out, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			if _, err := io.Copy(out, in); err != nil {
				out.Close()
				return err
			}
			if err := out.Sync(); err != nil {
				out.Close()
				return err
			}
			return out.Close()
		}
		return nil
	})
}

// RecoveryResult is what ConfirmRecovery found.
type RecoveryResult struct {
	// Promoted is true when the server left recovery (target action
	// promote); Paused when it holds at the target (action pause).
	Promoted, Paused bool
	// Timeline is the server's current timeline (a new one after promotion).
	Timeline int64
	// LastReplayed is the commit time of the last transaction replayed
	// (zero if none was); it is not after the target.
	LastReplayed time.Time
}

// ConfirmRecovery waits until a server started by PreparePITR has reached
// its target (promoted or paused there) and reports where it stopped. It
// fails if ctx ends first or if a replayed transaction is later than
// target (zero target: not checked). If the WAL archive did not reach the
// target, PostgreSQL itself refuses to finish recovery ("recovery ended
// before configured recovery target was reached") and the server stops.
func ConfirmRecovery(ctx context.Context, db DB, target time.Time) (RecoveryResult, error) {
	var r RecoveryResult
	for {
		var inRecovery bool
		var pause string
		err := db.QueryRow(ctx, `SELECT pg_is_in_recovery(),
			CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() ELSE '' END`).Scan(&inRecovery, &pause)
		if err != nil {
			return r, fmt.Errorf("backup: checking recovery: %w", err)
		}
		if !inRecovery || pause == "paused" {
			r.Promoted, r.Paused = !inRecovery, inRecovery
			break
		}
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("backup: recovery did not reach its target: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	var last *time.Time
	if err := db.QueryRow(ctx, `SELECT pg_last_xact_replay_timestamp(),
		CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id::bigint FROM pg_control_checkpoint())
		     ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint END`).
		Scan(&last, &r.Timeline); err != nil {
		return r, fmt.Errorf("backup: reading the recovery position: %w", err)
	}
	if last != nil {
		r.LastReplayed = *last
		if !target.IsZero() && last.After(target) {
			return r, fmt.Errorf("backup: recovery replayed a transaction of %s, after the target %s", last.UTC(), target.UTC())
		}
	}
	return r, nil
}
