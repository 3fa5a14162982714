package files

import (
	"context"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"mime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/justpg/justpg/internal/ident"
	"github.com/justpg/justpg/internal/migrate"
	"github.com/justpg/justpg/internal/pgdb"
)

// DB runs statements: a *pgxpool.Pool, *pgxpool.Conn, *pgx.Conn or a pgx.Tx.
// Pass your own transaction to make a file part of it.
type DB = pgdb.DB

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the package's SQL migrations (NNN_name.sql at the root),
// for teams that keep their own migration history.
func Migrations() fs.FS {
	return migrate.Sub(migrationFiles, "migrations")
}

// Migrate creates or upgrades the package's tables in schema "justpg".
func Migrate(ctx context.Context, db DB) error {
	return MigrateSchema(ctx, db, migrate.DefaultSchema)
}

// MigrateSchema creates or upgrades the package's tables in schema.
func MigrateSchema(ctx context.Context, db DB, schema string) error {
	return migrate.Apply(ctx, db, schema, "files", Migrations())
}

// Storage says where a file's bytes live.
type Storage string

// The storage kinds.
const (
	// Chunks stores the bytes as rows of files_chunks (the default): works
	// with row-level security, logical replication and pg_dump like any
	// other table.
	Chunks Storage = "chunks"
	// LargeObjects stores the bytes in one PostgreSQL large object. See the
	// package documentation for its limits.
	LargeObjects Storage = "largeobject"
)

// Defaults and bounds of Config.
const (
	// DefaultChunkSize is the largest chunk that fits in one table row and
	// page (with TOAST kept out of the way by toast_tuple_target), which is
	// what makes uploads cheapest for the server; see the package docs.
	DefaultChunkSize = 8000
	MinChunkSize     = 4 << 10
	MaxChunkSize     = 64 << 20
	DefaultMaxSize   = 1 << 30
	// MaxNameLen is the longest file name accepted, in bytes.
	MaxNameLen = 255
	// MaxOwnerLen is the longest owner accepted, in bytes.
	MaxOwnerLen = 255
	// MaxMetadataLen is the largest custom metadata document accepted, in bytes.
	MaxMetadataLen = 64 << 10
)

// Config configures a Store. The zero value is usable.
type Config struct {
	// Schema holds the tables; "" means "justpg". It must have been
	// migrated with MigrateSchema.
	Schema string
	// ChunkSize is the size of each stored chunk row; 0 means
	// DefaultChunkSize (8000 bytes). It must lie within [MinChunkSize,
	// MaxChunkSize]. Chunks up to DefaultChunkSize are stored in the row;
	// larger ones are TOASTed, which costs the server about three times more
	// CPU per uploaded byte. Reads fetch up to 1 MiB of chunks per round trip
	// whatever the chunk size. Large objects are written and read in pieces
	// of max(ChunkSize, 1 MiB). Changing it later is safe: every body records
	// its own chunk size.
	ChunkSize int
	// MaxSize is the largest file Put accepts, in bytes; 0 means
	// DefaultMaxSize (1 GiB), a negative value means no limit.
	MaxSize int64
	// AllowedTypes, when not empty, is the allow-list of media types Put
	// accepts, such as "image/png" or "image/*" (parameters are ignored).
	// The type checked is the caller's, or the detected one.
	AllowedTypes []string
	// RejectEmpty makes Put refuse empty files with ErrEmpty.
	RejectEmpty bool
	// Dedup stores identical bodies (same SHA-256 and size, same tenant)
	// once and counts references; the body is removed with its last file.
	Dedup bool
	// Storage is where new bodies go; "" means Chunks.
	Storage Storage
	// Logger receives warnings from the janitor; nil discards them.
	Logger *slog.Logger
}

// Store puts and gets files. It holds no connection: every operation takes
// the DB to run on. A Store is safe for concurrent use.
type Store struct {
	cfg    Config
	log    *slog.Logger
	schema string
	files  string // quoted, schema-qualified table names
	blobs  string
	chunks string
	los    string
	chunkT pgx.Identifier
}

// New validates cfg and returns a Store.
func New(cfg Config) (*Store, error) {
	if cfg.Schema == "" {
		cfg.Schema = migrate.DefaultSchema
	}
	if err := ident.Validate(cfg.Schema); err != nil {
		return nil, fmt.Errorf("files: schema: %w", err)
	}
	if cfg.ChunkSize == 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	if cfg.ChunkSize < MinChunkSize || cfg.ChunkSize > MaxChunkSize {
		return nil, fmt.Errorf("files: chunk size %d is outside [%d, %d]", cfg.ChunkSize, MinChunkSize, MaxChunkSize)
	}
	if cfg.MaxSize == 0 {
		cfg.MaxSize = DefaultMaxSize
	}
	switch cfg.Storage {
	case "":
		cfg.Storage = Chunks
	case Chunks, LargeObjects:
	default:
		return nil, fmt.Errorf("files: unknown storage %q", cfg.Storage)
	}
	for _, t := range cfg.AllowedTypes {
		if err := validPattern(t); err != nil {
			return nil, err
		}
	}
	s := &Store{cfg: cfg, log: cfg.Logger, schema: cfg.Schema}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.files = ident.MustQuote(cfg.Schema, "files")
	s.blobs = ident.MustQuote(cfg.Schema, "files_blobs")
	s.chunks = ident.MustQuote(cfg.Schema, "files_chunks")
	s.los = ident.MustQuote(cfg.Schema, "files_large_objects")
	s.chunkT = pgx.Identifier{cfg.Schema, "files_chunks"}
	return s, nil
}

// Errors callers branch on with errors.Is.
var (
	// ErrNotFound: no file with that id is visible (or the id is malformed).
	ErrNotFound = errors.New("files: file not found")
	// ErrTooLarge: the body exceeds the maximum size.
	ErrTooLarge = errors.New("files: file too large")
	// ErrEmpty: the body is empty and empty files are rejected.
	ErrEmpty = errors.New("files: empty file")
	// ErrTypeNotAllowed: the content type is not on the allow-list.
	ErrTypeNotAllowed = errors.New("files: content type not allowed")
	// ErrInvalidName: the file name is empty, too long, or contains path
	// separators, control characters or is "." or "..".
	ErrInvalidName = errors.New("files: invalid file name")
	// ErrInvalidInput: another argument (owner, content type, metadata,
	// expected size or checksum) is malformed.
	ErrInvalidInput = errors.New("files: invalid input")
	// ErrSizeMismatch: the body's length differs from the announced size.
	ErrSizeMismatch = errors.New("files: size does not match")
	// ErrChecksumMismatch: the body's SHA-256 differs from the announced one.
	ErrChecksumMismatch = errors.New("files: checksum does not match")
	// ErrCorrupt: stored chunks do not match the recorded size.
	ErrCorrupt = errors.New("files: stored body is corrupt")
)

// File is a stored file's metadata.
type File struct {
	ID string
	// TenantID is the tenant the file was written under (app.tenant_id),
	// "" when it is not tenant-scoped.
	TenantID    string
	Owner       string
	Name        string
	ContentType string
	Size        int64
	SHA256      [32]byte
	// Metadata is the caller's JSON object ("{}" when none was given).
	Metadata  json.RawMessage
	Storage   Storage
	CreatedAt time.Time
	UpdatedAt time.Time

	blobID    int64
	chunkSize int
	loOID     uint32
}

// Checksum returns the SHA-256 of the body in hex.
func (f File) Checksum() string { return hex.EncodeToString(f.SHA256[:]) }

// ETag returns a strong entity tag derived from the body's SHA-256.
func (f File) ETag() string { return `"sha256-` + f.Checksum() + `"` }

// fileColumns matches scanFile; the alias f is files, b is files_blobs.
const fileColumns = `f.id::text, coalesce(f.tenant_id::text, ''), f.owner, f.name, f.content_type, f.size, f.sha256,
	f.metadata, b.storage, f.created_at, f.updated_at, b.id, b.chunk_size, coalesce(b.lo_oid, 0)`

func scanFile(row pgx.Row) (File, error) {
	var f File
	var sum []byte
	var storage string
	err := row.Scan(&f.ID, &f.TenantID, &f.Owner, &f.Name, &f.ContentType, &f.Size, &sum,
		&f.Metadata, &storage, &f.CreatedAt, &f.UpdatedAt, &f.blobID, &f.chunkSize, &f.loOID)
	if err != nil {
		return File{}, err
	}
	copy(f.SHA256[:], sum)
	f.Storage = Storage(storage)
	return f, nil
}

// Stat returns a file's metadata.
func (s *Store) Stat(ctx context.Context, db DB, id string) (File, error) {
	if !validUUID(id) {
		return File{}, fmt.Errorf("%w: malformed id %q", ErrNotFound, id)
	}
	f, err := scanFile(db.QueryRow(ctx, `SELECT `+fileColumns+` FROM `+s.files+` f JOIN `+s.blobs+` b ON b.id = f.blob_id
		WHERE f.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return File{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return File{}, fmt.Errorf("files: stat %s: %w", id, err)
	}
	return f, nil
}

// validUUID accepts the canonical 8-4-4-4-12 hex form.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// validPattern checks an AllowedTypes entry.
func validPattern(p string) error {
	typ, sub, ok := strings.Cut(p, "/")
	if !ok || typ == "" || sub == "" || typ == "*" {
		return fmt.Errorf("files: allowed type %q is not type/subtype or type/*", p)
	}
	if sub != "*" {
		if _, _, err := mime.ParseMediaType(p); err != nil {
			return fmt.Errorf("files: allowed type %q: %w", p, err)
		}
	}
	return nil
}

// allowed reports whether media type mt (lower case, no parameters) is on
// the allow-list.
func (s *Store) allowed(mt string) bool {
	if len(s.cfg.AllowedTypes) == 0 {
		return true
	}
	typ, _, _ := strings.Cut(mt, "/")
	for _, p := range s.cfg.AllowedTypes {
		p = strings.ToLower(p)
		if p == mt || strings.HasSuffix(p, "/*") && strings.TrimSuffix(p, "/*") == typ {
			return true
		}
	}
	return false
}
