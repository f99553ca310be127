// Package tmpfs mounts small real filesystems for the disk-space tests, so
// that a store, an audit log or a whole idgen process meets a disk that
// really fills up (ENOSPC from the kernel, not a fake).
//
// Mounting needs root (make test runs as root); without it a test fails
// with a message that says so, rather than skipping: a skipped disk test
// proves nothing. Under go test -short, Mount skips (make check runs
// without root); MountAlways mounts in every mode.
package tmpfs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/idgen/idgen/harness/proc"
)

// Mount mounts a tmpfs of sizeBytes on a new temporary directory and
// returns the directory; the test's cleanup unmounts it (lazily, so a file
// still open cannot keep it). Call it before starting a process that
// writes there, so that the process's own cleanup (registered later, run
// earlier) stops it first. Under go test -short it skips t
// (proc.SkipShort).
func Mount(t testing.TB, sizeBytes int64) string {
	t.Helper()
	proc.SkipShort(t, "root to mount a tmpfs")
	return MountAlways(t, sizeBytes)
}

// MountAlways is Mount without the skip under go test -short, for suites
// whose disk tests run in every mode: without root it fails t.
func MountAlways(t testing.TB, sizeBytes int64) string {
	t.Helper()
	dir := t.TempDir()
	opts := "size=" + strconv.FormatInt(sizeBytes, 10) + ",mode=0700"
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		t.Fatalf("mount a %d-byte tmpfs on %s: %v (the disk-space tests need root, as in make test)", sizeBytes, dir, err)
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
// bytes free, and returns its path; deleting the file gives the space back.
// With leave 0 it writes until the kernel refuses (ENOSPC), to the last
// byte of the filler's last page.
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
	for leave == 0 {
		if _, err := f.Write(chunk[:512]); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("write filler: %v", err)
			}
			break
		}
	}
	return filepath.Clean(f.Name())
}
