package boltstore

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/idgen/idgen/shared/registry/registrytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestRegistry runs the registry conformance suite.
func TestRegistry(t *testing.T) {
	registrytest.Run(t, func(t *testing.T, dir string) registrytest.Store { return open(t, dir) })
}

func TestSecondOpenTimesOut(t *testing.T) {
	dir := t.TempDir()
	open(t, dir)
	if _, err := Open(Config{Dir: dir, OpenTimeout: 100 * time.Millisecond}); err == nil {
		t.Fatal("a second process could open the same store")
	}
}
