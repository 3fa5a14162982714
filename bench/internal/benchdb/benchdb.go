// Package benchdb gives the comparison benchmarks a server and fresh
// databases on it, so that every contender in one run uses the same server.
package benchdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/justpg/justpg/internal/pgtest"
)

// Server is where the benchmark databases live.
type Server struct {
	*pgtest.Server
}

// Start uses BENCH_DATABASE_URL when set (a role that may create databases),
// else starts a throwaway server the way the tests do.
func Start(ctx context.Context) (*Server, error) {
	if u := os.Getenv("BENCH_DATABASE_URL"); u != "" {
		os.Setenv(pgtest.EnvURL, u)
	}
	srv, err := pgtest.Start(ctx)
	if err != nil {
		return nil, err
	}
	return &Server{srv}, nil
}

// FreshDB creates an empty database (with the test extensions) and returns a
// pool on it with maxConns connections (0 keeps pgx's default).
func (s *Server) FreshDB(ctx context.Context, prefix string, maxConns int32) (*pgxpool.Pool, string, error) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := prefix + "_" + hex.EncodeToString(b)
	conn, err := pgx.Connect(ctx, s.AdminURL())
	if err != nil {
		return nil, "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, "", fmt.Errorf("create database: %w", err)
	}
	url := s.DatabaseURL(name)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, "", err
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, "", err
	}
	for _, ext := range pgtest.Extensions {
		if _, err := pool.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS "+pgx.Identifier{ext}.Sanitize()); err != nil {
			pool.Close()
			return nil, "", err
		}
	}
	return pool, url, nil
}

// Machine describes the machine for RESULTS.md.
func Machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%s, %d cores, %s/%s, %s", model, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
}
