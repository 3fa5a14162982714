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
	objs, err := repo.List(ctx, logicalPrefix)
	if err != nil {
		return nil, err
	}
	drills := map[string]string{} // id -> newest drill object
	var ids []string
	for _, o := range objs {
		rest := strings.TrimPrefix(o.Name, logicalPrefix)
		id, file, ok := strings.Cut(rest, "/")
		if !ok || ValidateID(id) != nil {
			continue
		}
		switch {
		case file == "manifest.json":
			ids = append(ids, id)
		case strings.HasPrefix(file, "drill-") && strings.HasSuffix(file, ".json"):
			if o.Name > drills[id] {
				drills[id] = o.Name
			}
		}
	}
	sort.Strings(ids)
	out := make([]Backup, 0, len(ids))
	for _, id := range ids {
		var b Backup
		if err := getJSON(ctx, repo, logicalPrefix+id+"/manifest.json", &b.Manifest); err != nil {
			if errors.Is(err, ErrNotFound) {
				continue // removed meanwhile
			}
			return nil, err
		}
		if d := drills[id]; d != "" {
			var rec DrillRecord
			if err := getJSON(ctx, repo, d, &rec); err == nil {
				b.LastDrill = &rec
			}
		}
		out = append(out, b)
	}
	return out, nil
}
