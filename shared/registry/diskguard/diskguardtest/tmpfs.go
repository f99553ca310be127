// Package diskguardtest mounts small real filesystems for the disk-space
// tests of the embedded stores, so that every store is tested against a
// disk that really fills up (ENOSPC from the kernel, not a fake), and
// polls for the guard's changes of state (Eventually).
//
// Mounting needs root (CI runs as root); without it a test fails with a
// message that says so, rather than skipping: a skipped disk test proves
// nothing.
package diskguardtest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
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

// Free returns the bytes of dir's filesystem available to writers.
func Free(t testing.TB, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatalf("statfs %s: %v", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// Fill writes a filler file into dir until the filesystem has at most leave
// bytes free (never below zero: it stops at ENOSPC), and returns its path.
// Deleting the file gives the space back.
func Fill(t testing.TB, dir string, leave int64) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "filler-*")
	if err != nil {
		t.Fatalf("create filler: %v", err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{0xa5}, 64<<10)
	for {
		free := Free(t, dir)
		if free <= leave {
			break
		}
		n := min(int64(len(chunk)), free-leave)
		if _, err := f.Write(chunk[:n]); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			t.Fatalf("write filler: %v", err)
		}
	}
	return filepath.Clean(f.Name())
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
