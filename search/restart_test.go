package search_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/justpg/justpg/internal/pgtest"
	"github.com/justpg/justpg/search"
)

// TestServerRestart: searches on a pool fail cleanly while the server is
// down and work again once it is back, with no state to rebuild.
func TestServerRestart(t *testing.T) {
	t.Parallel()
	srv := pgtest.NewCluster(t, pgtest.ClusterOptions{})
	db := pgtest.NewDB(t, pgtest.OnServer(srv), pgtest.WithSetup("search-products", func(ctx context.Context, pool *pgxpool.Pool) error {
		_, err := pool.Exec(ctx, productsTable)
		return err
	}))
	ctx := context.Background()
	ix, err := search.New(productsConfig())
	require.NoError(t, err)
	require.NoError(t, ix.Create(ctx, db.Pool))
	seed(t, db, fixtures)
	require.NoError(t, ix.RefreshWords(ctx, db.Pool))

	require.NoError(t, srv.StopServer(ctx))
	_, err = ix.Search(ctx, db.Pool, search.Query{Text: "espresso"})
	require.Error(t, err, "no server: an error, not a hang or an empty result")
	require.NoError(t, srv.StartServer(ctx))

	var r *search.Result
	for i := 0; i < 10; i++ { // connections broken by the stop are discarded one by one (at most MaxConns)
		if r, err = ix.Search(ctx, db.Pool, search.Query{Text: "espreso"}); err == nil {
			break
		}
	}
	require.NoError(t, err)
	assert.Equal(t, []string{"7"}, keys(r))
}
