package tenancy_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/justpg/justpg/internal/migrate"
	"github.com/justpg/justpg/internal/pgdb"
	"github.com/justpg/justpg/tenancy"
)

// BenchmarkTenantTransaction measures what WithTenant's checks cost over
// the bare minimum: both cases run a one-statement transaction on the
// application role's pool against the protected table; "set_config" scopes
// it by hand with a single set_config (no role check, no tenant lookup or
// lock, no per-tenant settings). bench/tenancy compares with hand-written
// WHERE clauses.
func BenchmarkTenantTransaction(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	a := e.tenant(b, "bench", tenancy.Shared)
	e.insertNotes(b, a.ID, 100)
	var id uuid.UUID
	if err := e.m.WithTenant(ctx, e.app, a.ID, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT id FROM notes LIMIT 1`).Scan(&id)
	}); err != nil {
		b.Fatal(err)
	}
	b.Run("WithTenant", func(b *testing.B) {
		for b.Loop() {
			if err := e.m.WithTenant(ctx, e.app, a.ID, func(tx pgx.Tx) error {
				var body string
				return tx.QueryRow(ctx, `SELECT body FROM notes WHERE id = $1`, id).Scan(&body)
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("set_config", func(b *testing.B) {
		for b.Loop() {
			if err := pgx.BeginFunc(ctx, e.app, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `SELECT set_config('app.tenant_id', $1, true)`, a.ID.String()); err != nil {
					return err
				}
				var body string
				return tx.QueryRow(ctx, `SELECT body FROM notes WHERE id = $1`, id).Scan(&body)
			}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Other justpg packages run inside the tenant's transaction: they take a DB,
// may open savepoints on it (pgdb.InTx) and run their own migrations in it,
// and everything they do is scoped to the tenant and commits or rolls back
// with the caller's work.
func TestOtherPackagesRunInsideTheTenantTransaction(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	a, b := e.tenant(t, "acme", tenancy.Shared), e.tenant(t, "globex", tenancy.Shared)
	// A stand-in for another package's operation: it takes a DB, uses a
	// savepoint, and writes to a table following the tenancy convention.
	otherPackageOp := func(ctx context.Context, db pgdb.DB, body string) error {
		return pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO notes (body) VALUES ($1)`, body); err != nil {
				return err
			}
			got, err := tenancy.Current(ctx, tx)
			if err != nil {
				return err
			}
			if got != a.ID {
				t.Errorf("inside the savepoint the tenant is %s, want %s", got, a.ID)
			}
			return nil
		})
	}
	err := e.m.WithTenant(ctx, e.app, a.ID, func(tx pgx.Tx) error {
		if err := otherPackageOp(ctx, tx, "from another package"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO comments (note_id, body) SELECT id, 'mine' FROM notes`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.visible(t, e.app, a.ID); len(got) != 1 || got[0] != a.ID {
		t.Fatalf("acme sees %v", got)
	}
	if got := e.visible(t, e.app, b.ID); len(got) != 0 {
		t.Fatalf("globex sees %v", got)
	}
	// The migration runner (what every package's Migrate uses) also works
	// in the tenant's transaction without disturbing its scope.
	err = e.m.WithTenant(ctx, e.app, a.ID, func(tx pgx.Tx) error {
		_, err := migrate.AppliedMigrations(ctx, tx, "public", "app")
		if err != nil {
			return err
		}
		got, err := tenancy.Current(ctx, tx)
		if err == nil && got != a.ID {
			t.Errorf("scope lost: %s", got)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
