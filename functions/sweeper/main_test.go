package sweeper

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves goroutines behind (a Run
// that outlives its context, a page still in flight).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
