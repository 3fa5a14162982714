// Package migrate applies the embedded, versioned SQL migrations of the justpg
// packages.
//
// Each package owns a "line" of migrations: files named NNN_description.sql
// in an fs.FS, applied in version order. Every applied migration is recorded
// in one shared table, <schema>.migrations, with a SHA-256 of its text. A run
// takes pg_advisory_xact_lock first and applies everything pending in one
// transaction, so any number of application instances starting at once apply
// each migration exactly once, and a failing migration leaves no trace.
//
// Migration SQL names its tables unqualified: the runner sets search_path to
// "<schema>", public for the transaction, so the same files serve any schema.
// Migrations run inside a transaction and so cannot use statements such as
// CREATE INDEX CONCURRENTLY.
package migrate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/justpg/justpg/internal/ident"
	"github.com/justpg/justpg/internal/pgdb"
)

// DefaultSchema is the schema that holds justpg's own tables unless a
// package's Config names another.
const DefaultSchema = "justpg"

// Line is one package's migrations.
type Line struct {
	// Name identifies the line in the migrations table, e.g. "jobs".
	Name string
	// FS holds the migration files at its root, named NNN_description.sql.
	FS fs.FS
}

// Migration is one parsed migration file.
type Migration struct {
	Version  int
	Name     string // file name without the version prefix and extension
	File     string // file name in the line's FS
	SQL      string
	Checksum string // hex SHA-256 of SQL
}

// Applied is a row of the migrations table.
type Applied struct {
	Line     string
	Version  int
	Name     string
	Checksum string
}

// Errors callers branch on with errors.Is.
var (
	// ErrDatabaseAhead means the database has migrations this code does not
	// know: it was migrated by a newer release.
	ErrDatabaseAhead = errors.New("migrate: database is ahead of this code")
	// ErrChecksumMismatch means an applied migration's text has changed since
	// it was applied.
	ErrChecksumMismatch = errors.New("migrate: applied migration was changed")
	// ErrBadMigration means a migration file is misnamed or duplicated.
	ErrBadMigration = errors.New("migrate: bad migration file")
)

// Error reports a migration that failed to apply. The database error stays
// reachable through errors.As (e.g. *pgconn.PgError).
type Error struct {
	Line    string
	Version int
	Name    string
	Err     error
}

func (e *Error) Error() string {
	return fmt.Sprintf("migrate: %s %03d_%s failed: %v", e.Line, e.Version, e.Name, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

var fileRE = regexp.MustCompile(`^(\d+)_([A-Za-z0-9_\-]+)\.sql$`)

// Load reads and orders the migrations of a line. Files that do not end in
// .sql are ignored; a .sql file with a malformed name or a duplicate version
// is an error, so a typo cannot silently skip a migration.
func Load(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("migrate: reading migrations: %w", err)
	}
	var out []Migration
	seen := map[int]string{}
	for _, e := range entries {
		if e.IsDir() || path.Ext(e.Name()) != ".sql" {
			continue
		}
		m := fileRE.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("%w: %q is not named NNN_description.sql", ErrBadMigration, e.Name())
		}
		v, err := strconv.Atoi(m[1])
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%w: %q has no positive version", ErrBadMigration, e.Name())
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("%w: %q and %q share version %d", ErrBadMigration, prev, e.Name(), v)
		}
		seen[v] = e.Name()
		body, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("migrate: reading %s: %w", e.Name(), err)
		}
		sum := sha256.Sum256(body)
		out = append(out, Migration{
			Version: v, Name: m[2], File: e.Name(), SQL: string(body),
			Checksum: hex.EncodeToString(sum[:]),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// LockKey is the advisory lock key a run on schema holds. Exposed so that
// tests and operators can see who is migrating.
func LockKey(schema string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("justpg.migrate\x00" + schema))
	return int64(h.Sum64())
}

// Run applies every pending migration of the given lines to schema ("" means
// DefaultSchema), creating the schema and the migrations table when needed.
// It returns the migrations it applied (none when the database is current).
//
// When db is a transaction, Run works inside a savepoint of it and the
// advisory lock is held until the caller's transaction ends.
func Run(ctx context.Context, db pgdb.DB, schema string, lines ...Line) ([]Migration, error) {
	if schema == "" {
		schema = DefaultSchema
	}
	qschema, err := ident.Quote(schema)
	if err != nil {
		return nil, fmt.Errorf("migrate: schema: %w", err)
	}
	plans := make([][]Migration, len(lines))
	for i, l := range lines {
		if l.Name == "" || l.FS == nil {
			return nil, fmt.Errorf("%w: line %d has no name or no FS", ErrBadMigration, i)
		}
		if plans[i], err = Load(l.FS); err != nil {
			return nil, fmt.Errorf("%s: %w", l.Name, err)
		}
	}

	var done []Migration
	err = pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
		done = done[:0]
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, LockKey(schema)); err != nil {
			return fmt.Errorf("migrate: taking the migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+qschema); err != nil {
			return fmt.Errorf("migrate: creating schema %s: %w", qschema, err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+qschema+`.migrations (
			line       text        NOT NULL,
			version    integer     NOT NULL,
			name       text        NOT NULL,
			checksum   text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now(),
			PRIMARY KEY (line, version))`); err != nil {
			return fmt.Errorf("migrate: creating the migrations table: %w", err)
		}
		var oldPath string
		if err := tx.QueryRow(ctx, `SELECT current_setting('search_path'), set_config('search_path', $1, true)`,
			qschema+", public").Scan(&oldPath, nil); err != nil {
			return fmt.Errorf("migrate: setting search_path: %w", err)
		}
		for i, l := range lines {
			applied, err := appliedIn(ctx, tx, qschema, l.Name)
			if err != nil {
				return err
			}
			pending, err := pendingOf(l.Name, plans[i], applied)
			if err != nil {
				return err
			}
			for _, m := range pending {
				if _, err := tx.Exec(ctx, m.SQL); err != nil {
					return &Error{Line: l.Name, Version: m.Version, Name: m.Name, Err: err}
				}
				if _, err := tx.Exec(ctx, `INSERT INTO `+qschema+`.migrations (line, version, name, checksum)
					VALUES ($1, $2, $3, $4)`, l.Name, m.Version, m.Name, m.Checksum); err != nil {
					return fmt.Errorf("migrate: recording %s %d: %w", l.Name, m.Version, err)
				}
				done = append(done, m)
			}
		}
		// Leave a caller's own transaction with the search_path it had.
		if _, err := tx.Exec(ctx, `SELECT set_config('search_path', $1, true)`, oldPath); err != nil {
			return fmt.Errorf("migrate: restoring search_path: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return done, nil
}

// pendingOf compares the code's migrations with what the database recorded.
func pendingOf(line string, code []Migration, applied []Applied) ([]Migration, error) {
	byVersion := make(map[int]Migration, len(code))
	maxCode := 0
	for _, m := range code {
		byVersion[m.Version] = m
		maxCode = m.Version
	}
	done := make(map[int]bool, len(applied))
	for _, a := range applied {
		m, ok := byVersion[a.Version]
		if !ok {
			if a.Version > maxCode {
				return nil, fmt.Errorf("%w: line %q is at version %d (%s) but this code knows versions up to %d; upgrade the code",
					ErrDatabaseAhead, line, a.Version, a.Name, maxCode)
			}
			return nil, fmt.Errorf("%w: line %q has applied version %d (%s), which this code does not have",
				ErrChecksumMismatch, line, a.Version, a.Name)
		}
		if m.Checksum != a.Checksum {
			return nil, fmt.Errorf("%w: line %q version %d (%s) differs from the text that was applied",
				ErrChecksumMismatch, line, a.Version, m.File)
		}
		done[a.Version] = true
	}
	var pending []Migration
	for _, m := range code {
		if !done[m.Version] {
			pending = append(pending, m)
		}
	}
	return pending, nil
}

func appliedIn(ctx context.Context, db pgdb.DB, qschema, line string) ([]Applied, error) {
	rows, err := db.Query(ctx, `SELECT line, version, name, checksum FROM `+qschema+`.migrations
		WHERE line = $1 ORDER BY version`, line)
	if err != nil {
		return nil, fmt.Errorf("migrate: reading applied migrations: %w", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Applied])
	if err != nil {
		return nil, fmt.Errorf("migrate: reading applied migrations: %w", err)
	}
	return out, nil
}

// AppliedMigrations lists what the migrations table of schema records for
// line, oldest first. It returns no rows (and no error) when the table does
// not exist yet.
func AppliedMigrations(ctx context.Context, db pgdb.DB, schema, line string) ([]Applied, error) {
	if schema == "" {
		schema = DefaultSchema
	}
	qschema, err := ident.Quote(schema)
	if err != nil {
		return nil, fmt.Errorf("migrate: schema: %w", err)
	}
	var exists bool
	if err := db.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, qschema+".migrations").Scan(&exists); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	if !exists {
		return nil, nil
	}
	return appliedIn(ctx, db, qschema, line)
}

// Sub returns directory dir of a package's embedded files: the fs.FS a
// package exports as its Migrations. It panics if dir is missing, which for
// an embed.FS is a build mistake, not a run-time condition.
func Sub(embedded fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(embedded, dir)
	if err != nil {
		panic(fmt.Sprintf("migrate: embedded %q: %v", dir, err))
	}
	return sub
}

// Apply runs one package's line on schema and prefixes any error with the
// package's name, as its MigrateSchema reports it.
func Apply(ctx context.Context, db pgdb.DB, schema, pkg string, fsys fs.FS) error {
	if _, err := Run(ctx, db, schema, Line{Name: pkg, FS: fsys}); err != nil {
		return fmt.Errorf("%s: %w", pkg, err)
	}
	return nil
}
