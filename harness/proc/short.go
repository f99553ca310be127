package proc

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
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
// always; inside a running test it does nothing either: a test that calls
// a start itself (not StartT or Shared, which skip it under -short) gets
// what the start does, e.g. ErrNotInstalled on a machine without the
// server.
func SkipShortMain(what string) {
	if !testing.Testing() || insideTest() {
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

// insideTest reports whether the caller runs in a test function: a
// testing.tRunner frame is on its stack (TestMain runs before any).
func insideTest() bool {
	pcs := make([]uintptr, 128)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(2, pcs)])
	for {
		f, more := frames.Next()
		if f.Function == "testing.tRunner" {
			return true
		}
		if !more {
			return false
		}
	}
}

// shortChildEnv marks the child process of CheckShortMain.
const shortChildEnv = "IDGEN_PROC_SHORT_CHILD"

// CheckShortMain tests that start, a harness's start outside any test, ends
// a -short test binary with status 0 before it needs anything installed: it
// runs the calling test again in a child test binary with -test.short and a
// PATH that holds no program, where start must exit through SkipShortMain.
// The child calls start outside the test function (as a TestMain does)
// and, should start return, fails with its error. The calling test must
// be a top-level test that calls CheckShortMain first.
func CheckShortMain(t *testing.T, start func() error) {
	t.Helper()
	if os.Getenv(shortChildEnv) == "1" {
		// On a goroutine of its own, start runs outside any test
		// function, as it does from a TestMain.
		done := make(chan error)
		go func() { done <- start() }()
		err := <-done
		fmt.Fprintf(os.Stderr, "start returned under -short: %v\n", err)
		os.Exit(3)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^"+t.Name()+"$", "-test.short", "-test.count=1")
	cmd.Env = append(os.Environ(), shortChildEnv+"=1", "PATH="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("start under -short without servers installed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "none run under -short") {
		t.Fatalf("start under -short did not end the test binary through SkipShortMain:\n%s", out)
	}
}
