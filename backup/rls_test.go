package backup_test

import (
	"context"
	"net/url"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/backup"
	"github.com/justpg/justpg/internal/pgtest"
)

// A role that row-level security restricts must not get a silently partial
// backup (one tenant's rows only): the dump fails instead, and nothing is
// stored. The role owning the data without FORCE, or a BYPASSRLS role,
// backs up every tenant.
func TestRowLevelSecurityNeverGivesPartialBackup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewDB(t)
	requireTools(t, db, "pg_dump", "pg_restore")
	role := "justpg_backup_rls_" + db.Name[len(db.Name)-6:]
	q := pgx.Identifier{role}.Sanitize()
	_, err := db.Pool.Exec(ctx, `CREATE ROLE `+q+` LOGIN PASSWORD 'pw-rls' NOSUPERUSER NOBYPASSRLS`)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = db.Pool.Exec(context.Background(), `DROP OWNED BY `+q)
		_, _ = db.Pool.Exec(context.Background(), `DROP ROLE IF EXISTS `+q)
	})
	_, err = db.Pool.Exec(ctx, `
		CREATE TABLE notes (id int, tenant_id uuid, body text);
		INSERT INTO notes VALUES (1, '11111111-1111-1111-1111-111111111111', 'a'), (2, '22222222-2222-2222-2222-222222222222', 'b');
		ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
		ALTER TABLE notes FORCE ROW LEVEL SECURITY;
		CREATE POLICY tenant ON notes USING (tenant_id = (SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid));
		ALTER TABLE notes OWNER TO `+q)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `GRANT ALL ON SCHEMA public TO `+q)
	require.NoError(t, err)

	u, err := url.Parse(db.URL)
	require.NoError(t, err)
	u.User = url.UserPassword(role, "pw-rls")
	cfg, err := pgxpool.ParseConfig(u.String())
	require.NoError(t, err)
	pgtest.ApplyExecMode(t, cfg.ConnConfig)
	pgtest.ApplySession(t, cfg.ConnConfig)
	cfg.ConnConfig.RuntimeParams["app.tenant_id"] = "11111111-1111-1111-1111-111111111111"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	var visible int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM notes`).Scan(&visible))
	require.Equal(t, 1, visible, "the role sees one tenant's rows")

	repo, err := backup.NewDirRepository(t.TempDir())
	require.NoError(t, err)
	m, err := backup.New(pool, backup.Config{Repository: repo})
	require.NoError(t, err)
	_, err = m.Dump(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "row-level security")
	objs, err := repo.List(ctx, "")
	require.NoError(t, err)
	assert.Empty(t, objs, "nothing stored")

	// Without FORCE the owner is not subject to its policies: a full backup.
	_, err = db.Pool.Exec(ctx, `ALTER TABLE notes NO FORCE ROW LEVEL SECURITY`)
	require.NoError(t, err)
	man, err := m.Dump(ctx)
	require.NoError(t, err)
	assert.Equal(t, int64(2), tableRows(man, "public", "notes"), "both tenants' rows")
}
