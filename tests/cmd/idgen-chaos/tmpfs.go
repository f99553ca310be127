package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// errNotRoot: the operator and resource faults mount real filesystems.
var errNotRoot = errors.New("the operator and resource faults (12-14) mount tmpfs filesystems and need root; run as root, or select -faults 1-11")

// mountTmpfs mounts a tmpfs of size bytes on dir (created). A disk that
// really fills is the point: the kernel's ENOSPC, not a fake.
func mountTmpfs(dir string, size int64) error {
	if os.Geteuid() != 0 {
		return errNotRoot
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	opts := "size=" + strconv.FormatInt(size, 10) + ",mode=0700"
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		return fmt.Errorf("mount a %d-byte tmpfs on %s: %w", size, dir, err)
	}
	return nil
}

// unmount detaches the tmpfs on dir (its content is gone).
func unmount(dir string) error {
	if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}

// freeBytes is what dir's filesystem has left for writers.
func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// fill writes the file path (another program's file growing on the same
// volume) until the kernel answers ENOSPC, ctx ends or limit bytes are
// written, and returns how many bytes it wrote. Removing the file gives
// the space back.
func fill(ctx context.Context, path string, limit int64) (int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{0xa5}, 1<<20)
	var n int64
	for n < limit && ctx.Err() == nil {
		w, err := f.Write(chunk)
		n += int64(w)
		if errors.Is(err, syscall.ENOSPC) {
			// tmpfs may refuse a whole chunk with room for part of it.
			for ctx.Err() == nil {
				w, err := f.Write(chunk[:4096])
				n += int64(w)
				if err != nil {
					break
				}
			}
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	if ctx.Err() != nil {
		return n, ctx.Err()
	}
	return n, fmt.Errorf("filler %s: %d bytes written and the volume is not full", path, n)
}
