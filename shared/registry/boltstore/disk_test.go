package boltstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/idgen/idgen/harness/tmpfs"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/diskguard"
	"github.com/idgen/idgen/shared/registry/diskguard/diskguardtest"
	"github.com/idgen/idgen/shared/registry/internal/kvregistry"
	"github.com/idgen/idgen/shared/registry/registrytest"
)

// TestDisk runs the suite's disk-guard tests.
func TestDisk(t *testing.T) {
	registrytest.RunDisk(t, Open, BallastName)
}

// TestENOSPCReleasesBallast, on a real 8 MiB tmpfs with the threshold off:
// a commit that meets ENOSPC releases the ballast and succeeds on its
// second run; the writes after it are refused (ErrLowSpace, Ping fails)
// until space returns, then resume by themselves. Every acknowledged record
// is readable.
func TestENOSPCReleasesBallast(t *testing.T) {
	dir := diskguardtest.MountTmpfs(t, 8<<20)
	s, err := Open(Config{Dir: dir, Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
		Disk: diskguard.Config{MinFreeBytes: -1, MinFreePercent: -1, BallastBytes: 1 << 20, PollInterval: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	var acked []idcodec.ID
	register := func(c uint64) error {
		_, err := s.Register(ctx, registrytest.Pending(registrytest.ID(c)), 1000, 1)
		if err == nil {
			acked = append(acked, registrytest.ID(c))
		}
		return err
	}
	if err := register(1); err != nil {
		t.Fatal(err)
	}
	filler := tmpfs.Fill(t, dir, 0)
	// Until the file must grow, pages come from bbolt's free list: write
	// until a commit needs new space.
	c := uint64(2)
	for ; c < 100000; c++ {
		if err := register(c); err != nil {
			t.Fatalf("register %d with the ballast still to release: %v", c, err)
		}
		if _, err := os.Stat(filepath.Join(dir, BallastName)); errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	t.Logf("ballast released at registration %d, which succeeded", c)
	if err := register(c + 1); !errors.Is(err, diskguard.ErrLowSpace) || !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("register after the ENOSPC: %v, want ErrLowSpace", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, diskguard.ErrLowSpace) {
		t.Fatalf("ping after the ENOSPC: %v, want ErrLowSpace", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	diskguardtest.Eventually(t, 5*time.Second, "writes resume", func() bool { return register(c+2) == nil })
	for _, x := range acked {
		if _, err := s.Get(ctx, x); err != nil {
			t.Fatalf("acknowledged %s: %v", x, err)
		}
	}
}

// TestStalledCommitFailsFast: the suite's stall test, with a write
// transaction that does not end standing for a commit stuck in the disk.
func TestStalledCommitFailsFast(t *testing.T) {
	registrytest.StalledCommitFailsFast(t, Open, Config{}, func(s *Store) (func() error, func()) {
		release, stalled := make(chan struct{}), make(chan error, 1)
		go func() {
			stalled <- s.write(context.Background(), false, func(kvregistry.Tx) error { <-release; return nil })
		}()
		return func() error { return <-stalled }, func() { close(release) }
	})
}
