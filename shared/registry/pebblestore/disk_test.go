package pebblestore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/diskguard"
	"github.com/idgen/idgen/shared/registry/diskguard/diskguardtest"
)

// smallDisk is a guard sized for a 32 MiB tmpfs: refuse below 4 MiB free,
// a 2 MiB ballast, measured every 20ms.
var smallDisk = diskguard.Config{MinFreeBytes: 4 << 20, MinFreePercent: -1, BallastBytes: 2 << 20, PollInterval: 20 * time.Millisecond}

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

// walWrite matches the writes and syncs of WAL files.
func walWrite(op errorfs.Op) bool {
	switch op.Kind {
	case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		return strings.HasSuffix(op.Path, ".log")
	}
	return false
}

// TestWALErrorFailsStoreWithoutPanic: a WAL write or sync that keeps
// failing (Pebble's "fatal commit error") fails the batch with
// ErrUnavailable instead of ending the process; from then on the store is
// failed for good: writes and reads fail fast, Ping names the cause, and
// Close returns.
func TestWALErrorFailsStoreWithoutPanic(t *testing.T) {
	var on atomic.Bool
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if on.Load() && walWrite(op) {
			return errorfs.ErrInjected
		}
		return nil
	}))
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir, FS: fs, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.Register(ctx, pending(id(1)), 1000, 1); err != nil {
		t.Fatal(err)
	}
	on.Store(true)
	_, err = s.Register(ctx, pending(id(2)), 1000, 1)
	if !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("register on a failing WAL: %v, want ErrUnavailable", err)
	}
	t.Logf("register: %v", err)
	err = s.Ping(ctx)
	if !errors.Is(err, diskguard.ErrFailed) || !errors.Is(err, registry.ErrUnavailable) || !strings.Contains(err.Error(), "fatal commit error") {
		t.Fatalf("ping after the failure: %v, want ErrFailed naming the commit error", err)
	}
	on.Store(false) // a healed disk does not clear the failure: Pebble's WAL is broken
	t0 := time.Now()
	if _, err := s.Register(ctx, pending(id(3)), 1000, 1); !errors.Is(err, diskguard.ErrFailed) {
		t.Fatalf("register after the failure: %v, want ErrFailed", err)
	}
	if _, err := s.Get(ctx, id(1)); !errors.Is(err, diskguard.ErrFailed) {
		t.Fatalf("get after the failure: %v, want ErrFailed", err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Fatalf("requests after the failure took %s", d)
	}
	if st := s.DiskState(); st.Failed == nil {
		t.Fatalf("state %+v does not say failed", st)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		t.Logf("close: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	// A restart recovers from the WAL: the acknowledged record is there.
	s, err = Open(Config{Dir: dir, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatalf("reopen after the failure: %v", err)
	}
	defer s.Close()
	if _, err := s.Get(ctx, id(1)); err != nil {
		t.Fatalf("acknowledged record after the restart: %v", err)
	}
	if _, err := s.Register(ctx, pending(id(4)), 1000, 1); err != nil {
		t.Fatalf("register after the restart: %v", err)
	}
}

// TestWALENOSPCReleasesBallast: an ENOSPC that reaches Pebble releases the
// ballast, the write is retried once and succeeds; the store does not fail.
func TestWALENOSPCReleasesBallast(t *testing.T) {
	var once atomic.Bool
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		if walWrite(op) && op.Kind == errorfs.OpFileWrite && once.CompareAndSwap(true, false) {
			return &os.PathError{Op: "write", Path: op.Path, Err: syscall.ENOSPC}
		}
		return nil
	}))
	core, logs := observer.New(zap.InfoLevel)
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir, FS: fs, Logger: zap.New(core), Disk: diskguard.Config{MinFreeBytes: 1 << 20, MinFreePercent: -1, BallastBytes: 1 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := os.Stat(filepath.Join(dir, BallastName)); err != nil {
		t.Fatalf("no ballast after Open: %v", err)
	}
	ctx := context.Background()
	once.Store(true)
	if _, err := s.Register(ctx, pending(id(1)), 1000, 1); err != nil {
		t.Fatalf("register through one ENOSPC: %v", err)
	}
	if once.Load() {
		t.Fatal("the ENOSPC was never injected")
	}
	if logs.FilterMessage("disk ballast released").Len() == 0 {
		t.Fatalf("ENOSPC did not release the ballast; logs: %v", logs.All())
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping: %v (the filesystem has room: the guard admits writes again)", err)
	}
	if _, err := s.Get(ctx, id(1)); err != nil {
		t.Fatal(err)
	}
}

// stallFS blocks the syncs of WAL files while its gate is shut.
type stallFS struct {
	vfs.FS
	mu   sync.Mutex
	gate chan struct{} // nil: open
}

func (fs *stallFS) shut() {
	fs.mu.Lock()
	fs.gate = make(chan struct{})
	fs.mu.Unlock()
}

func (fs *stallFS) open() {
	fs.mu.Lock()
	if fs.gate != nil {
		close(fs.gate)
		fs.gate = nil
	}
	fs.mu.Unlock()
}

func (fs *stallFS) wait() {
	fs.mu.Lock()
	g := fs.gate
	fs.mu.Unlock()
	if g != nil {
		<-g
	}
}

func (fs *stallFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return &stallFile{File: f, fs: fs}, nil
}

func (fs *stallFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs *stallFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(newname, f, err)
}

type stallFile struct {
	vfs.File
	fs *stallFS
}

func (f *stallFile) Sync() error     { f.fs.wait(); return f.File.Sync() }
func (f *stallFile) SyncData() error { f.fs.wait(); return f.File.SyncData() }
func (f *stallFile) SyncTo(n int64) (bool, error) {
	f.fs.wait()
	return f.File.SyncTo(n)
}

// TestStalledSyncFailsFast: a WAL sync that does not return makes Ping fail
// within the stall bound and new writes fail at once (not queue); when the
// sync returns, the stalled write is acknowledged and the store is ready
// again.
func TestStalledSyncFailsFast(t *testing.T) {
	fs := &stallFS{FS: vfs.Default}
	const bound = 200 * time.Millisecond
	s, err := Open(Config{Dir: t.TempDir(), FS: fs, Logger: zaptest.NewLogger(t), Disk: diskguard.Config{StallTimeout: bound, PollInterval: 20 * time.Millisecond, MinFreeBytes: 1 << 20, MinFreePercent: -1}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer fs.open()
	ctx := context.Background()
	fs.shut()
	stalled := make(chan error, 1)
	go func() {
		_, err := s.Register(ctx, pending(id(1)), 1000, 1)
		stalled <- err
	}()
	t0 := time.Now()
	eventually(t, bound+2*time.Second, "Ping fails with ErrStalled", func() bool {
		return errors.Is(s.Ping(ctx), diskguard.ErrStalled)
	})
	t.Logf("ping failed %s after the stall began: %v", time.Since(t0).Round(time.Millisecond), s.Ping(ctx))
	if st := s.DiskState(); !st.Stalled {
		t.Fatalf("state %+v not stalled", st)
	}
	t1 := time.Now()
	_, err = s.Register(ctx, pending(id(2)), 1000, 1)
	if !errors.Is(err, diskguard.ErrStalled) || !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("register during the stall: %v, want ErrStalled", err)
	}
	if d := time.Since(t1); d > 100*time.Millisecond {
		t.Fatalf("register during the stall took %s: it queued", d)
	}
	fs.open()
	select {
	case err := <-stalled:
		if err != nil {
			t.Fatalf("the stalled register: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stalled register did not return after the sync did")
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping after the stall: %v", err)
	}
	if _, err := s.Register(ctx, pending(id(3)), 1000, 1); err != nil {
		t.Fatal(err)
	}
}

// TestFullDiskRefusesThenResumes, on a real 32 MiB tmpfs: a filler that
// leaves less than the threshold free makes the store refuse writes with
// ErrLowSpace before any write meets ENOSPC (no failure, no panic), Ping
// fails and the ballast goes; deleting the filler resumes writes by
// themselves, the ballast comes back, and every acknowledged record is
// readable, before and after a reopen.
func TestFullDiskRefusesThenResumes(t *testing.T) {
	dir := diskguardtest.MountTmpfs(t, 32<<20)
	cfg := Config{Dir: dir, Disk: smallDisk, Logger: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))}
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
	var (
		mu      sync.Mutex
		acked   []idcodec.ID
		refused atomic.Int64
		next    atomic.Uint64
		stop    = make(chan struct{})
		wg      sync.WaitGroup
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				x := id(next.Add(1))
				_, err := s.Register(ctx, pending(x), 1000, 1)
				switch {
				case err == nil:
					mu.Lock()
					acked = append(acked, x)
					mu.Unlock()
				case errors.Is(err, diskguard.ErrLowSpace):
					refused.Add(1)
					time.Sleep(time.Millisecond)
				default:
					t.Errorf("register: %v, want nil or ErrLowSpace", err)
					return
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	eventually(t, 5*time.Second, "some registrations", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) > 100 })

	filler := diskguardtest.Fill(t, dir, 2<<20)
	t.Logf("filled: %d bytes free", diskguardtest.Free(t, dir))
	eventually(t, 5*time.Second, "writes refused", func() bool { return refused.Load() > 0 })
	if err := s.Ping(ctx); !errors.Is(err, diskguard.ErrLowSpace) {
		t.Fatalf("ping while refusing: %v, want ErrLowSpace", err)
	} else {
		t.Logf("ping: %v", err)
	}
	if _, err := os.Stat(ballast); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ballast still there while refusing: %v", err)
	}
	if st := s.DiskState(); !st.Refusing || st.Failed != nil {
		t.Fatalf("state %+v, want refusing and not failed", st)
	}
	mu.Lock()
	before := len(acked)
	mu.Unlock()

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "writes resume", func() bool { mu.Lock(); defer mu.Unlock(); return len(acked) > before+100 })
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping after space returned: %v", err)
	}
	if _, err := os.Stat(ballast); err != nil {
		t.Fatalf("ballast not re-created: %v", err)
	}
	close(stop)
	wg.Wait()
	stop = make(chan struct{})
	t.Logf("%d acknowledged, %d refused", len(acked), refused.Load())
	for _, x := range acked {
		if _, err := s.Get(ctx, x); err != nil {
			t.Fatalf("acknowledged %s: %v", x, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for _, x := range acked {
		if _, err := s2.Get(ctx, x); err != nil {
			t.Fatalf("acknowledged %s after reopen: %v", x, err)
		}
	}
}

// TestOpenOnFullDisk, on a real 8 MiB tmpfs: Open below the threshold fails
// at once with one line naming the directory, the free and the needed
// bytes; a ballast left by an earlier run counts as free space, and Open
// releases it to start.
func TestOpenOnFullDisk(t *testing.T) {
	dir := diskguardtest.MountTmpfs(t, 8<<20)
	disk := diskguard.Config{MinFreeBytes: 2 << 20, MinFreePercent: -1, BallastBytes: 2 << 20}
	s, err := Open(Config{Dir: dir, Disk: disk})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ballast := filepath.Join(dir, BallastName)
	if _, err := os.Stat(ballast); err != nil {
		t.Fatalf("ballast not kept across Close: %v", err)
	}

	// 1 MiB free + the 2 MiB ballast: enough to start, without the ballast.
	filler := diskguardtest.Fill(t, dir, 1<<20)
	s, err = Open(Config{Dir: dir, Disk: disk})
	if err != nil {
		t.Fatalf("open counting the ballast: %v", err)
	}
	if _, err := os.Stat(ballast); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ballast kept although it was needed to start: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// No ballast left and the disk full: refuse, at once, in one line.
	_ = diskguardtest.Fill(t, dir, 0)
	t0 := time.Now()
	s, err = Open(Config{Dir: dir, Disk: disk})
	if err == nil {
		s.Close()
		t.Fatal("opened on a full disk")
	}
	if d := time.Since(t0); d > time.Second {
		t.Fatalf("Open took %s to refuse", d)
	}
	msg := err.Error()
	t.Logf("open: %s", msg)
	if !errors.Is(err, diskguard.ErrLowSpace) || strings.Contains(msg, "\n") || !strings.Contains(msg, dir) || !strings.Contains(msg, "free") || !strings.Contains(msg, "2.00 MiB") {
		t.Fatalf("open error %q: want one line with ErrLowSpace, the directory, the free and the needed bytes", msg)
	}
	_ = filler
}
