// Package cgroup makes a memory-limited control group for end-to-end tests:
// a child of the test process's own memory cgroup (cgroup v1's memory
// controller or cgroup v2's unified hierarchy), with a hard limit, into
// which a command is started, so that the process under test sees a real
// kernel memory limit and the kernel's OOM killer behind it.
//
// Creating a cgroup needs root (make test runs as root). The group is removed
// when the test ends, after every process left in it is killed.
package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
)

// Memory is a memory cgroup with a hard limit.
type Memory struct {
	dir string // the cgroup's directory
	v2  bool
}

var seq atomic.Int64

// NewMemory creates a child of the test process's memory cgroup limited to
// limit bytes (swap included where the kernel accounts it), removed at the
// end of the test.
func NewMemory(t testing.TB, limit int64) *Memory {
	t.Helper()
	proc.SkipShort(t, "root and a memory cgroup")
	parent, v2, err := ownMemoryCgroup()
	if err != nil {
		t.Fatalf("cgroup: %v", err)
	}
	if v2 {
		if err := enableMemory(parent); err != nil {
			t.Fatalf("cgroup: %v", err)
		}
	}
	dir := filepath.Join(parent, fmt.Sprintf("idgen-test-%d-%d", os.Getpid(), seq.Add(1)))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("cgroup: creating %s (needs root): %v", dir, err)
	}
	m := &Memory{dir: dir, v2: v2}
	t.Cleanup(func() {
		if err := m.remove(); err != nil {
			t.Errorf("cgroup: %v", err)
		}
	})
	limits := map[string]string{"memory.limit_in_bytes": strconv.FormatInt(limit, 10)}
	if v2 {
		limits = map[string]string{"memory.max": strconv.FormatInt(limit, 10), "memory.swap.max": "0"}
	} else if _, err := os.Stat(filepath.Join(dir, "memory.memsw.limit_in_bytes")); err == nil {
		// memsw must not be below the memory limit, so it is set after it.
		defer m.write(t, "memory.memsw.limit_in_bytes", strconv.FormatInt(limit, 10))
	}
	for file, v := range limits {
		if file == "memory.swap.max" {
			if _, err := os.Stat(filepath.Join(dir, file)); err != nil {
				continue // no swap accounting
			}
		}
		m.write(t, file, v)
	}
	return m
}

func (m *Memory) write(t testing.TB, file, v string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(m.dir, file), []byte(v), 0o644); err != nil {
		t.Fatalf("cgroup: %v", err)
	}
}

// Dir is the cgroup's directory.
func (m *Memory) Dir() string { return m.dir }

// LimitFile is the file holding the memory limit, as the process inside
// sees it named under /sys/fs/cgroup.
func (m *Memory) LimitFile() string {
	if m.v2 {
		return "memory.max"
	}
	return "memory.limit_in_bytes"
}

// Command returns the program and arguments that run name with args inside
// the cgroup: a shell moves itself in, then execs the command, so that
// every byte the command allocates is charged to the cgroup.
func (m *Memory) Command(name string, args ...string) (string, []string) {
	script := `echo $$ > "$0" && exec "$@"`
	return "/bin/sh", append([]string{"-c", script, filepath.Join(m.dir, "cgroup.procs"), name}, args...)
}

// OOMKills is how many processes the kernel's OOM killer ended in the
// cgroup (v2 memory.events, v1 memory.oom_control's oom_kill).
func (m *Memory) OOMKills() (int64, error) {
	file, key := "memory.oom_control", "oom_kill"
	if m.v2 {
		file = "memory.events"
	}
	return readKey(filepath.Join(m.dir, file), key)
}

// Peak is the most memory the cgroup used (v2 memory.peak, v1
// memory.max_usage_in_bytes).
func (m *Memory) Peak() (int64, error) {
	file := "memory.max_usage_in_bytes"
	if m.v2 {
		file = "memory.peak"
	}
	b, err := os.ReadFile(filepath.Join(m.dir, file))
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// remove kills what is left in the cgroup and removes it.
func (m *Memory) remove() error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids, err := os.ReadFile(filepath.Join(m.dir, "cgroup.procs"))
		if err != nil {
			return err
		}
		for _, f := range strings.Fields(string(pids)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		err = os.Remove(m.dir)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ownMemoryCgroup finds the directory of this process's memory cgroup:
// cgroup v1's memory controller when it is mounted, else cgroup v2's
// unified hierarchy.
func ownMemoryCgroup() (dir string, v2 bool, err error) {
	paths, err := ownPaths()
	if err != nil {
		return "", false, err
	}
	mounts, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false, err
	}
	defer mounts.Close()
	var unified string
	sc := bufio.NewScanner(mounts)
	for sc.Scan() {
		// id parent major:minor root mountpoint options... - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		root, point := f[3], f[4]
		switch {
		case g[0] == "cgroup" && hasOption(g[2], "memory"):
			return under(point, root, paths["memory"]), false, nil
		case g[0] == "cgroup2":
			unified = under(point, root, paths[""])
		}
	}
	if err := sc.Err(); err != nil {
		return "", false, err
	}
	if unified == "" {
		return "", false, errors.New("no memory cgroup: neither cgroup v1's memory controller nor cgroup v2 is mounted")
	}
	return unified, true, nil
}

// ownPaths reads /proc/self/cgroup: controller → path ("" is cgroup v2).
func ownPaths() (map[string]string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	paths := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			paths[""] = parts[2]
		}
		for _, c := range strings.Split(parts[1], ",") {
			paths[c] = parts[2]
		}
	}
	return paths, nil
}

// under is the directory of cgroup path in a hierarchy mounted at point
// whose root is root (a container's mount shows its own cgroup as root).
func under(point, root, path string) string {
	rel, err := filepath.Rel(root, path)
	if err != nil || strings.HasPrefix(rel, "..") {
		rel = "."
	}
	return filepath.Join(point, rel)
}

func hasOption(opts, name string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == name {
			return true
		}
	}
	return false
}

// enableMemory turns the memory controller on for the children of a v2
// cgroup. A non-root cgroup that holds processes cannot have controllers
// for its children (EBUSY), so its processes move into a leaf child first,
// as container entry points do.
func enableMemory(dir string) error {
	control := filepath.Join(dir, "cgroup.subtree_control")
	if b, err := os.ReadFile(control); err == nil && hasOption(strings.ReplaceAll(strings.TrimSpace(string(b)), " ", ","), "memory") {
		return nil
	}
	err := os.WriteFile(control, []byte("+memory"), 0o644)
	if !errors.Is(err, syscall.EBUSY) {
		if err != nil {
			return fmt.Errorf("enabling the memory controller in %s: %w", dir, err)
		}
		return nil
	}
	leaf := filepath.Join(dir, "idgen-init")
	if err := os.MkdirAll(leaf, 0o755); err != nil {
		return err
	}
	pids, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return err
	}
	for _, pid := range strings.Fields(string(pids)) {
		// A process that exited meanwhile cannot move; that is fine.
		_ = os.WriteFile(filepath.Join(leaf, "cgroup.procs"), []byte(pid), 0o644)
	}
	if err := os.WriteFile(control, []byte("+memory"), 0o644); err != nil {
		return fmt.Errorf("enabling the memory controller in %s: %w", dir, err)
	}
	return nil
}

// readKey reads "key value" from a flat-keyed cgroup file.
func readKey(path, key string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s has no %s", path, key)
}
