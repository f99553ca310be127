package chaose2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
)

// bins are the binaries TestMain builds.
var bins struct{ idgen, chaos string }

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "chaose2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaose2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bins.idgen, bins.chaos = filepath.Join(dir, "idgen"), filepath.Join(dir, "idgen-chaos")
	// The idgen build ends the test binary under -short (the smoke needs
	// every server); the chaos program builds from this module.
	if err := proc.Build(proc.IdgenPackage, bins.idgen, proc.BuildOptions{}); err != nil {
		fmt.Fprintln(os.Stderr, "chaose2e:", err)
		return 1
	}
	if err := proc.Build("../cmd/idgen-chaos", bins.chaos, proc.BuildOptions{Race: raceAvailable()}); err != nil {
		fmt.Fprintln(os.Stderr, "chaose2e:", err)
		return 1
	}
	return m.Run()
}

// raceAvailable reports whether the race detector can be built (cgo).
func raceAvailable() bool {
	out, err := exec.Command("go", "env", "CGO_ENABLED").Output()
	return err == nil && strings.TrimSpace(string(out)) == "1" && os.Getenv("CHAOSE2E_NO_RACE") != "1"
}

// finalLine is the verdict of a run without violations.
var finalLine = regexp.MustCompile(`(?m)^chaos: (\d+) ids, 0 duplicates, 0 lost, 0 wrong states, 0 idempotency conflicts, 0 bad answers, 0 wrong 200s, (\d+) compensations \(0 audit mismatches, 0 double effects\), 14/14 faults recovered, 0 other violations: PASS$`)

// TestChaosSmoke runs `idgen-chaos -smoke` and expects no violation: the
// cluster's eleven faults, then the operator and resource faults on
// embedded instances with their volumes on tmpfs mounts (the test runs as
// root, as CI does; the program refuses to start otherwise). It takes three
// to four minutes. On failure the program keeps its directory
// (logs of every process, audit logs, data) and says where.
func TestChaosSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bins.chaos, "-smoke", "-idgen", bins.idgen)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 30 * time.Second
	t0 := time.Now()
	err := cmd.Run()
	took := time.Since(t0).Round(time.Second)
	t.Logf("idgen-chaos -smoke took %v; its report:\n%s", took, stdout.String())
	if err != nil || !finalLine.MatchString(stdout.String()) {
		t.Logf("its progress log:\n%s", stderr.String())
		t.Fatalf("idgen-chaos -smoke: %v; want exit 0 and a final line without violations", err)
	}
	if strings.Contains(stderr.String(), "WARNING: DATA RACE") {
		t.Fatalf("data race in idgen-chaos:\n%s", stderr.String())
	}
	m := finalLine.FindStringSubmatch(stdout.String())
	t.Logf("%s IDs and %s compensations checked in %v", m[1], m[2], took)
}

// TestChaosUsage: bad flags exit 2 without starting anything; -h exits 0.
func TestChaosUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-h"}, 0, "-smoke"},
		{[]string{"-faults", "15"}, 2, "no fault 15"},
		{[]string{"-ops-rate", "-3"}, 2, "-ops-rate"},
		{[]string{"-rate", "-1"}, 2, "-rate"},
		{[]string{"-idgen", "/nonexistent/idgen"}, 2, "not an executable"},
		{[]string{"-zk-session", "70s"}, 2, "-zk-session"},
	} {
		cmd := exec.Command(bins.chaos, tc.args...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code || !strings.Contains(string(out), tc.want) {
			t.Errorf("%v: exit %d, output %q; want %d and %q", tc.args, code, out, tc.code, tc.want)
		}
	}
}
