package proc

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLogFile: a child with LogFile appends both streams to the file; its
// LogMark reads only what it wrote, and WaitErr carries its exit.
func TestLogFile(t *testing.T) {
	log := filepath.Join(t.TempDir(), "server.log")
	if err := os.WriteFile(log, []byte("an earlier run\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Start("/bin/sh", Options{Args: []string{"-c", "echo out; echo err >&2; exit 2"}, LogFile: log})
	if err != nil {
		t.Fatal(err)
	}
	if code, err := p.Wait(10 * time.Second); err != nil || code != 2 {
		t.Fatalf("Wait = %d, %v; want 2", code, err)
	}
	var exit *exec.ExitError
	if err := p.WaitErr(); !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Errorf("WaitErr = %v, want exit status 2", err)
	}
	if got := string(p.LogMark().Since(1 << 20)); got != "out\nerr\n" {
		t.Errorf("since the start: %q", got)
	}
	if got := string(p.LogMark().Since(4)); got != "err\n" {
		t.Errorf("Since(4) = %q, want the newest 4 bytes", got)
	}
	if p.Stdout() != "" || p.Stderr() != "" {
		t.Errorf("in memory too: %q %q", p.Stdout(), p.Stderr())
	}
	b, _ := os.ReadFile(log)
	if string(b) != "an earlier run\nout\nerr\n" {
		t.Errorf("log file %q", b)
	}
	tail := Tail(log, b, 2)
	if tail != "--- "+log+" (last 2 lines)\nout\nerr" {
		t.Errorf("Tail = %q", tail)
	}
	if (LogMark{}).Since(10) != nil || MarkLog(filepath.Join(t.TempDir(), "none")).Since(10) != nil {
		t.Error("a mark of no file read something")
	}
}

// TestSignalGroup: SIGSTOP and SIGCONT reach the child's whole process
// group (a grandchild too); WaitErr is nil while the child runs.
func TestSignalGroup(t *testing.T) {
	p, err := Start("/bin/sh", Options{Args: []string{"-c", "sleep 30 & echo $!; wait"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	var grandchild int
	deadline := time.Now().Add(10 * time.Second)
	for grandchild == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no grandchild pid printed")
		}
		if line, ok := strings.CutSuffix(p.Stdout(), "\n"); ok {
			if grandchild, err = strconv.Atoi(line); err != nil {
				t.Fatalf("not a pid: %q", line)
			}
		} else {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if p.WaitErr() != nil {
		t.Errorf("WaitErr while running: %v", p.WaitErr())
	}
	for _, tc := range []struct {
		sig   syscall.Signal
		state string
	}{{syscall.SIGSTOP, "T"}, {syscall.SIGCONT, "S"}} {
		if err := p.SignalGroup(tc.sig); err != nil {
			t.Fatal(err)
		}
		for _, pid := range []int{p.Pid(), grandchild} {
			waitState(t, pid, tc.state)
		}
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := p.SignalGroup(syscall.SIGSTOP); err != nil {
		t.Errorf("SignalGroup after the exit: %v, want a no-op", err)
	}
}

// waitState waits until /proc says pid is in state ("T" stopped, "S"
// sleeping).
func waitState(t *testing.T, pid int, state string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) > 0 && fields[0] == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d in state %v, want %s", pid, fields[:1], state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
