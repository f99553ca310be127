package boltstore

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

	"go.etcd.io/bbolt"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/diskguard"
	"github.com/idgen/idgen/shared/registry/diskguard/diskguardtest"
	"github.com/idgen/idgen/shared/registry/registrytest"
)

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// registrar registers fresh IDs from 4 goroutines until stopped, and keeps
// the acknowledged ones and the count of the refused ones.
type registrar struct {
	mu      sync.Mutex
	acked   []idcodec.ID
	refused atomic.Int64
	next    atomic.Uint64
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startRegistrar(t *testing.T, s *Store, allowed func(error) bool) *registrar {
	r := &registrar{stop: make(chan struct{})}
	for range 4 {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			for {
				select {
				case <-r.stop:
					return
				default:
				}
				x := registrytest.ID(r.next.Add(1))
				_, err := s.Register(context.Background(), registrytest.Pending(x), 1000, 1)
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
		}()
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

// TestFullDiskRefusesThenResumes, on a real 16 MiB tmpfs: a filler that
// leaves less than the threshold free makes the store refuse writes with
// ErrLowSpace before any write meets ENOSPC, Ping fails and the ballast
// goes; deleting the filler resumes writes by themselves and every
// acknowledged record is readable, before and after a reopen.
func TestFullDiskRefusesThenResumes(t *testing.T) {
	dir := diskguardtest.MountTmpfs(t, 16<<20)
	cfg := Config{Dir: dir, Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
		Disk: diskguard.Config{MinFreeBytes: 4 << 20, MinFreePercent: -1, BallastBytes: 2 << 20, PollInterval: 20 * time.Millisecond}}
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ballast := filepath.Join(dir, BallastName)
	if _, err := os.Stat(ballast); err != nil {
		t.Fatalf("no ballast: %v", err)
	}
	ctx := context.Background()
	r := startRegistrar(t, s, func(err error) bool { return errors.Is(err, diskguard.ErrLowSpace) })
	eventually(t, 5*time.Second, "some registrations", func() bool { return r.count() > 100 })

	filler := diskguardtest.Fill(t, dir, 2<<20)
	eventually(t, 5*time.Second, "writes refused", func() bool { return r.refused.Load() > 0 })
	if err := s.Ping(ctx); !errors.Is(err, diskguard.ErrLowSpace) || !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("ping while refusing: %v, want ErrLowSpace", err)
	}
	if _, err := os.Stat(ballast); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ballast still there while refusing: %v", err)
	}
	before := r.count()
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "writes resume", func() bool { return r.count() > before+100 })
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping after space returned: %v", err)
	}
	if _, err := os.Stat(ballast); err != nil {
		t.Fatalf("ballast not re-created: %v", err)
	}
	r.halt()
	t.Logf("%d acknowledged, %d refused", len(r.acked), r.refused.Load())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for _, x := range r.acked {
		if _, err := s2.Get(ctx, x); err != nil {
			t.Fatalf("acknowledged %s after reopen: %v", x, err)
		}
	}
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
	filler := diskguardtest.Fill(t, dir, 0)
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
	eventually(t, 5*time.Second, "writes resume", func() bool { return register(c+2) == nil })
	for _, x := range acked {
		if _, err := s.Get(ctx, x); err != nil {
			t.Fatalf("acknowledged %s: %v", x, err)
		}
	}
}

// TestStalledCommitFailsFast: a commit that does not return makes Ping fail
// within the stall bound and new writes fail at once instead of queueing;
// when it returns, the store is ready again.
func TestStalledCommitFailsFast(t *testing.T) {
	const bound = 200 * time.Millisecond
	s, err := Open(Config{Dir: t.TempDir(), Logger: zaptest.NewLogger(t),
		Disk: diskguard.Config{StallTimeout: bound, PollInterval: 20 * time.Millisecond, MinFreeBytes: 1 << 20, MinFreePercent: -1}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	release := make(chan struct{})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	stalled := make(chan error, 1)
	go func() {
		// A commit stuck in the disk: the write transaction does not end.
		stalled <- s.do(ctx, func(*bbolt.Tx) error { <-release; return nil })
	}()
	eventually(t, bound+2*time.Second, "Ping fails with ErrStalled", func() bool {
		return errors.Is(s.Ping(ctx), diskguard.ErrStalled)
	})
	if st := s.DiskState(); !st.Stalled {
		t.Fatalf("state %+v not stalled", st)
	}
	t0 := time.Now()
	if _, err := s.Register(ctx, registrytest.Pending(registrytest.ID(1)), 1000, 1); !errors.Is(err, diskguard.ErrStalled) || !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("register during the stall: %v, want ErrStalled", err)
	}
	if d := time.Since(t0); d > 100*time.Millisecond {
		t.Fatalf("register during the stall took %s: it queued", d)
	}
	close(release)
	if err := <-stalled; err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping after the stall: %v", err)
	}
	if _, err := s.Register(ctx, registrytest.Pending(registrytest.ID(2)), 1000, 1); err != nil {
		t.Fatal(err)
	}
}

// TestOpenOnFullDisk, on a real 8 MiB tmpfs: Open below the threshold fails
// at once with one line naming the directory, the free and the needed
// bytes.
func TestOpenOnFullDisk(t *testing.T) {
	dir := diskguardtest.MountTmpfs(t, 8<<20)
	_ = diskguardtest.Fill(t, dir, 512<<10)
	t0 := time.Now()
	s, err := Open(Config{Dir: dir, Disk: diskguard.Config{MinFreeBytes: 2 << 20, MinFreePercent: -1}})
	if err == nil {
		s.Close()
		t.Fatal("opened on a full disk")
	}
	if d := time.Since(t0); d > time.Second {
		t.Fatalf("Open took %s to refuse", d)
	}
	msg := err.Error()
	t.Logf("open: %s", msg)
	if !errors.Is(err, diskguard.ErrLowSpace) || strings.Contains(msg, "\n") || !strings.Contains(msg, dir) || !strings.Contains(msg, "512.00 KiB free") || !strings.Contains(msg, "2.00 MiB") {
		t.Fatalf("open error %q: want one line with ErrLowSpace, the directory, the free and the needed bytes", msg)
	}
}
