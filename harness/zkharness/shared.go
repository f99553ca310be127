package zkharness

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
)

// Shared is the one ensemble of a test package (proc.Shared): started by
// the first test that asks for it, handed to every later test with all its
// servers running (a fault test may have stopped some), and closed by the
// package's TestMain. The ensemble's lifecycle lines go to the log of the
// test using it.
//
//	var zk = &zkharness.Shared{Options: zkharness.Options{Servers: 3}}
//	func TestMain(m *testing.M) { code := m.Run(); if zk.Close() != nil { code = 1 }; os.Exit(code) }
type Shared struct {
	// Options of the ensemble; Logf is set by Shared.
	Options Options

	shared proc.Shared[*Ensemble]
}

// Get returns the ensemble, started on first use, with every server
// running and a quorum serving; it fails tb otherwise. Under go test -short
// it skips tb (proc.SkipShort) and starts nothing.
func (s *Shared) Get(tb testing.TB) *Ensemble {
	tb.Helper()
	proc.SkipShort(tb, "ZooKeeper")
	e := s.shared.Get(tb, "ZooKeeper", 3*time.Minute, func(ctx context.Context, logf func(string, ...any)) (*Ensemble, error) {
		o := s.Options
		o.Logf = logf
		return Start(ctx, o)
	})
	if err := s.Restore(); err != nil {
		tb.Fatal(err)
	}
	return e
}

// Restore restarts every server that is not running and waits for the
// quorum. Fault tests call it when they end, pass or fail.
func (s *Shared) Restore() error {
	e, err := s.shared.Value()
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for i := range e.Size() {
		if _, err := e.Mode(ctx, i); errors.Is(err, ErrNotRunning) {
			s.shared.Logf("server %d not running (left so by an earlier test): restarting it", i)
			if err := e.Restart(ctx, i); err != nil {
				return fmt.Errorf("restart ZooKeeper server %d: %w", i, err)
			}
		}
	}
	if err := e.WaitQuorum(ctx); err != nil {
		return fmt.Errorf("ZooKeeper quorum: %w", err)
	}
	return nil
}

// Close stops the ensemble if it was started.
func (s *Shared) Close() error { return s.shared.Close() }

var nonPath = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// Root returns a znode path no other test or run uses: /<prefix>-<test
// name>-<time>.
func Root(tb testing.TB, prefix string) string {
	name := nonPath.ReplaceAllString(tb.Name(), "_")
	return "/" + prefix + "-" + name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

// Size is the number of servers of the ensemble.
func (e *Ensemble) Size() int { return len(e.servers) }
