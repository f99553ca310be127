package tmpfs

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestFillAndFree: Fill leaves at most what it is asked to; with 0 the
// next write anywhere on the filesystem fails with ENOSPC; removing the
// filler gives the space back.
func TestFillAndFree(t *testing.T) {
	dir := Mount(t, 1<<20)
	if free := Free(t, dir); free < 1<<19 {
		t.Fatalf("a fresh 1 MiB tmpfs has %d bytes free", free)
	}
	filler := Fill(t, dir, 256<<10)
	if free := Free(t, dir); free > 256<<10 {
		t.Fatalf("%d bytes free after Fill(256 KiB)", free)
	}
	all := Fill(t, dir, 0)
	err := os.WriteFile(filepath.Join(dir, "more"), []byte("x"), 0o600)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write on a filled tmpfs: %v, want ENOSPC", err)
	}
	for _, f := range []string{filler, all} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	if free := Free(t, dir); free < 1<<19 {
		t.Fatalf("%d bytes free after removing the fillers", free)
	}
}
