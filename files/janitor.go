package files

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/justpg/justpg/internal/pgdb"
)

// CleanOptions tunes Clean.
type CleanOptions struct {
	// Grace spares bodies and large objects younger than this, so that Clean
	// never races an upload that is about to reference them; 0 means one
	// hour. Chunks whose body is gone are removed whatever their age: a
	// body and its chunks always commit together.
	Grace time.Duration
	// Batch is how many orphans one statement removes; 0 means 100.
	Batch int
}

// CleanStats says what Clean removed.
type CleanStats struct {
	// Bodies is the number of bodies (with their chunks) no file referenced.
	Bodies int64
	// LargeObjects is the number of large objects created by this package
	// that no body referenced.
	LargeObjects int64
	// Chunks is the number of chunk rows whose body was gone.
	Chunks int64
}

// Clean removes what no file references any more. Uploads interrupted in any
// way leave nothing (they run in one transaction, and PostgreSQL rolls back
// the transaction of a crashed client), and deletes release bodies through a
// trigger, so orphans only appear when rows are removed behind the
// package's back: TRUNCATE of the files table, triggers disabled
// (session_replication_role = replica), or restoring one table without the
// others. Run Clean from a
// periodic job; it is safe alongside uploads and downloads: it only takes
// rows nobody holds (SKIP LOCKED) and the foreign key from files to bodies
// stops it from removing a body an upload is referencing.
//
// Large objects are only removed when this package created them (they are
// listed in files_large_objects); other large objects in the database are
// never touched. Under row-level security Clean sees only the current
// tenant's rows: run it as the tables' owner or a role with BYPASSRLS.
func (s *Store) Clean(ctx context.Context, db DB, o CleanOptions) (CleanStats, error) {
	if o.Grace == 0 {
		o.Grace = time.Hour
	}
	if o.Grace < 0 {
		return CleanStats{}, fmt.Errorf("%w: negative grace", ErrInvalidInput)
	}
	if o.Batch == 0 {
		o.Batch = 100
	}
	var st CleanStats
	for {
		tag, err := db.Exec(ctx, `DELETE FROM `+s.blobs+` WHERE id IN (
			SELECT b.id FROM `+s.blobs+` b
			WHERE b.created_at < now() - $1::interval
			  AND NOT EXISTS (SELECT 1 FROM `+s.files+` f WHERE f.blob_id = b.id)
			LIMIT $2 FOR UPDATE SKIP LOCKED)`, o.Grace, o.Batch)
		if err != nil {
			return st, fmt.Errorf("files: cleaning bodies: %w", err)
		}
		st.Bodies += tag.RowsAffected()
		if tag.RowsAffected() < int64(o.Batch) {
			break
		}
	}
	// Chunks of bodies removed with triggers off. The recursive query visits
	// each distinct body id of the chunks' primary key once (a loose index
	// scan), so a run costs one index probe per body, not a scan of every
	// chunk. Chunks of an upload in progress are invisible to it.
	for {
		tag, err := db.Exec(ctx, `WITH RECURSIVE ids (blob_id) AS (
				(SELECT blob_id FROM `+s.chunks+` ORDER BY blob_id LIMIT 1)
				UNION ALL
				SELECT (SELECT c.blob_id FROM `+s.chunks+` c WHERE c.blob_id > ids.blob_id ORDER BY c.blob_id LIMIT 1)
				FROM ids WHERE ids.blob_id IS NOT NULL),
			gone AS (
				SELECT blob_id FROM ids
				WHERE blob_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM `+s.blobs+` b WHERE b.id = ids.blob_id)
				LIMIT $1)
			DELETE FROM `+s.chunks+` c USING gone WHERE c.blob_id = gone.blob_id`, o.Batch)
		if err != nil {
			return st, fmt.Errorf("files: cleaning chunks: %w", err)
		}
		st.Chunks += tag.RowsAffected()
		if tag.RowsAffected() == 0 {
			break
		}
	}
	for {
		var n int64
		err := pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `SELECT l.oid FROM `+s.los+` l
				WHERE l.created_at < now() - $1::interval
				  AND NOT EXISTS (SELECT 1 FROM `+s.blobs+` b WHERE b.lo_oid = l.oid)
				LIMIT $2 FOR UPDATE SKIP LOCKED`, o.Grace, o.Batch)
			if err != nil {
				return err
			}
			oids, err := pgx.CollectRows(rows, pgx.RowTo[uint32])
			if err != nil || len(oids) == 0 {
				return err
			}
			if _, err := tx.Exec(ctx, `SELECT lo_unlink(m.oid) FROM pg_largeobject_metadata m WHERE m.oid = ANY($1)`, oids); err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, `DELETE FROM `+s.los+` WHERE oid = ANY($1)`, oids)
			n = tag.RowsAffected()
			return err
		})
		if err != nil {
			return st, fmt.Errorf("files: cleaning large objects: %w", err)
		}
		st.LargeObjects += n
		if n < int64(o.Batch) {
			break
		}
	}
	if st.Bodies > 0 || st.LargeObjects > 0 || st.Chunks > 0 {
		s.log.WarnContext(ctx, "files: removed orphans", "bodies", st.Bodies, "large_objects", st.LargeObjects, "chunks", st.Chunks)
	}
	return st, nil
}
