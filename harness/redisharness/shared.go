package redisharness

import (
	"context"
	"testing"

	"github.com/idgen/idgen/harness/proc"
)

// Shared is the one standalone server of a test package (proc.Shared):
// started by the first test that asks for it, handed to every later test,
// and closed by the package's TestMain. Tests share it by key prefixes of
// their own. Under go test -short, Get skips the test and nothing starts, so
// the package's tests that need no server still run.
//
//	var redis = &redisharness.Shared{}
//	func TestMain(m *testing.M) { code := m.Run(); if redis.Close() != nil { code = 1 }; os.Exit(code) }
type Shared struct {
	// Options of the server; Logf is set by Shared.
	Options Options

	shared proc.Shared[*Server]
}

// Get returns the server, started on first use; it fails tb when the
// server does not come up within 60 s.
func (s *Shared) Get(tb testing.TB) *Server {
	tb.Helper()
	proc.SkipShort(tb, "Redis")
	return s.shared.Get(tb, "Redis", startTimeoutT, func(ctx context.Context, logf func(string, ...any)) (*Server, error) {
		o := s.Options
		o.Logf = logf
		return StartStandalone(ctx, o)
	})
}

// Close stops the server if it was started.
func (s *Shared) Close() error { return s.shared.Close() }
