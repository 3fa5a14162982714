package files

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/justpg/justpg/internal/pgdb"
)

// Delete removes a file. Its body goes with its last reference (at once
// without Dedup). Deleting runs in one statement; the database trigger that
// releases the body also runs for plain SQL deletes of files rows.
func (s *Store) Delete(ctx context.Context, db DB, id string) error {
	if !validUUID(id) {
		return fmt.Errorf("%w: malformed id %q", ErrNotFound, id)
	}
	// Run again after a serialization failure, which REPEATABLE READ or
	// SERIALIZABLE (the session's default) raise for a file or body row
	// that a concurrent delete or upload changed (see pgdb.Retry).
	var tag pgconn.CommandTag
	err := pgdb.Retry(ctx, db, func() (err error) {
		tag, err = db.Exec(ctx, `DELETE FROM `+s.files+` WHERE id = $1`, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("files: deleting %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return nil
}

// Update changes a file's metadata; nil fields stay as they are.
type Update struct {
	Name        *string
	ContentType *string
	Owner       *string
	// Metadata, when not nil, replaces the custom JSON object.
	Metadata json.RawMessage
}

// Update applies u to a file and returns the result.
func (s *Store) Update(ctx context.Context, db DB, id string, u Update) (File, error) {
	if !validUUID(id) {
		return File{}, fmt.Errorf("%w: malformed id %q", ErrNotFound, id)
	}
	var name, ct, owner *string
	var meta json.RawMessage
	if u.Name != nil {
		if err := ValidateName(*u.Name); err != nil {
			return File{}, err
		}
		name = u.Name
	}
	if u.ContentType != nil {
		full, base, err := normalizeContentType(*u.ContentType)
		if err != nil {
			return File{}, err
		}
		if !s.allowed(base) {
			return File{}, fmt.Errorf("%w: %s", ErrTypeNotAllowed, base)
		}
		ct = &full
	}
	if u.Owner != nil {
		if err := validateOwner(*u.Owner); err != nil {
			return File{}, err
		}
		owner = u.Owner
	}
	if u.Metadata != nil {
		var err error
		if meta, err = normalizeMetadata(u.Metadata); err != nil {
			return File{}, err
		}
	}
	var f File
	err := pgdb.Retry(ctx, db, func() (err error) {
		f, err = scanFile(db.QueryRow(ctx, `WITH f AS (
			UPDATE `+s.files+` SET name = coalesce($2, name), content_type = coalesce($3, content_type),
				owner = coalesce($4, owner), metadata = coalesce($5, metadata), updated_at = now()
			WHERE id = $1 RETURNING *)
		SELECT `+fileColumns+` FROM f JOIN `+s.blobs+` b ON b.id = f.blob_id`, id, name, ct, owner, meta))
		return err
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return File{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return File{}, fmt.Errorf("files: updating %s: %w", id, err)
	}
	return f, nil
}

// DefaultListLimit and MaxListLimit bound ListOptions.Limit.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// ListOptions selects files. Results are ordered by name (byte order), then
// id, and paginated by keyset: pass the previous Page's Next as After.
type ListOptions struct {
	// Owner, when HasOwner is set, keeps files of that owner only.
	Owner    string
	HasOwner bool
	// Prefix keeps files whose name starts with it.
	Prefix string
	// After is the cursor returned as Page.Next; "" starts at the beginning.
	After string
	// Limit is the page size; 0 means DefaultListLimit, at most MaxListLimit.
	Limit int
}

// Page is one page of List.
type Page struct {
	Files []File
	// Next is the cursor for the following page, "" when this is the last.
	Next string
}

// List returns a page of files visible to db (with row-level security,
// those of the current tenant).
func (s *Store) List(ctx context.Context, db DB, o ListOptions) (Page, error) {
	sql, args, err := s.listQuery(o)
	if err != nil {
		return Page{}, err
	}
	limit := args[len(args)-1].(int) - 1
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return Page{}, fmt.Errorf("files: listing: %w", err)
	}
	var p Page
	for rows.Next() {
		f, err := scanFile(rows)
		if err != nil {
			rows.Close()
			return Page{}, fmt.Errorf("files: listing: %w", err)
		}
		p.Files = append(p.Files, f)
	}
	if err := rows.Err(); err != nil {
		return Page{}, fmt.Errorf("files: listing: %w", err)
	}
	if len(p.Files) > limit {
		p.Files = p.Files[:limit]
		last := p.Files[limit-1]
		p.Next = encodeCursor(last.Name, last.ID)
	}
	return p, nil
}

func (s *Store) listQuery(o ListOptions) (string, []any, error) {
	limit := o.Limit
	switch {
	case limit == 0:
		limit = DefaultListLimit
	case limit < 0 || limit > MaxListLimit:
		return "", nil, fmt.Errorf("%w: limit %d outside [1, %d]", ErrInvalidInput, limit, MaxListLimit)
	}
	if !utf8.ValidString(o.Prefix) || strings.IndexByte(o.Prefix, 0) >= 0 {
		return "", nil, fmt.Errorf("%w: prefix is not valid text", ErrInvalidInput)
	}
	// Only the conditions in use go into the SQL, so that every shape of the
	// query gets a plan that uses the (owner, name, id) or (name, id) index.
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if o.HasOwner {
		where = append(where, "f.owner = "+arg(o.Owner))
	}
	if o.Prefix != "" {
		where = append(where, "f.name >= "+arg(o.Prefix))
		if hi, ok := prefixUpperBound(o.Prefix); ok {
			where = append(where, "f.name < "+arg(hi))
		}
	}
	if o.After != "" {
		name, id, err := decodeCursor(o.After)
		if err != nil {
			return "", nil, err
		}
		where = append(where, "(f.name, f.id) > ("+arg(name)+", "+arg(id)+"::uuid)")
	}
	sql := `SELECT ` + fileColumns + ` FROM ` + s.files + ` f JOIN ` + s.blobs + ` b ON b.id = f.blob_id`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += " ORDER BY f.name, f.id LIMIT " + arg(limit+1)
	return sql, args, nil
}

// encodeCursor makes an opaque List cursor from the last row's key.
func encodeCursor(name, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(id + name))
}

func decodeCursor(c string) (name, id string, err error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 36 || !validUUID(string(b[:36])) || !utf8.Valid(b[36:]) || bytes.IndexByte(b, 0) >= 0 {
		return "", "", fmt.Errorf("%w: malformed cursor", ErrInvalidInput)
	}
	return string(b[36:]), string(b[:36]), nil
}

// prefixUpperBound returns the smallest string greater than every string
// starting with p in byte (code point) order: p with its last rune
// incremented. ok is false when no bound exists (p is all U+10FFFF).
func prefixUpperBound(p string) (string, bool) {
	rs := []rune(p)
	for i := len(rs) - 1; i >= 0; i-- {
		r := rs[i] + 1
		if r == 0xd800 {
			r = 0xe000 // skip the surrogates, which UTF-8 cannot hold
		}
		if r <= utf8.MaxRune {
			rs[i] = r
			return string(rs[:i+1]), true
		}
	}
	return "", false
}
