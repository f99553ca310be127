package zkharness

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
)

// deathDirEnv tells the test binary, re-run as a child, to act as a harness
// user that dies without calling Close.
const deathDirEnv = "ZKHARNESS_DEATH_DIR"

// TestDeathHelper is the child of TestServersDieWithParent: it starts a
// server, reports the JVM's pid and waits to be killed.
func TestDeathHelper(t *testing.T) {
	dir := os.Getenv(deathDirEnv)
	if dir == "" {
		return // not running as the helper
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, err := Start(ctx, Options{Dir: dir})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	pid := strconv.Itoa(e.servers[0].p.Pid())
	if err := os.WriteFile(filepath.Join(dir, "pid"), []byte(pid), 0o644); err != nil {
		t.Fatalf("write pid: %v", err)
	}
	<-ctx.Done() // the parent SIGKILLs this process long before
}

// TestServersDieWithParent checks Pdeathsig: when the Go process that
// started a server is SIGKILLed, without any chance to call Close, its
// servers die too.
func TestServersDieWithParent(t *testing.T) {
	proc.SkipShort(t, "ZooKeeper")
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDeathHelper$")
	cmd.Env = append(os.Environ(), deathDirEnv+"="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	pidFile := filepath.Join(dir, "pid")
	var jvm int
	for jvm == 0 {
		select {
		case err := <-exited:
			t.Fatalf("helper exited before starting a server: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
		if b, err := os.ReadFile(pidFile); err == nil {
			jvm, _ = strconv.Atoi(string(b))
		}
	}
	if !isZooKeeper(jvm) {
		t.Fatalf("pid %d is not a running ZooKeeper server", jvm)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatalf("kill helper: %v", err)
	}
	<-exited
	deadline := time.Now().Add(10 * time.Second)
	for isZooKeeper(jvm) {
		if time.Now().After(deadline) {
			t.Fatalf("server pid %d outlived its parent by 10s", jvm)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// isZooKeeper reports whether pid is a live (not zombie) ZooKeeper JVM; a
// container's init may leave the dead server unreaped.
func isZooKeeper(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	if len(fields) == 0 || fields[0] == "Z" || fields[0] == "X" {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && strings.Contains(string(cmdline), mainClass)
}
