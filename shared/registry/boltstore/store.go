// Package boltstore is the embedded backend of idgen: one bbolt file holding
// the shard range counters and the registry of issued IDs.
//
// Invariants: a counter range is fsynced before ClaimRange returns it, so a
// restart (or SIGKILL, or power loss) never hands out a counter again;
// registrations and transitions are group-committed: every call waiting when
// a write transaction starts rides in it, and no call returns before the
// transaction (with its fsync) is committed. There is no fixed timer: while
// one transaction commits, the next batch accumulates, and only under load (a
// previous batch of 8 or more) does it wait, at most the previous commit's
// duration, for as many operations (registry.Gatherer). A failing operation
// writes nothing; a failing commit fails every operation of the batch.
//
// Disk space and stalls never crash the process (diskguard): writes are
// refused with registry.ErrUnavailable while the filesystem is below the
// free-space threshold or a commit is stalled, and Ping fails meanwhile; a
// ballast file beside the store is released when space runs short; a
// commit that still meets ENOSPC releases it and runs once more (bbolt
// rolled it back, and every operation checks before it writes, so running
// it again is safe). Open refuses a filesystem below the threshold.
package boltstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/bbolt"

	"github.com/idgen/idgen/shared/generator"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/diskguard"
	"github.com/idgen/idgen/shared/registry/internal/kvregistry"
)

// FileName is the store's file inside the data directory.
const FileName = "idgen.db"

// BallastName is the disk ballast file inside the data directory.
const BallastName = FileName + ".ballast"

// Config of a Store; the zero value means the documented defaults.
type Config = kvregistry.Config[Engine]

// Engine holds the options of bbolt a Config adds to those every embedded
// store shares: none.
type Engine struct{}

// Name is the prefix of the package's errors.
func (Engine) Name() string { return "boltstore" }

// Validate accepts every Engine.
func (Engine) Validate() error { return nil }

// registryOps are the registry's operations over the file (kvregistry).
type registryOps = kvregistry.Registry

// Store is the embedded registry and range source. Safe for concurrent use.
type Store struct {
	*registryOps
	cfg   Config
	db    *bbolt.DB
	guard *diskguard.Guard
	// c queues the ops of the group commit; its WhileOpen gates the reads,
	// so that Close never closes the file under one.
	c *kvregistry.Committer

	closeOnce sync.Once
}

var (
	_ generator.RangeSource = (*Store)(nil)
)

// Open opens (or creates) the store in cfg.Dir and starts its flusher. It
// fails with diskguard.ErrLowSpace (one line naming the directory, the free
// and the needed bytes) when the filesystem is below the free-space
// threshold.
func Open(cfg Config) (*Store, error) {
	return kvregistry.Open(cfg, BallastName, os.MkdirAll, openDB)
}

func openDB(cfg Config, guard *diskguard.Guard) (*Store, error) {
	path := filepath.Join(cfg.Dir, FileName)
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:        cfg.OpenTimeout,
		NoSync:         cfg.NoSync,
		FreelistType:   bbolt.FreelistMapType,
		NoFreelistSync: true,
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range buckets[1:] {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("boltstore: init %s: %w", path, err)
	}
	s := &Store{cfg: cfg, db: db, guard: guard, c: kvregistry.NewCommitter(cfg.MaxBatch, guard.Check)}
	s.registryOps = kvregistry.New("boltstore", cfg.Shard, s.write, s.read)
	go s.flusher()
	return s, nil
}

// view runs fn in a read transaction of the open file. Errors: ErrClosed.
func (s *Store) view(fn func(tx *bbolt.Tx) error) error {
	return s.c.WhileOpen(func() error { return s.db.View(fn) })
}

// flusher commits everything queued in one transaction, over and over,
// until Close; then it commits what is still queued. Each commit costs the
// same two fsyncs whatever the size of its batch (registry.Gatherer closes
// the batches).
func (s *Store) flusher() {
	s.c.Run(s.commit)
}

// commit runs the ops of batch in one write transaction. A commit that
// meets ENOSPC releases the ballast (guard.DiskFull) and runs once more.
func (s *Store) commit(batch []*kvregistry.Op) {
	t0 := time.Now()
	var err error
	for try := 0; try < 2; try++ {
		var grew int64
		s.guard.CommitStarted()
		err = s.db.Update(func(tx *bbolt.Tx) error {
			if err := s.c.RunBatch(kv{tx}, batch); err != nil {
				return err
			}
			st := tx.Stats()
			grew = st.GetPageAlloc()
			return nil
		})
		s.c.Committed(err)
		s.guard.CommitDone(grew, err)
		if !errors.Is(err, syscall.ENOSPC) || try > 0 {
			break
		}
		s.guard.DiskFull()
	}
	kvregistry.Answer(batch, err, t0, s.cfg.Observe)
}

// Close stops accepting work, commits what is queued and closes the file.
// After it every call returns ErrClosed; Close itself returns nil after
// the first time. When the flusher does not return
// within cfg.CloseTimeout (a stalled disk) Close returns an error wrapping
// registry.ErrUnavailable and leaves it running; the file stays locked
// until the process exits.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		defer s.guard.Close()
		if err = s.c.Close(s.cfg.CloseTimeout); err != nil {
			err = fmt.Errorf("boltstore: close: %w", err)
			return
		}
		err = s.db.Close()
	})
	return err
}

// DiskState returns the state of the disk guard (metrics).
func (s *Store) DiskState() diskguard.State { return s.guard.State() }

// Ping checks that the file is readable and that the store admits writes:
// it fails while the disk is below the free-space threshold and while a
// commit is stalled. Errors: ErrClosed after Close.
func (s *Store) Ping(context.Context) error {
	return s.view(func(tx *bbolt.Tx) error {
		if err := s.guard.Check(); err != nil {
			return err
		}
		if tx.Bucket(buckets[kvregistry.Meta]) == nil {
			return fmt.Errorf("%w: meta bucket missing", registry.ErrCorrupt)
		}
		return nil
	})
}
