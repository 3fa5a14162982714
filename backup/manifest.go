package backup

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Format is a pg_dump output format.
type Format string

// The dump formats.
const (
	// FormatCustom is one compressed file, restorable selectively; the
	// default.
	FormatCustom Format = "custom"
	// FormatDirectory is a directory of files, one per table, written and
	// restored with parallel jobs: the choice for bigger databases.
	FormatDirectory Format = "directory"
)

// Manifest describes one logical backup. It is stored as
// logical/<id>/manifest.json, written last: a backup without a manifest is
// unfinished and never listed.
type Manifest struct {
	ID            string    `json:"id"`             // e.g. 20261127T162545.123Z-3f9a1c
	Database      string    `json:"database"`       // the database dumped
	Format        Format    `json:"format"`         // pg_dump's format
	Compression   string    `json:"compression"`    // as passed to pg_dump
	ServerVersion string    `json:"server_version"` // server_version of the source
	ToolVersion   string    `json:"tool_version"`   // pg_dump's version
	Snapshot      string    `json:"snapshot"`       // the exported snapshot dumped and counted
	Started       time.Time `json:"started"`
	Finished      time.Time `json:"finished"`
	// Size is the total size of the files in bytes.
	Size int64 `json:"size"`
	// SHA256 is the hex SHA-256 of the dump file (custom format) or of the
	// file list with their digests (directory format).
	SHA256 string `json:"sha256"`
	Files  []File `json:"files"`
	// Tables are the exact row counts of every table, counted in the
	// snapshot the dump was taken from.
	Tables []TableCount `json:"tables"`
}

// File is one file of a backup.
type File struct {
	Name   string `json:"name"` // relative to the backup, e.g. "dump" or "dump.d/toc.dat"
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// TableCount is the row count of one table.
type TableCount struct {
	Schema string `json:"schema"`
	Table  string `json:"table"`
	Rows   int64  `json:"rows"`
}

// TotalRows sums the row counts.
func (m *Manifest) TotalRows() int64 {
	var n int64
	for _, t := range m.Tables {
		n += t.Rows
	}
	return n
}

// DrillRecord is the stored outcome of one restore drill, kept next to the
// backup as logical/<id>/drill-<time>.json.
type DrillRecord struct {
	At      time.Time     `json:"at"`              // when the drill started
	Passed  bool          `json:"passed"`          // whether it passed
	Restore time.Duration `json:"restore_ns"`      // pg_restore's duration
	Error   string        `json:"error,omitempty"` // why it failed
}

// Backup is a listed logical backup: its manifest and its latest drill.
type Backup struct {
	Manifest
	// LastDrill is the newest drill of this backup, nil if never drilled.
	LastDrill *DrillRecord
}

// Good reports whether the backup is complete and its latest drill, if any,
// passed.
func (b Backup) Good() bool { return b.LastDrill == nil || b.LastDrill.Passed }

const logicalPrefix = "logical/"

var idRE = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}\.[0-9]{3}Z-[0-9a-f]{6}$`)

// newID makes a backup ID that sorts by time: 20261127T162545.123Z-3f9a1c.
func newID(t time.Time) string {
	return t.UTC().Format("20060102T150405.000Z") + "-" + randomHex(3)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ValidateID checks the form of a backup ID.
func ValidateID(id string) error {
	if !idRE.MatchString(id) {
		return fmt.Errorf("%w: %q is not a backup ID (like 20261127T162545.123Z-3f9a1c)", ErrInvalidName, id)
	}
	return nil
}

func putJSON(ctx context.Context, repo Repository, name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("backup: encoding %s: %w", name, err)
	}
	_, err = repo.Put(ctx, name, bytes.NewReader(append(b, '\n')))
	return err
}

func getJSON(ctx context.Context, repo Repository, name string, v any) error {
	r, err := repo.Open(ctx, name)
	if err != nil {
		return err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, 64<<20))
	if err != nil {
		return fmt.Errorf("backup: reading %s: %w", name, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("backup: %s is damaged: %w", name, err)
	}
	return nil
}

// ListBackups reads every finished logical backup in repo, of any
// database, oldest first.
func ListBackups(ctx context.Context, repo Repository) ([]Backup, error) {
	return listBackups(ctx, repo)
}

func listBackups(ctx context.Context, repo Repository) ([]Backup, error) {
	entries, err := listStored[Manifest](ctx, repo, logicalPrefix, "drill-")
	if err != nil {
		return nil, err
	}
	out := make([]Backup, len(entries))
	for i, e := range entries {
		out[i] = Backup{Manifest: e.man, LastDrill: e.record}
	}
	return out, nil
}

// storedEntry is one backup found under a repository prefix: its manifest
// and its newest check record (nil when never checked).
type storedEntry[M any] struct {
	man    M
	record *DrillRecord
}

// listStored reads every backup under prefix whose manifest.json exists,
// ids in order, each with its newest record (the last by name of the files
// recordPrefix*.json beside the manifest). Logical backups and base backups
// share this layout.
func listStored[M any](ctx context.Context, repo Repository, prefix, recordPrefix string) ([]storedEntry[M], error) {
	objs, err := repo.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	records := map[string]string{} // id -> newest record object
	var ids []string
	for _, o := range objs {
		id, file, ok := strings.Cut(strings.TrimPrefix(o.Name, prefix), "/")
		if !ok || ValidateID(id) != nil {
			continue
		}
		switch {
		case file == "manifest.json":
			ids = append(ids, id)
		case strings.HasPrefix(file, recordPrefix) && strings.HasSuffix(file, ".json"):
			if o.Name > records[id] {
				records[id] = o.Name
			}
		}
	}
	sort.Strings(ids)
	out := make([]storedEntry[M], 0, len(ids))
	for _, id := range ids {
		var e storedEntry[M]
		if err := getJSON(ctx, repo, prefix+id+"/manifest.json", &e.man); err != nil {
			if errors.Is(err, ErrNotFound) {
				continue // removed meanwhile
			}
			return nil, err
		}
		if r := records[id]; r != "" {
			var rec DrillRecord
			if err := getJSON(ctx, repo, r, &rec); err == nil {
				e.record = &rec
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// readStoredManifest reads the manifest of backup id under prefix and checks
// that it names id (what says which kind of backup, for the error).
func readStoredManifest[M any](ctx context.Context, repo Repository, prefix, id, what string, idOf func(*M) string) (*M, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	var man M
	if err := getJSON(ctx, repo, prefix+id+"/manifest.json", &man); err != nil {
		return nil, err
	}
	if got := idOf(&man); got != id {
		return nil, fmt.Errorf("%w: manifest of %s %s names %q", ErrChecksum, what, id, got)
	}
	return &man, nil
}
