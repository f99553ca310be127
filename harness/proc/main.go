package proc

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// RunMain is the end of a TestMain that owns servers or files: it runs the
// tests, then each of closers (servers stopped, binaries removed), then
// checks that no goroutine outlives them (goleak), and returns the exit
// code: 1 when a closer failed or, after passing tests, a goroutine
// leaked. A closer's error is written to stderr.
func RunMain(m *testing.M, closers ...func() error) int {
	code := m.Run()
	for _, c := range closers {
		if err := c(); err != nil {
			fmt.Fprintln(os.Stderr, "TestMain: close:", err)
			code = 1
		}
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "TestMain: goroutine leak:", err)
			code = 1
		}
	}
	return code
}
