package cgroup

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLimitIsEnforced: a command started through Command runs in the
// cgroup, and touching more memory than the limit gets it OOM-killed and
// counted, so a test that sees no OOM kill under the limit means something.
func TestLimitIsEnforced(t *testing.T) {
	m := NewMemory(t, 32<<20)
	prog, args := m.Command("/bin/sh", "-c", "cat /proc/self/cgroup")
	out, err := exec.Command(prog, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if rel := m.Dir()[strings.LastIndex(m.Dir(), "/"):]; !strings.Contains(string(out), rel+"\n") {
		t.Fatalf("the command runs in\n%s\nnot in %s", out, m.Dir())
	}
	// dd fills a 128 MiB buffer: four times the limit.
	prog, args = m.Command("dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1")
	if out, err := exec.Command(prog, args...).CombinedOutput(); err == nil {
		t.Fatalf("dd touched 128 MiB under a 32 MiB limit and exited 0: %s", out)
	}
	if n, err := m.OOMKills(); err != nil || n != 1 {
		t.Fatalf("OOM kills: %d %v, want 1", n, err)
	}
	if peak, err := m.Peak(); err != nil || peak > 32<<20 {
		t.Fatalf("peak %d %v above the 32 MiB limit", peak, err)
	}
}
