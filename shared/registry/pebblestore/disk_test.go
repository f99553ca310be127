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

	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/diskguard"
	"github.com/idgen/idgen/shared/registry/registrytest"
)

// TestDisk runs the suite's disk-guard tests.
func TestDisk(t *testing.T) {
	registrytest.RunDisk(t, Open, BallastName)
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
	s, err := Open(Config{Dir: dir, Engine: Engine{FS: fs}, Logger: zaptest.NewLogger(t)})
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
	s, err := Open(Config{Dir: dir, Engine: Engine{FS: fs}, Logger: zap.New(core), Disk: diskguard.Config{MinFreeBytes: 1 << 20, MinFreePercent: -1, BallastBytes: 1 << 20}})
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

// TestStalledSyncFailsFast: the suite's stall test, with a WAL sync that
// does not return (the stalled write is acknowledged once it does).
func TestStalledSyncFailsFast(t *testing.T) {
	fs := &stallFS{FS: vfs.Default}
	registrytest.StalledCommitFailsFast(t, Open, Config{Engine: Engine{FS: fs}}, func(s *Store) (func() error, func()) {
		fs.shut()
		stalled := make(chan error, 1)
		go func() {
			_, err := s.Register(context.Background(), pending(id(1)), 1000, 1)
			stalled <- err
		}()
		return func() error { return <-stalled }, fs.open
	})
}
