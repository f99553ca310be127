package idgenproc

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/idgen/idgen/harness/proc"
)

// Main is the TestMain of a suite that runs the idgen binary: it builds
// the binary once (proc.BuildIdgen(name)) into *bin, runs the tests, then
// calls every close (shared servers), and returns the exit code: non-zero
// when the build, a test or a close failed.
func Main(m *testing.M, name string, bin *string, closes ...func() error) int {
	flag.Parse()
	b, cleanup, err := proc.BuildIdgen(name)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cleanup()
	*bin = b
	code := m.Run()
	for _, c := range closes {
		if err := c(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: close: %v\n", name, err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}
