package pebblestore

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// TestAuditMarkUnsynced: audit marks alone cost no WAL sync of their own
// and are read back at once; the next synced write (any other op) syncs
// them with it, and they survive a reopen.
func TestAuditMarkUnsynced(t *testing.T) {
	var syncs atomic.Int64
	fs := errorfs.Wrap(vfs.Default, errorfs.InjectorFunc(func(op errorfs.Op) error {
		switch op.Kind {
		case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			if walWrite(op) {
				syncs.Add(1)
			}
		}
		return nil
	}))
	dir := t.TempDir()
	s, err := Open(Config{Dir: dir, Engine: Engine{FS: fs}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	before := syncs.Load()
	for i := range 20 {
		key := []byte{'k', byte(i)}
		if err := s.PutAuditMark(ctx, key, int64(1000+i)); err != nil {
			t.Fatal(err)
		}
		if exp, err := s.AuditMark(ctx, key); exp != int64(1000+i) || err != nil {
			t.Fatalf("mark %d read back: %d, %v", i, exp, err)
		}
	}
	if n := syncs.Load() - before; n != 0 {
		t.Fatalf("%d WAL syncs for 20 marks alone, want 0", n)
	}
	if err := s.RaiseHighWater(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if n := syncs.Load() - before; n == 0 {
		t.Fatal("no WAL sync for a synced write after the marks")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if exp, err := s.AuditMark(ctx, []byte{'k', 19}); exp != 1019 || err != nil {
		t.Fatalf("mark after a reopen: %d, %v", exp, err)
	}
}
