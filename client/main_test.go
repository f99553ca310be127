package client_test

import (
	"os"
	"testing"

	"github.com/idgen/idgen/harness/proc"
)

// TestMain fails the package when a test leaves goroutines behind (a
// Client not closed, a proxy or server still serving), and removes the
// idgen binary the first server test built.
func TestMain(m *testing.M) {
	os.Exit(proc.RunMain(m, func() error { bin.Remove(); return nil }))
}
