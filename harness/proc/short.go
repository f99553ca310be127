package proc

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// The fast lane: `go test -short` (make check) runs every test that needs
// no server and no idgen binary, and starts neither; make test runs without
// -short, so every test runs there and none ever skips because a server is
// missing. The decision is taken here only: the harnesses' starts call
// SkipShort (a test's own start) or SkipShortMain (a start outside any
// test, for a whole test binary), so a test needs no -short check of its
// own.

// SkipShort skips tb under -short. what names what tb would start
// ("ZooKeeper", "Redis", "the idgen binary").
func SkipShort(tb testing.TB, what string) {
	tb.Helper()
	if testing.Short() {
		tb.Skipf("needs %s: skipped under -short; make test runs it", what)
	}
}

// SkipShortMain is SkipShort for a start outside any test: a TestMain that
// starts a server, or builds the idgen binary, for every test of its
// package. Under -short it ends the test binary with status 0 before m.Run,
// so the package runs no test, and says so on stderr. Outside a test binary
// it does nothing, so chaos and bench programs start their servers as
// always. Inside a running test, where the ...T starts and Shared belong,
// go test reports the exit as a failure.
func SkipShortMain(what string) {
	if !testing.Testing() {
		return
	}
	if !flag.Parsed() {
		flag.Parse() // as m.Run would; TestMain runs before it
	}
	if testing.Short() {
		fmt.Fprintf(os.Stderr, "%s: every test needs %s: none run under -short; make test runs them\n", filepath.Base(os.Args[0]), what)
		os.Exit(0)
	}
}
