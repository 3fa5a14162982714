package tenancy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/tenancy"
)

func TestMigrateTenantsReportsEachSchema(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	const n = 200
	ids := make([]uuid.UUID, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := atomic.Int64{}
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				tn, err := e.m.Create(ctx, e.owner, tenancy.NewTenant{Slug: fmt.Sprintf("s%03d", i), Name: "S", Isolation: tenancy.Dedicated})
				if err != nil {
					errs <- err
					return
				}
				ids[i] = tn.ID
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	// Sabotage one schema: the column the next migration adds is already
	// there with another type.
	_, err := e.owner.Exec(ctx, `ALTER TABLE tenant_s137.notes ADD COLUMN pinned text`)
	require.NoError(t, err)

	v2 := appMigrations()
	v2["002_pinned.sql"] = &mapFile{Data: []byte(`ALTER TABLE notes ADD COLUMN pinned boolean NOT NULL DEFAULT false;`)}
	m2, err := tenancy.New(tenancy.Config{TenantMigrations: v2, AppRole: e.role})
	require.NoError(t, err)
	rep, err := m2.MigrateTenants(ctx, e.owner, 4)
	var me *tenancy.MigrateError
	require.ErrorAs(t, err, &me)
	require.Len(t, rep.Results, n)
	require.Len(t, me.Failed, 1)
	assert.Equal(t, "tenant_s137", me.Failed[0].Schema)
	assert.Equal(t, ids[137], me.Failed[0].Tenant)
	assert.Equal(t, "42701", pgCode(me.Failed[0].Err), "duplicate column: %v", me.Failed[0].Err)
	assert.Contains(t, err.Error(), "tenant_s137")
	ok := 0
	for _, r := range rep.Results {
		if r.Err == nil {
			assert.Equal(t, []string{"002_pinned.sql"}, r.Applied, r.Schema)
			ok++
		}
	}
	assert.Equal(t, n-1, ok)
	var withPinned int
	require.NoError(t, e.owner.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns
		WHERE table_schema LIKE 'tenant\_s%' AND table_name = 'notes' AND column_name = 'pinned' AND data_type = 'boolean'`).Scan(&withPinned))
	assert.Equal(t, n-1, withPinned)

	// Fix the schema; a second run applies only what is missing there.
	_, err = e.owner.Exec(ctx, `ALTER TABLE tenant_s137.notes DROP COLUMN pinned`)
	require.NoError(t, err)
	rep, err = m2.MigrateTenants(ctx, e.owner, 8)
	require.NoError(t, err)
	applied := 0
	for _, r := range rep.Results {
		applied += len(r.Applied)
	}
	assert.Equal(t, 1, applied)

	// The app role works in a dedicated schema through the same code.
	e.insertNotes(t, ids[5], 2)
	assert.Len(t, e.visible(t, e.app, ids[5]), 2)
	assert.Empty(t, e.visible(t, e.app, ids[6]))
}

// note contents of a tenant: id -> body, and comment id -> note id.
type snapshot struct {
	notes    map[uuid.UUID]string
	comments map[uuid.UUID]uuid.UUID
}

func (e *env) snapshot(t *testing.T, id uuid.UUID) snapshot {
	t.Helper()
	ctx := context.Background()
	s := snapshot{notes: map[uuid.UUID]string{}, comments: map[uuid.UUID]uuid.UUID{}}
	require.NoError(t, e.m.WithTenant(ctx, e.app, id, func(tx pgx.Tx) error {
		var a, b uuid.UUID
		var body string
		rows, _ := tx.Query(ctx, `SELECT id, body FROM notes`)
		if _, err := pgx.ForEachRow(rows, []any{&a, &body}, func() error { s.notes[a] = body; return nil }); err != nil {
			return err
		}
		rows, _ = tx.Query(ctx, `SELECT id, note_id FROM comments`)
		_, err := pgx.ForEachRow(rows, []any{&a, &b}, func() error { s.comments[a] = b; return nil })
		return err
	}))
	return s
}

func TestMoveSharedToDedicatedAndBackKeepsEveryRow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	a, b := e.tenant(t, "big-co", tenancy.Shared), e.tenant(t, "small-co", tenancy.Shared)
	for _, tn := range []tenancy.Tenant{a, b} {
		require.NoError(t, e.m.WithTenant(ctx, e.app, tn.ID, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `WITH n AS (INSERT INTO notes (body) SELECT 'note ' || g FROM generate_series(1, 50) g RETURNING id)
				INSERT INTO comments (note_id, body) SELECT id, 'c' || k FROM n, generate_series(1, 2) k`)
			return err
		}))
	}
	beforeA, beforeB := e.snapshot(t, a.ID), e.snapshot(t, b.ID)
	require.Len(t, beforeA.notes, 50)
	require.Len(t, beforeA.comments, 100)

	// A writer keeps committing notes for A while it moves: none may be lost.
	stop := make(chan struct{})
	var written atomic.Int64
	var werr error
	var wg sync.WaitGroup
	writerDone := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(writerDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			err := e.m.WithTenant(ctx, e.app, a.ID, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, `INSERT INTO notes (body) VALUES ('during move')`)
				return err
			})
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "40001" {
				continue // a REPEATABLE READ or SERIALIZABLE writer (JUSTPG_TEST_SESSION) retries
			}
			if err != nil {
				werr = err
				return
			}
			written.Add(1)
		}
	}()
	waitWrites := func(n int64) {
		for written.Load() < n {
			select {
			case <-writerDone:
				return // the writer failed; werr says why
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	waitWrites(5)
	rep, err := e.m.MoveToDedicated(ctx, e.owner, a.ID)
	require.NoError(t, err)
	waitWrites(10 + rep.Rows[`"tenant_big_co"."notes"`] - 50) // a few writes after the move too
	close(stop)
	wg.Wait()
	require.NoError(t, werr)
	assert.Equal(t, int64(100), rep.Rows[`"tenant_big_co"."comments"`])

	moved, err := e.m.Get(ctx, e.owner, a.ID)
	require.NoError(t, err)
	assert.Equal(t, tenancy.Dedicated, moved.Isolation)
	assert.Equal(t, "tenant_big_co", moved.Schema)
	afterA := e.snapshot(t, a.ID)
	assert.Len(t, afterA.notes, 50+int(written.Load()))
	for id, body := range beforeA.notes {
		assert.Equal(t, body, afterA.notes[id])
	}
	assert.Equal(t, beforeA.comments, afterA.comments)
	assert.Equal(t, beforeB, e.snapshot(t, b.ID), "the other tenant is untouched")
	var left int
	require.NoError(t, e.owner.QueryRow(ctx, `SELECT count(*) FROM public.notes WHERE tenant_id = $1`, a.ID).Scan(&left))
	assert.Zero(t, left, "nothing of A is left in the shared tables")
	require.NoError(t, e.owner.QueryRow(ctx, `SELECT count(*) FROM tenant_big_co.notes`).Scan(&left))
	assert.Equal(t, len(afterA.notes), left)

	// From a dedicated schema, naming another schema's table still shows
	// only one's own rows.
	require.NoError(t, e.m.WithTenant(ctx, e.app, b.ID, func(tx pgx.Tx) error {
		var n int
		require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM tenant_big_co.notes`).Scan(&n))
		assert.Zero(t, n)
		return nil
	}))

	_, err = e.m.MoveToDedicated(ctx, e.owner, a.ID)
	assert.ErrorIs(t, err, tenancy.ErrIsolation)

	// And back.
	_, err = e.m.MoveToShared(ctx, e.owner, a.ID)
	require.NoError(t, err)
	back := e.snapshot(t, a.ID)
	assert.Equal(t, afterA, back)
	var exists bool
	require.NoError(t, e.owner.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'tenant_big_co')`).Scan(&exists))
	assert.False(t, exists, "the dedicated schema is removed")
	assert.Equal(t, beforeB, e.snapshot(t, b.ID))
}

func TestExportStreamsOnlyTheTenant(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	a, b := e.tenant(t, "acme", tenancy.Shared), e.tenant(t, "globex", tenancy.Dedicated)
	e.insertNotes(t, a.ID, 3)
	e.insertNotes(t, b.ID, 4)
	for _, tc := range []struct {
		tn    tenancy.Tenant
		notes int64
		table string
	}{{a, 3, `"public"."notes"`}, {b, 4, `"tenant_globex"."notes"`}} {
		var buf bytesBuffer
		rep, err := e.m.Export(ctx, e.app, tc.tn.ID, &buf)
		require.NoError(t, err)
		assert.Equal(t, tc.notes, rep.Rows[tc.table])
		out := buf.String()
		assert.Contains(t, out, "COPY "+tc.table+" (")
		assert.Contains(t, out, tc.tn.ID.String())
		other := a
		if tc.tn.ID == a.ID {
			other = b
		}
		assert.NotContains(t, out, other.ID.String())
	}
	// A failing writer stops the export with its error.
	_, err := e.m.Export(ctx, e.app, a.ID, failingWriter{})
	assert.ErrorIs(t, err, errWrite)
	_, err = e.m.Export(ctx, e.owner, a.ID, &bytesBuffer{})
	assert.ErrorIs(t, err, tenancy.ErrBypass, "an export never runs on a bypassing role")
}

// hookWriter collects an export and calls hook once, when the export starts
// the block of table.
type hookWriter struct {
	bytes.Buffer
	table string
	hook  func()
	fired bool
}

func (w *hookWriter) Write(p []byte) (int, error) {
	if !w.fired && bytes.HasPrefix(p, []byte("COPY "+w.table+" (")) {
		w.fired = true
		w.hook()
	}
	return w.Buffer.Write(p)
}

// exportLines returns an export's lines, sorted within each table's block
// (COPY gives no row order).
func exportLines(s string) []string {
	var out, block []string
	for _, l := range strings.Split(s, "\n") {
		switch {
		case strings.HasPrefix(l, "COPY "):
			out = append(out, l)
			block = block[:0]
		case l == `\.`:
			sort.Strings(block)
			out = append(out, block...)
			out = append(out, l)
		case l != "":
			block = append(block, l)
		}
	}
	return out
}

func TestExportReadsEveryTableFromOneSnapshot(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	a := e.tenant(t, "snap", tenancy.Shared)
	var victim uuid.UUID
	require.NoError(t, e.m.WithTenant(ctx, e.app, a.ID, func(tx pgx.Tx) error {
		for i := 0; i < 5; i++ {
			var id uuid.UUID
			if err := tx.QueryRow(ctx, `INSERT INTO notes (body, n) VALUES ($1, $2) RETURNING id`, fmt.Sprintf("note %d", i), i).Scan(&id); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO comments (note_id, body) VALUES ($1, 'first'), ($1, 'second')`, id); err != nil {
				return err
			}
			victim = id
		}
		return nil
	}))
	var before bytes.Buffer
	_, err := e.m.Export(ctx, e.app, a.ID, &before)
	require.NoError(t, err)

	// While the export is between comments (read first) and notes, another
	// transaction commits: one note and its comments go (ON DELETE CASCADE),
	// a new note with a comment arrives. Read in separate snapshots, the
	// export would hold comments whose note is gone and a note without its
	// comment.
	w := &hookWriter{table: `"public"."notes"`, hook: func() {
		require.NoError(t, e.m.WithTenant(ctx, e.app, a.ID, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `DELETE FROM notes WHERE id = $1`, victim); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `WITH n AS (INSERT INTO notes (body, n) VALUES ('late', 99) RETURNING id)
				INSERT INTO comments (note_id, body) SELECT id, 'late comment' FROM n`)
			return err
		}))
	}}
	rep, err := e.m.Export(ctx, e.app, a.ID, w)
	require.NoError(t, err)
	require.True(t, w.fired, "the concurrent write ran during the export")
	assert.Equal(t, exportLines(before.String()), exportLines(w.String()),
		"the export shows the data as it was when it started, in every table")
	assert.Equal(t, int64(5), rep.Rows[`"public"."notes"`])
	assert.Equal(t, int64(10), rep.Rows[`"public"."comments"`])

	// The write did commit: an export started now sees it everywhere.
	var after bytes.Buffer
	rep, err = e.m.Export(ctx, e.app, a.ID, &after)
	require.NoError(t, err)
	assert.Equal(t, int64(5), rep.Rows[`"public"."notes"`])
	assert.Equal(t, int64(9), rep.Rows[`"public"."comments"`])
	assert.NotContains(t, after.String(), victim.String())
	assert.Contains(t, after.String(), "late comment")
}

var errWrite = errors.New("disk full")

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errWrite }

func TestPurgeAfterRetention(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	a, b, c := e.tenant(t, "gone", tenancy.Shared), e.tenant(t, "gone-too", tenancy.Dedicated), e.tenant(t, "stays", tenancy.Shared)
	for _, tn := range []tenancy.Tenant{a, b, c} {
		e.insertNotes(t, tn.ID, 3)
	}
	for _, tn := range []tenancy.Tenant{a, b} {
		_, err := e.m.Delete(ctx, e.owner, tn.ID)
		require.NoError(t, err)
	}
	purged, err := e.m.Purge(ctx, e.owner, time.Now())
	require.NoError(t, err)
	assert.Empty(t, purged, "within retention")
	purged, err = e.m.Purge(ctx, e.owner, time.Now().Add(31*24*time.Hour))
	require.NoError(t, err)
	sort.Slice(purged, func(i, j int) bool { return purged[i].String() < purged[j].String() })
	want := []uuid.UUID{a.ID, b.ID}
	sort.Slice(want, func(i, j int) bool { return want[i].String() < want[j].String() })
	assert.Equal(t, want, purged)
	_, err = e.m.Get(ctx, e.owner, a.ID)
	assert.ErrorIs(t, err, tenancy.ErrNotFound)
	var n int
	require.NoError(t, e.owner.QueryRow(ctx, `SELECT count(*) FROM public.notes`).Scan(&n))
	assert.Equal(t, 3, n, "only the remaining tenant's rows")
	var exists bool
	require.NoError(t, e.owner.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'tenant_gone_too')`).Scan(&exists))
	assert.False(t, exists)
	assert.Len(t, e.visible(t, e.app, c.ID), 3)
}
