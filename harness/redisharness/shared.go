package redisharness

import (
	"context"
	"sync"
	"testing"

	"github.com/idgen/idgen/harness/proc"
)

// Shared is the one standalone server of a test package: started by the
// first test that asks for it, handed to every later test, and closed by
// the package's TestMain. Tests share it by key prefixes of their own.
// Under go test -short, Get skips the test and nothing starts, so the
// package's tests that need no server still run.
//
//	var redis = &redisharness.Shared{}
//	func TestMain(m *testing.M) { code := m.Run(); if redis.Close() != nil { code = 1 }; os.Exit(code) }
type Shared struct {
	// Options of the server; Logf is set by Shared.
	Options Options

	once sync.Once
	s    *Server
	err  error

	mu sync.Mutex
	tb testing.TB
}

// Get returns the server, started on first use; it fails tb when the
// server does not come up within 60 s.
func (s *Shared) Get(tb testing.TB) *Server {
	tb.Helper()
	proc.SkipShort(tb, "Redis")
	s.mu.Lock()
	s.tb = tb
	s.mu.Unlock()
	tb.Cleanup(func() {
		s.mu.Lock()
		s.tb = nil
		s.mu.Unlock()
	})
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), startTimeoutT)
		defer cancel()
		o := s.Options
		o.Logf = s.logf
		s.s, s.err = StartStandalone(ctx, o)
	})
	if s.err != nil {
		tb.Fatalf("start Redis: %v", s.err)
	}
	return s.s
}

// Close stops the server if it was started.
func (s *Shared) Close() error {
	if s.s == nil {
		return nil
	}
	return s.s.Close()
}

func (s *Shared) logf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tb != nil {
		s.tb.Logf(format, args...)
	}
}
