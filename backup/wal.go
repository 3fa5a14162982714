package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/justpg/justpg/internal/ident"
)

// ErrWALConflict is returned by ArchiveWAL when a WAL file of the same name
// but different content is already archived. PostgreSQL then keeps the
// segment and retries; an operator must look (two clusters archiving into
// one place, or a restored cluster still on the old timeline).
var ErrWALConflict = errors.New("backup: a different WAL file of that name is already archived")

const walPrefix = "wal/"

var walNameRE = regexp.MustCompile(`^(?:[0-9A-F]{24}(?:\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)$`)

// ValidateWALName checks the file name PostgreSQL passes as %f: a WAL
// segment (24 hex digits, optionally .partial), a backup history file
// (segment.offset.backup) or a timeline history file (8 hex digits.history).
func ValidateWALName(name string) error {
	if !walNameRE.MatchString(name) {
		return fmt.Errorf("%w: %q is not a WAL file name", ErrInvalidName, name)
	}
	return nil
}

// ArchiveWAL archives the WAL file at path (PostgreSQL's %p) under name
// (%f) with the semantics PostgreSQL requires of an archive_command: the
// copy is written to a temporary file, fsynced and moved into place
// atomically, so a crash never leaves a partial file under the real name;
// archiving a file that is already archived with identical content
// succeeds (PostgreSQL may retry after a crash); a different file under the
// same name fails with ErrWALConflict and the archived copy is kept.
func ArchiveWAL(ctx context.Context, repo Repository, path, name string) error {
	if err := ValidateWALName(name); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("backup: archiving %s: %w", name, err)
	}
	defer f.Close()
	_, err = repo.Put(ctx, walPrefix+name, f)
	if err == nil || !errors.Is(err, ErrExists) {
		return err
	}
	same, cerr := sameContent(ctx, repo, walPrefix+name, path)
	if cerr != nil {
		return fmt.Errorf("backup: comparing %s with the archived copy: %w", name, cerr)
	}
	if !same {
		return fmt.Errorf("%w: %s", ErrWALConflict, name)
	}
	return nil
}

func sameContent(ctx context.Context, repo Repository, name, path string) (bool, error) {
	st, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	info, err := repo.Stat(ctx, name)
	if err != nil {
		return false, err
	}
	if info.Size != st.Size() {
		return false, nil
	}
	digest := func(r io.Reader) ([]byte, error) {
		h := sha256.New()
		if _, err := io.Copy(h, ctxReader{ctx, r}); err != nil {
			return nil, err
		}
		return h.Sum(nil), nil
	}
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	a, err := digest(f)
	if err != nil {
		return false, err
	}
	r, err := repo.Open(ctx, name)
	if err != nil {
		return false, err
	}
	defer r.Close()
	b, err := digest(r)
	if err != nil {
		return false, err
	}
	return bytes.Equal(a, b), nil
}

// RestoreWAL copies the archived WAL file name (%f) to path (%p), as a
// restore_command must: written to a temporary file next to path, fsynced
// and renamed. A file that is not archived returns an error wrapping
// ErrNotFound, which tells PostgreSQL that the archive has no more WAL.
func RestoreWAL(ctx context.Context, repo Repository, name, path string) error {
	if err := ValidateWALName(name); err != nil {
		return err
	}
	r, err := repo.Open(ctx, walPrefix+name)
	if err != nil {
		return err
	}
	defer r.Close()
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".justpg-restore-*")
	if err != nil {
		return fmt.Errorf("backup: restoring %s: %w", name, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, ctxReader{ctx, r}); err != nil {
		return fmt.Errorf("backup: restoring %s: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("backup: restoring %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("backup: restoring %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("backup: restoring %s: %w", name, err)
	}
	ok = true
	return syncDir(dir)
}

// ShellQuote quotes s for /bin/sh, for building archive_command and
// restore_command values.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ArchiveCommand returns an archive_command that runs the justpg-backup
// program at bin to archive into the local repository at repoDir.
func ArchiveCommand(bin, repoDir string) string {
	return ShellQuote(bin) + " archive-wal --repo " + ShellQuote(repoDir) + " %p %f"
}

// RestoreCommand returns the matching restore_command.
func RestoreCommand(bin, repoDir string) string {
	return ShellQuote(bin) + " restore-wal --repo " + ShellQuote(repoDir) + " %f %p"
}

// ConfigureArchiving turns WAL archiving on with ALTER SYSTEM
// (archive_mode = on, the given archive_command, and wal_level = replica if
// it was minimal) and reloads the configuration. archive_mode and wal_level
// take effect only after a server restart: restartNeeded reports whether
// one is still required. db must not be a transaction (ALTER SYSTEM cannot
// run in one) and the role must be a superuser or have been granted ALTER
// SYSTEM on these parameters.
func ConfigureArchiving(ctx context.Context, db DB, archiveCommand string) (restartNeeded bool, err error) {
	if strings.TrimSpace(archiveCommand) == "" {
		return false, fmt.Errorf("%w: empty archive_command", ErrConfig)
	}
	lit, err := ident.Literal(archiveCommand)
	if err != nil {
		return false, fmt.Errorf("%w: archive_command: %w", ErrConfig, err)
	}
	var mode, level string
	if err := db.QueryRow(ctx, `SELECT current_setting('archive_mode'), current_setting('wal_level')`).Scan(&mode, &level); err != nil {
		return false, fmt.Errorf("backup: reading settings: %w", err)
	}
	stmts := []string{"ALTER SYSTEM SET archive_mode = 'on'", "ALTER SYSTEM SET archive_command = " + lit}
	if level == "minimal" {
		stmts = append(stmts, "ALTER SYSTEM SET wal_level = 'replica'")
	}
	for _, s := range stmts {
		if _, err := db.Exec(ctx, s); err != nil {
			return false, fmt.Errorf("backup: configuring archiving: %w", err)
		}
	}
	if _, err := db.Exec(ctx, `SELECT pg_reload_conf()`); err != nil {
		return false, fmt.Errorf("backup: reloading the configuration: %w", err)
	}
	return mode == "off" || level == "minimal", nil
}

// ArchiverStatus is the health of WAL archiving, from pg_stat_archiver.
type ArchiverStatus struct {
	ArchiveMode      string    // the archive_mode in effect
	ArchiveCommand   string    // the archive_command in effect
	ArchivedCount    int64     // segments archived since the statistics reset
	LastArchivedWAL  string    // name of the last archived file
	LastArchivedTime time.Time // zero if never
	FailedCount      int64     // failed attempts since the statistics reset
	LastFailedWAL    string    // name of the last file that failed
	LastFailedTime   time.Time // zero if never
	// Healthy is true when Problems is empty.
	Healthy  bool
	Problems []string
}

// CheckArchiver reads pg_stat_archiver and reports problems: archiving off
// or without a command, a failure more recent than the last success, or no
// segment archived within maxAge (0: not checked; on an idle server with
// archive_timeout unset, no new segments is normal).
func CheckArchiver(ctx context.Context, db DB, maxAge time.Duration) (ArchiverStatus, error) {
	var s ArchiverStatus
	var lastOK, lastFail *time.Time
	var lastOKWAL, lastFailWAL *string
	err := db.QueryRow(ctx, `
		SELECT current_setting('archive_mode'), current_setting('archive_command'),
		       archived_count, last_archived_wal, last_archived_time,
		       failed_count, last_failed_wal, last_failed_time
		FROM pg_stat_archiver`).Scan(&s.ArchiveMode, &s.ArchiveCommand, &s.ArchivedCount, &lastOKWAL, &lastOK,
		&s.FailedCount, &lastFailWAL, &lastFail)
	if err != nil {
		return s, fmt.Errorf("backup: reading pg_stat_archiver: %w", err)
	}
	if lastOK != nil {
		s.LastArchivedTime = *lastOK
	}
	if lastFail != nil {
		s.LastFailedTime = *lastFail
	}
	if lastOKWAL != nil {
		s.LastArchivedWAL = *lastOKWAL
	}
	if lastFailWAL != nil {
		s.LastFailedWAL = *lastFailWAL
	}
	if s.ArchiveMode == "off" {
		s.Problems = append(s.Problems, "archive_mode is off")
	}
	if strings.TrimSpace(s.ArchiveCommand) == "" || s.ArchiveCommand == "(disabled)" {
		s.Problems = append(s.Problems, "archive_command is not set")
	}
	if !s.LastFailedTime.IsZero() && s.LastFailedTime.After(s.LastArchivedTime) {
		s.Problems = append(s.Problems, fmt.Sprintf("archiving %s failed at %s and has not succeeded since (see the server log)",
			s.LastFailedWAL, s.LastFailedTime.UTC().Format(time.RFC3339)))
	}
	if maxAge > 0 && s.ArchiveMode != "off" {
		if s.LastArchivedTime.IsZero() {
			s.Problems = append(s.Problems, "no WAL segment has been archived yet")
		} else if age := time.Since(s.LastArchivedTime); age > maxAge {
			s.Problems = append(s.Problems, fmt.Sprintf("last WAL segment archived %s ago (more than %s)", age.Round(time.Second), maxAge))
		}
	}
	s.Healthy = len(s.Problems) == 0
	return s, nil
}
