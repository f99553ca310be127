// Package diskguardtest mounts small real filesystems for the disk-space
// tests of the embedded stores, so that every store is tested against a
// disk that really fills up (ENOSPC from the kernel, not a fake), and
// polls for the guard's changes of state (Eventually). The tests fill the
// mounts with harness/tmpfs (Fill, Free).
//
// Mounting needs root (CI runs as root); without it a test fails with a
// message that says so, rather than skipping, also under -short: a skipped
// disk test proves nothing.
package diskguardtest

import (
	"strconv"
	"syscall"
	"testing"
	"time"
)

// MountTmpfs mounts a tmpfs of sizeBytes on a new temporary directory and
// returns the directory; the test's cleanup unmounts it.
func MountTmpfs(t testing.TB, sizeBytes int64) string {
	t.Helper()
	dir := t.TempDir()
	opts := "size=" + strconv.FormatInt(sizeBytes, 10) + ",mode=0700"
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		t.Fatalf("mount a %d-byte tmpfs on %s: %v (the disk-space tests need root, as in CI)", sizeBytes, dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Eventually polls cond every 5ms until it holds, and fails t with what
// when it does not within the bound.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
