// Package pebblestore is an embedded backend of idgen on Pebble (an LSM
// key-value store): the shard range counters and the registry of issued IDs
// in one directory. It is a drop-in alternative to boltstore with the same
// API and semantics; it exists because a Pebble commit costs one WAL
// fdatasync where a bbolt commit costs two.
//
// Invariants: a counter range is in the synced WAL before ClaimRange returns
// it, so a restart (or SIGKILL, or power loss) never hands out a counter
// again; registrations and transitions are group-committed by one flusher:
// every call waiting when a batch starts rides in it, each operation reads
// the writes of those before it in the batch (an indexed batch), and no call
// returns before the batch is committed with its WAL sync (audit marks
// alone are committed unsynced and made durable by the next sync:
// PutAuditMark). There is no fixed
// timer: while one batch commits, the next accumulates, and only under load
// (a previous batch of 8 or more) does it wait, at most the previous commit's
// duration, for as many operations (registry.Gatherer). A failing operation
// writes nothing; a failing commit fails every operation of the batch.
//
// Disk space and stalls never crash the process (diskguard): writes are
// refused with registry.ErrUnavailable while the filesystem is below the
// free-space threshold or a commit is stalled, and Ping fails meanwhile; a
// ballast file beside the directory is released when space runs short; an
// ENOSPC that still reaches Pebble releases it and the write is retried
// once; an error Pebble treats as fatal puts the store in a sticky failed
// state (every request ErrUnavailable, Ping naming the cause) instead of
// ending the process. Open refuses a filesystem below the threshold.
//
// Unlike bbolt, Pebble makes a batch visible to readers (Get, Expired,
// Counter) a moment before its WAL sync completes; writers still see only
// what their own flusher wrote, so the SETNX and idempotency checks are
// unaffected.
package pebblestore

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/idgen/idgen/shared/generator"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/diskguard"
	"github.com/idgen/idgen/shared/registry/internal/kvregistry"
)

// DirName is the store's directory inside the data directory (beside
// boltstore's FileName, so both can share a data directory).
const DirName = "idgen.pebble"

// formatValue marks a directory written by this package; Open refuses any
// other value, Ping reports its absence as corruption.
const formatValue = "idgen-pebblestore/1"

// Config of a Store; the zero value means the documented defaults. Its
// Logger receives Pebble's own messages too (info as debug, errors at most
// once per Engine.ErrorLogInterval for each kind, with a count of the ones
// left out).
type Config = kvregistry.Config[Engine]

// Engine holds the options of Pebble a Config adds to those every embedded
// store shares.
type Engine struct {
	// ErrorLogInterval bounds how often one kind of Pebble error is logged.
	// Default 10s.
	ErrorLogInterval time.Duration
	// FS is the filesystem Pebble writes through (tests inject faults with
	// vfs/errorfs). Default vfs.Default.
	FS vfs.FS
}

// Name is the prefix of the package's errors.
func (Engine) Name() string { return "pebblestore" }

// Validate reports options that cannot work.
func (e Engine) Validate() error {
	if e.ErrorLogInterval < 0 {
		return errors.New("pebblestore: negative interval")
	}
	return nil
}

// BallastName is the disk ballast file inside the data directory.
const BallastName = DirName + ".ballast"

// registryOps are the registry's operations over the directory
// (kvregistry).
type registryOps = kvregistry.Registry

// Store is the embedded registry and range source. Safe for concurrent use.
type Store struct {
	*registryOps
	cfg   Config
	db    *pebble.DB
	lock  *pebble.Lock
	guard *diskguard.Guard
	log   *pebbleLogger
	wo    *pebble.WriteOptions
	// c queues the ops of the group commit; its WhileOpen gates every read
	// (Pebble panics on a closed DB), so Close never closes Pebble under
	// one.
	c *kvregistry.Committer
	// maxRecord is at least the largest record key in the store (read at
	// Open, raised by every record write; only the flusher touches it), so
	// that registering an ID above it skips the existence probe.
	maxRecord []byte

	closeOnce sync.Once
}

var _ generator.RangeSource = (*Store)(nil)

// Open opens (or creates) the store in cfg.Dir/DirName and starts its
// flusher. It fails when another Store holds the directory for longer than
// cfg.OpenTimeout, and with diskguard.ErrLowSpace (one line naming the
// directory, the free and the needed bytes) when the filesystem is below
// the free-space threshold.
func Open(cfg Config) (*Store, error) {
	cfg.Engine.ErrorLogInterval = cmp.Or(cfg.Engine.ErrorLogInterval, 10*time.Second)
	cfg.Engine.FS = cmp.Or(cfg.Engine.FS, vfs.Default)
	return kvregistry.Open(cfg, BallastName, cfg.Engine.FS.MkdirAll, openDB)
}

func openDB(cfg Config, guard *diskguard.Guard) (*Store, error) {
	path := filepath.Join(cfg.Dir, DirName)
	if err := cfg.Engine.FS.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("pebblestore: %w", err)
	}
	lock, err := lockDir(cfg.Engine.FS, path, cfg.OpenTimeout)
	if err != nil {
		return nil, fmt.Errorf("pebblestore: lock %s: %w", path, err)
	}
	log := &pebbleLogger{z: cfg.Logger, limit: newLogLimiter(cfg.Engine.ErrorLogInterval), onFatal: func(err error) { guard.Fail(err) }}
	s := &Store{
		cfg: cfg, lock: lock, guard: guard, log: log, wo: pebble.Sync,
		c: kvregistry.NewCommitter(cfg.MaxBatch, guard.Check),
	}
	s.registryOps = kvregistry.New("pebblestore", cfg.Shard, s.write, s.read)
	if cfg.NoSync {
		s.wo = pebble.NoSync
	}
	err = log.guarded(func() error {
		db, err := pebble.Open(path, options(cfg, lock, log, guard))
		if err != nil {
			return fmt.Errorf("pebblestore: open %s: %w", path, err)
		}
		s.db = db
		if err := initFormat(db); err != nil {
			return fmt.Errorf("pebblestore: init %s: %w", path, err)
		}
		if s.maxRecord, err = lastRecordKey(db); err != nil {
			return fmt.Errorf("pebblestore: open %s: %w", path, err)
		}
		return nil
	})
	if err != nil {
		if s.db != nil {
			_ = s.closeDB()
		}
		_ = lock.Close()
		return nil, err
	}
	go s.flusher()
	return s, nil
}

// lockDir takes Pebble's LOCK file, retrying until timeout: a restarting
// service may still be closing the previous process's store.
func lockDir(fs vfs.FS, path string, timeout time.Duration) (*pebble.Lock, error) {
	deadline := time.Now().Add(timeout)
	for {
		lock, err := pebble.LockDirectory(path, fs)
		if err == nil {
			return lock, nil
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// options sizes Pebble for a small box: one 4 MiB memtable (two before
// writes stall), an 8 MiB block cache, one compaction at a time, and bloom
// filters because Register probes keys that are almost always absent.
// Pebble writes through vfs.OnDiskFull: an ENOSPC releases the ballast
// (guard.DiskFull) and the write is retried once, with the room it freed.
func options(cfg Config, lock *pebble.Lock, log *pebbleLogger, guard *diskguard.Guard) *pebble.Options {
	o := &pebble.Options{
		Lock:                        lock,
		FormatMajorVersion:          pebble.FormatNewest,
		MemTableSize:                4 << 20,
		MemTableStopWritesThreshold: 2,
		CacheSize:                   8 << 20,
		MaxOpenFiles:                256,
		Logger:                      log,
		EventListener:               log.eventListener(),
		FS:                          vfs.OnDiskFull(cfg.Engine.FS, guard.DiskFull),
	}
	o.WithFSDefaults() // disk-health checks: DiskSlow events
	for i := range o.Levels {
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	return o
}

// formatKey is the Meta key of formatValue.
var formatKey = []byte{'m', 'f'}

// lastRecordKey returns a copy of the largest record key, or the record
// prefix alone (below every record key) when there is none.
func lastRecordKey(db *pebble.DB) ([]byte, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixRecord}, UpperBound: []byte{prefixRecord + 1}})
	if err != nil {
		return nil, err
	}
	last := []byte{prefixRecord}
	if it.Last() {
		last = bytes.Clone(it.Key())
	}
	return last, errors.Join(it.Error(), it.Close())
}

func initFormat(db *pebble.DB) error {
	v, closer, err := db.Get(formatKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		return db.Set(formatKey, []byte(formatValue), pebble.Sync)
	case err != nil:
		return err
	}
	defer closer.Close()
	if string(v) != formatValue {
		return fmt.Errorf("%w: format %q, want %q", registry.ErrCorrupt, v, formatValue)
	}
	return nil
}

// Close stops accepting work, commits what is queued and closes the
// directory. Later calls return ErrClosed; Close itself returns nil after
// the first time. When the flusher or Pebble does not return within
// cfg.CloseTimeout (a stalled disk, a failed store) Close returns an error
// wrapping registry.ErrUnavailable and leaves them running: the directory
// stays locked until the process exits, and its next start recovers from
// the WAL.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		defer s.guard.Close()
		deadline := time.NewTimer(s.cfg.CloseTimeout)
		defer deadline.Stop()
		if err = s.c.Close(s.cfg.CloseTimeout); err != nil {
			err = fmt.Errorf("pebblestore: close: %w", err)
			return
		}
		done := make(chan error, 1)
		go func() { done <- s.closeDB() }()
		select {
		case err = <-done:
		case <-deadline.C:
			err = fmt.Errorf("pebblestore: close: %w: pebble did not close within %s", registry.ErrUnavailable, s.cfg.CloseTimeout)
			return
		}
		err = errors.Join(err, s.lock.Close())
		if ferr := s.guard.CheckFailed(); ferr != nil {
			err = errors.Join(err, ferr)
		}
	})
	return err
}

// closeDB closes Pebble; after a failure Pebble may panic on the way
// (a broken commit pipeline), which becomes the error.
func (s *Store) closeDB() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("pebblestore: close after failure: %v", r)
		}
	}()
	return s.log.guarded(s.db.Close)
}

// DiskState returns the state of the disk guard (metrics).
func (s *Store) DiskState() diskguard.State { return s.guard.State() }

// Ping checks that the store is open and readable, and that it admits
// writes: it fails while the disk is below the free-space threshold, while
// a commit is stalled, and for good after a failure.
func (s *Store) Ping(context.Context) error {
	return s.read(func(r kvregistry.Reader) error {
		if err := s.guard.Check(); err != nil {
			return err
		}
		v, err := r.Get(kvregistry.Meta, formatKey)
		if err == nil && v == nil {
			return fmt.Errorf("%w: format key missing", registry.ErrCorrupt)
		}
		return err
	})
}
