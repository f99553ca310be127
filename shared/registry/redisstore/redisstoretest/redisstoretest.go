// Package redisstoretest opens Redis registries for tests of other
// packages: the registry as idgen opens it, closed when the test ends.
package redisstoretest

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/idgen/idgen/shared/registry/redisstore"
)

// OpenTimeout bounds Open's connection and checks.
const OpenTimeout = 20 * time.Second

// Open opens a registry with cfg, its Logger the test's when unset, and
// closes it when tb ends; a failure to open fails tb.
func Open(tb testing.TB, cfg redisstore.Config) *redisstore.Store {
	tb.Helper()
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(tb)
	}
	ctx, cancel := context.WithTimeout(context.Background(), OpenTimeout)
	defer cancel()
	s, err := redisstore.Open(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}
