package pgtest

import (
	"context"
	"fmt"
	"time"

	"github.com/testcontainers/testcontainers-go"
	tcpostgres "github.com/testcontainers/testcontainers-go/modules/postgres"
)

// DockerAvailable reports whether a Docker engine answers, and why not.
func DockerAvailable(ctx context.Context) (ok bool, why error) {
	defer func() {
		// testcontainers panics when it cannot work out a Docker host.
		if r := recover(); r != nil {
			ok, why = false, fmt.Errorf("no Docker host: %v", r)
		}
	}()
	provider, err := testcontainers.NewDockerProvider()
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := provider.Health(ctx); err != nil { // Health closes the provider
		return false, err
	}
	return true, nil
}

// StartContainer runs a PostgreSQL container through testcontainers-go. It
// fails at once, with the reason, when no Docker engine answers.
func StartContainer(ctx context.Context, image string) (*Server, error) {
	if image == "" {
		image = DefaultImage
	}
	return startContainer(ctx, image)
}

func startContainer(ctx context.Context, image string) (s *Server, err error) {
	if ok, why := DockerAvailable(ctx); !ok {
		return nil, fmt.Errorf("pgtest: no Docker engine answers: %w", why)
	}
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("pgtest: testcontainers: %v", r)
		}
	}()
	ctr, err := tcpostgres.Run(ctx, image,
		tcpostgres.WithDatabase("postgres"),
		tcpostgres.WithUsername("postgres"),
		tcpostgres.WithPassword("postgres"),
		testcontainers.WithCmd("postgres",
			"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
			"-c", "max_connections=300"),
		tcpostgres.BasicWaitStrategies(),
	)
	if err != nil {
		if ctr != nil {
			_ = ctr.Terminate(context.WithoutCancel(ctx))
		}
		return nil, fmt.Errorf("pgtest: starting container %s: %w", image, err)
	}
	u, err := ctr.ConnectionString(ctx, "sslmode=disable")
	if err != nil {
		_ = ctr.Terminate(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("pgtest: container connection string: %w", err)
	}
	return newServer(&Server{kind: KindContainer, adminURL: u, container: terminator{ctr}}), nil
}

type terminator struct{ c *tcpostgres.PostgresContainer }

func (t terminator) Terminate(ctx context.Context) error { return t.c.Terminate(ctx) }
