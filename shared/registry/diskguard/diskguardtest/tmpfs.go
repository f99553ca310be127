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
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/harness/tmpfs"
)

// MountTmpfs mounts a tmpfs of sizeBytes on a new temporary directory and
// returns the directory; the test's cleanup unmounts it. It is
// tmpfs.MountAlways: it never skips, not even under -short.
func MountTmpfs(t testing.TB, sizeBytes int64) string {
	t.Helper()
	return tmpfs.MountAlways(t, sizeBytes)
}

// Eventually polls cond until it holds, and fails t with what when it does
// not within the bound (proc.Eventually).
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	proc.Eventually(t, within, what, cond)
}
