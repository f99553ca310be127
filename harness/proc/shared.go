package proc

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Shared is the one long-lived server (a ZooKeeper ensemble, a Redis
// server) of a test package: started by the first test that asks for it,
// handed to every later test, and closed by the package's TestMain. Its
// lifecycle lines go to the log of the test using it, and nowhere between
// tests. The zero value is ready to use. A harness's Get calls SkipShort
// before this Get, so under go test -short nothing starts and the
// package's tests that need no server still run.
type Shared[T interface{ Close() error }] struct {
	once sync.Once

	mu      sync.Mutex
	v       T
	err     error
	started bool
	tb      testing.TB // the test using the value; nil between tests
}

// Get returns the value start made on the first call; later calls return
// the same one without calling start. what names the server ("Redis") in
// the failure. start gets a context
// bounded by timeout and Logf. Get fails tb when start failed, then and on
// every later call.
func (s *Shared[T]) Get(tb testing.TB, what string, timeout time.Duration, start func(ctx context.Context, logf func(format string, args ...any)) (T, error)) T {
	tb.Helper()
	s.mu.Lock()
	s.tb = tb
	s.mu.Unlock()
	tb.Cleanup(func() {
		s.mu.Lock()
		s.tb = nil
		s.mu.Unlock()
	})
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		v, err := start(ctx, s.Logf)
		s.mu.Lock()
		s.v, s.err, s.started = v, err, err == nil
		s.mu.Unlock()
	})
	v, err := s.Value()
	if err != nil {
		tb.Fatalf("start %s: %v", what, err)
	}
	return v
}

// Value returns the value once started, else the zero value and start's
// error, or an error saying that Get has not started it yet.
func (s *Shared[T]) Value() (T, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started && s.err == nil {
		return s.v, fmt.Errorf("proc: shared server not started")
	}
	return s.v, s.err
}

// Logf writes a line to the log of the test using the value; between tests
// it writes nothing.
func (s *Shared[T]) Logf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tb != nil {
		s.tb.Logf(format, args...)
	}
}

// Close closes the value if it was started.
func (s *Shared[T]) Close() error {
	s.mu.Lock()
	v, started := s.v, s.started
	s.mu.Unlock()
	if !started {
		return nil
	}
	return v.Close()
}

// StartT runs start for a harness's ...T variant: start gets a context
// bounded by timeout and tb's own; StartT fails tb (never skips it) when
// start fails, and closes the value in tb.Cleanup. what names the value in
// both messages ("ZooKeeper ensemble").
func StartT[T interface{ Close() error }](tb testing.TB, what string, timeout time.Duration, start func(ctx context.Context) (T, error)) T {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), timeout)
	defer cancel()
	v, err := start(ctx)
	if err != nil {
		tb.Fatalf("start %s: %v", what, err)
	}
	tb.Cleanup(func() {
		if err := v.Close(); err != nil {
			tb.Errorf("close %s: %v", what, err)
		}
	})
	return v
}
