package pebblestore

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/idgen/idgen/shared/registry"
)

// Key layout: one prefix byte per kind, then fixed-width big-endian parts,
// so that each kind is one contiguous, ordered key range.
const (
	prefixMeta      = 'm' // 'm' 'f': format marker
	prefixCounter   = 'c' // 'c' shard: next unclaimed counter, uint64 BE
	prefixRecord    = 'r' // 'r' id[16]: registry.Record.AppendBinary
	prefixIdem      = 'k' // 'k' keyHash[32]: registry.IdemEntry.MarshalBinary
	prefixDeadline  = 'd' // 'd' deadlineMS BE[8] id[16]: empty value
	prefixHighWater = 'h' // 'h' shard: highest counter an outside source gave, uint64 BE
	prefixIdemTime  = 'i' // 'i' createdMS BE[8] keyHash[32]: empty value (purge index)
	prefixKey       = 'e' // 'e' name: wrapped data keys (sealer.KeyStore)
)

// tx is what an op sees of the group commit: reads through the indexed
// batch (so the writes of earlier ops of the batch are visible, and only
// the flusher writes, so nothing else changes under it) and writes into it.
type tx struct {
	b *pebble.Batch
	// maxRecord is the Store's: no record key above it exists (see
	// Store.maxRecord); set keeps it up to date.
	maxRecord *[]byte
	// err is the first failed write. Pebble batch writes fail only when the
	// batch itself is broken; then the half-written op cannot be undone and
	// the whole batch is abandoned.
	err error
}

// get returns a copy of the value of key, or nil when it is absent.
func (t *tx) get(key []byte) ([]byte, error) {
	v, closer, err := t.b.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", registry.ErrUnavailable, err)
	}
	v = bytes.Clone(v)
	return v, closer.Close()
}

// has reports whether key exists.
func (t *tx) has(key []byte) (bool, error) {
	_, closer, err := t.b.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%w: %w", registry.ErrUnavailable, err)
	}
	return true, closer.Close()
}

// hasRecord reports whether the record key exists. A key above every
// record key written so far cannot (the common case: IDs are issued in
// increasing order, timestamp first), so only the others cost a lookup.
func (t *tx) hasRecord(key []byte) (bool, error) {
	if bytes.Compare(key, *t.maxRecord) > 0 {
		return false, nil
	}
	return t.has(key)
}

// set and del copy key and value into the batch: callers may reuse them.
func (t *tx) set(key, value []byte) {
	if len(key) > 0 && key[0] == prefixRecord && bytes.Compare(key, *t.maxRecord) > 0 {
		// Raised even if the batch is later abandoned: too high is only
		// slower, never wrong.
		*t.maxRecord = append((*t.maxRecord)[:0], key...)
	}
	if err := t.b.Set(key, value, nil); err != nil && t.err == nil {
		t.err = err
	}
}

func (t *tx) del(key []byte) {
	if err := t.b.Delete(key, nil); err != nil && t.err == nil {
		t.err = err
	}
}

// flusher commits everything queued in one batch, over and over, until
// Close; then it commits what is still queued. Each WAL sync costs the same
// whatever the size of its batch (registry.Gatherer closes the batches).
// It is a store goroutine for Pebble's Fatalf policy (pebbleLogger).
func (s *Store) flusher() {
	_ = s.log.guarded(func() error {
		s.c.Run(s.commit)
		return nil
	})
}

// commit runs the ops of batch in one indexed batch and commits it with one
// WAL sync (none for a batch of lazy ops alone, see doLazy). An op's own error is its answer; a failed write or commit fails
// them all. After a failure of the store (sticky), nothing reaches Pebble:
// the batch fails at once.
func (s *Store) commit(batch []*op) {
	if err := s.guard.CheckFailed(); err != nil {
		for _, o := range batch {
			o.err = err
			close(o.done)
		}
		return
	}
	t0 := time.Now()
	s.guard.CommitStarted()
	var size int64
	// guarded: a Fatalf of the commit (WAL write or sync failed) arrives
	// here as an error, the store already failed by it.
	err := s.log.guarded(func() error {
		t := tx{b: s.db.NewIndexedBatch(), maxRecord: &s.maxRecord}
		for _, o := range batch {
			o.err = o.fn(&t)
		}
		err := t.err
		if err == nil {
			size = int64(t.b.Len())
			err = t.b.Commit(s.writeOptions(batch))
		}
		// Not reached after a Fatalf: that batch is Pebble's to keep.
		_ = t.b.Close()
		return err
	})
	s.guard.CommitDone(size, err)
	if s.cfg.Observe != nil {
		s.cfg.Observe(len(batch), time.Since(t0))
	}
	for _, o := range batch {
		if err != nil {
			o.err = fmt.Errorf("%w: commit: %w", registry.ErrUnavailable, err)
		}
		close(o.done)
	}
}

// writeOptions are those of the store, or NoSync for a batch of lazy ops
// alone (doLazy).
func (s *Store) writeOptions(batch []*op) *pebble.WriteOptions {
	for _, o := range batch {
		if !o.lazy {
			return s.wo
		}
	}
	return pebble.NoSync
}
