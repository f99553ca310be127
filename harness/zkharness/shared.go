package zkharness

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
)

// Shared is the one ensemble of a test package: started by the first test
// that asks for it, handed to every later test with all its servers running
// (a fault test may have stopped some), and closed by the package's TestMain.
// The ensemble's lifecycle lines go to the log of the test using it.
//
//	var zk = &zkharness.Shared{Options: zkharness.Options{Servers: 3}}
//	func TestMain(m *testing.M) { code := m.Run(); if zk.Close() != nil { code = 1 }; os.Exit(code) }
type Shared struct {
	// Options of the ensemble; Logf is set by Shared.
	Options Options

	once sync.Once
	e    *Ensemble
	err  error

	mu sync.Mutex
	tb testing.TB
}

// Get returns the ensemble, started on first use, with every server
// running and a quorum serving; it fails tb otherwise. Under go test -short
// it skips tb (proc.SkipShort) and starts nothing.
func (s *Shared) Get(tb testing.TB) *Ensemble {
	tb.Helper()
	proc.SkipShort(tb, "ZooKeeper")
	s.mu.Lock()
	s.tb = tb
	s.mu.Unlock()
	tb.Cleanup(func() {
		s.mu.Lock()
		s.tb = nil
		s.mu.Unlock()
	})
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		o := s.Options
		o.Logf = s.logf
		s.e, s.err = Start(ctx, o)
	})
	if s.err != nil {
		tb.Fatalf("start ZooKeeper: %v", s.err)
	}
	if err := s.Restore(); err != nil {
		tb.Fatal(err)
	}
	return s.e
}

// Restore restarts every server that is not running and waits for the
// quorum. Fault tests call it when they end, pass or fail.
func (s *Shared) Restore() error {
	if s.e == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for i := range s.e.Size() {
		if _, err := s.e.Mode(ctx, i); errors.Is(err, ErrNotRunning) {
			s.logf("server %d not running (left so by an earlier test): restarting it", i)
			if err := s.e.Restart(ctx, i); err != nil {
				return fmt.Errorf("restart ZooKeeper server %d: %w", i, err)
			}
		}
	}
	if err := s.e.WaitQuorum(ctx); err != nil {
		return fmt.Errorf("ZooKeeper quorum: %w", err)
	}
	return nil
}

// Close stops the ensemble if it was started.
func (s *Shared) Close() error {
	if s.e == nil {
		return nil
	}
	return s.e.Close()
}

func (s *Shared) logf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tb != nil {
		s.tb.Logf(format, args...)
	}
}

var nonPath = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// Root returns a znode path no other test or run uses: /<prefix>-<test
// name>-<time>.
func Root(tb testing.TB, prefix string) string {
	name := nonPath.ReplaceAllString(tb.Name(), "_")
	return "/" + prefix + "-" + name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// Size is the number of servers of the ensemble.
func (e *Ensemble) Size() int { return len(e.servers) }
