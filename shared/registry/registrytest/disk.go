package registrytest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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
)

// DiskStore is a Store with a disk guard: the embedded backends.
type DiskStore interface {
	Store
	DiskState() diskguard.State
}

// RunDisk runs the disk-guard tests of the suite against stores of open
// (an embedded backend's Open), on real tmpfs mounts (diskguardtest: they
// need root). ballast is the name of the store's ballast file in its
// directory.
func RunDisk[E kvregistry.Engine, S DiskStore](t *testing.T, open func(kvregistry.Config[E]) (S, error), ballast string) {
	// opened closes a store at the end of its test (Close again is nil).
	opened := func(t *testing.T, dir string, disk diskguard.Config) (DiskStore, error) {
		s, err := open(kvregistry.Config[E]{Dir: dir, Disk: disk, Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))})
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { _ = s.Close() })
		return s, nil
	}
	t.Run("FullDiskRefusesThenResumes", func(t *testing.T) { fullDiskRefusesThenResumes(t, opened, ballast) })
	t.Run("OpenOnFullDisk", func(t *testing.T) { openOnFullDisk(t, opened, ballast) })
}

// diskOpener is RunDisk's opener of the tests: closed with the test.
type diskOpener func(t *testing.T, dir string, disk diskguard.Config) (DiskStore, error)

// registrar registers fresh IDs from 4 goroutines until halted, and keeps
// the acknowledged ones and the count of the refused ones.
type registrar struct {
	mu      sync.Mutex
	acked   []idcodec.ID
	refused atomic.Int64
	next    atomic.Uint64
	stop    chan struct{}
	wg      sync.WaitGroup
}

// startRegistrar starts registering into s; an error that allowed does not
// accept fails t.
func startRegistrar(t *testing.T, s Store, allowed func(error) bool) *registrar {
	r := &registrar{stop: make(chan struct{})}
	for range 4 {
		r.wg.Go(func() {
			for {
				select {
				case <-r.stop:
					return
				default:
				}
				x := ID(r.next.Add(1))
				_, err := s.Register(context.Background(), Pending(x), idemTTL, NowMS)
				switch {
				case err == nil:
					r.mu.Lock()
					r.acked = append(r.acked, x)
					r.mu.Unlock()
				case allowed(err):
					r.refused.Add(1)
					time.Sleep(time.Millisecond)
				default:
					t.Errorf("register: %v", err)
					return
				}
			}
		})
	}
	t.Cleanup(r.halt)
	return r
}

func (r *registrar) halt() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.wg.Wait()
}

func (r *registrar) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.acked)
}

// fullDiskRefusesThenResumes, on a real 32 MiB tmpfs: a filler that
// leaves less than the threshold free makes the store refuse writes with
// ErrLowSpace before any write meets ENOSPC (no failure, no panic), Ping
// fails and the ballast goes; deleting the filler resumes writes by
// themselves, the ballast comes back, and every acknowledged record is
// readable, before and after a reopen.
func fullDiskRefusesThenResumes(t *testing.T, open diskOpener, ballast string) {
	dir := diskguardtest.MountTmpfs(t, 32<<20)
	disk := diskguard.Config{MinFreeBytes: 4 << 20, MinFreePercent: -1, BallastBytes: 2 << 20, PollInterval: 20 * time.Millisecond}
	s, err := open(t, dir, disk)
	if err != nil {
		t.Fatal(err)
	}
	ballast = filepath.Join(dir, ballast)
	if _, err := os.Stat(ballast); err != nil {
		t.Fatalf("no ballast: %v", err)
	}
	ctx := context.Background()
	r := startRegistrar(t, s, func(err error) bool { return errors.Is(err, diskguard.ErrLowSpace) })
	diskguardtest.Eventually(t, 5*time.Second, "some registrations", func() bool { return r.count() > 100 })

	filler := tmpfs.Fill(t, dir, 2<<20)
	t.Logf("filled: %d bytes free", tmpfs.Free(t, dir))
	diskguardtest.Eventually(t, 5*time.Second, "writes refused", func() bool { return r.refused.Load() > 0 })
	if err := s.Ping(ctx); !errors.Is(err, diskguard.ErrLowSpace) || !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("ping while refusing: %v, want ErrLowSpace", err)
	}
	diskguardtest.Eventually(t, 5*time.Second, "the ballast released while refusing", func() bool {
		_, err := os.Stat(ballast)
		return errors.Is(err, os.ErrNotExist)
	})
	if st := s.DiskState(); !st.Refusing || st.Failed != nil {
		t.Fatalf("state %+v, want refusing and not failed", st)
	}
	before := r.count()
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	diskguardtest.Eventually(t, 5*time.Second, "writes resume", func() bool { return r.count() > before+100 })
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping after space returned: %v", err)
	}
	if _, err := os.Stat(ballast); err != nil {
		t.Fatalf("ballast not re-created: %v", err)
	}
	r.halt()
	t.Logf("%d acknowledged, %d refused", len(r.acked), r.refused.Load())
	for _, x := range r.acked {
		if _, err := s.Get(ctx, x); err != nil {
			t.Fatalf("acknowledged %s: %v", x, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = open(t, dir, disk)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range r.acked {
		if _, err := s.Get(ctx, x); err != nil {
			t.Fatalf("acknowledged %s after reopen: %v", x, err)
		}
	}
}

// openOnFullDisk, on a real 8 MiB tmpfs: Open below the threshold fails at
// once with one line naming the directory, the free and the needed bytes;
// a ballast left by an earlier run counts as free space, and Open releases
// it to start.
func openOnFullDisk(t *testing.T, open diskOpener, ballast string) {
	dir := diskguardtest.MountTmpfs(t, 8<<20)
	disk := diskguard.Config{MinFreeBytes: 2 << 20, MinFreePercent: -1, BallastBytes: 2 << 20}
	s, err := open(t, dir, disk)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ballast = filepath.Join(dir, ballast)
	if _, err := os.Stat(ballast); err != nil {
		t.Fatalf("ballast not kept across Close: %v", err)
	}

	// 1 MiB free + the 2 MiB ballast: enough to start, without the ballast.
	_ = tmpfs.Fill(t, dir, 1<<20)
	if s, err = open(t, dir, disk); err != nil {
		t.Fatalf("open counting the ballast: %v", err)
	}
	if _, err := os.Stat(ballast); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ballast kept although it was needed to start: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// No ballast left and the disk full: refuse, at once, in one line.
	_ = tmpfs.Fill(t, dir, 512<<10)
	t0 := time.Now()
	if _, err = open(t, dir, disk); err == nil {
		t.Fatal("opened on a full disk")
	}
	if d := time.Since(t0); d > time.Second {
		t.Fatalf("Open took %s to refuse", d)
	}
	msg := err.Error()
	t.Logf("open: %s", msg)
	if !errors.Is(err, diskguard.ErrLowSpace) || strings.Contains(msg, "\n") || !strings.Contains(msg, dir) || !strings.Contains(msg, "KiB free") || !strings.Contains(msg, "2.00 MiB") {
		t.Fatalf("open error %q: want one line with ErrLowSpace, the directory, the free and the needed bytes", msg)
	}
}

// StalledCommitFailsFast opens a store with open (an embedded backend's
// Open) from cfg (the engine's options) with a stall bound of 200ms, then
// checks that while a commit does not return, Ping fails with ErrStalled
// within the bound and a new write fails at once instead of queueing; once
// the commit returns, the stalled write succeeds and the store is ready
// again. stall starts a write in the store whose commit does not return
// until release is called; wait returns that write's error. How to stall a
// commit is the backend's own.
func StalledCommitFailsFast[E kvregistry.Engine, S DiskStore](t *testing.T, open func(kvregistry.Config[E]) (S, error), cfg kvregistry.Config[E], stall func(S) (wait func() error, release func())) {
	const bound = 200 * time.Millisecond
	cfg.Dir, cfg.Logger = t.TempDir(), zaptest.NewLogger(t)
	cfg.Disk = diskguard.Config{StallTimeout: bound, PollInterval: 20 * time.Millisecond, MinFreeBytes: 1 << 20, MinFreePercent: -1}
	s, err := open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	wait, release := stall(s)
	released := sync.OnceFunc(release)
	defer released()
	t0 := time.Now()
	diskguardtest.Eventually(t, bound+2*time.Second, "Ping fails with ErrStalled", func() bool {
		return errors.Is(s.Ping(ctx), diskguard.ErrStalled)
	})
	t.Logf("Ping failed %s after the stall began", time.Since(t0).Round(time.Millisecond))
	if st := s.DiskState(); !st.Stalled {
		t.Fatalf("state %+v not stalled", st)
	}
	t1 := time.Now()
	if _, err := s.Register(ctx, Pending(ID(1<<20)), idemTTL, NowMS); !errors.Is(err, diskguard.ErrStalled) || !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("register during the stall: %v, want ErrStalled", err)
	}
	if d := time.Since(t1); d > 100*time.Millisecond {
		t.Fatalf("register during the stall took %s: it queued", d)
	}
	released()
	done := make(chan error, 1)
	go func() { done <- wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the stalled write: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stalled write did not return after its commit did")
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping after the stall: %v", err)
	}
	if _, err := s.Register(ctx, Pending(ID(1<<20+1)), idemTTL, NowMS); err != nil {
		t.Fatal(err)
	}
}
