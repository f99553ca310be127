package redischeckpoints

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a test leaves a shipper goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
