package pebblestore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/internal/kvregistry"
)

// prefixes lays each table of the registry (kvregistry) out as the keys
// that start with its byte, so that each is one contiguous, ordered key
// range. Meta's keys (kvregistry.CounterKey 'c' shard, HighWaterKey 'h'
// shard, and the format marker 'm' 'f') stand without one.
var prefixes = [...][]byte{
	kvregistry.Meta:          nil,
	kvregistry.Records:       {prefixRecord},
	kvregistry.Idem:          {'k'},
	kvregistry.Deadlines:     {'d'},
	kvregistry.IdemTime:      {'i'},
	kvregistry.Keys:          {'e'},
	kvregistry.AuditMarks:    {'a'},
	kvregistry.AuditMarkTime: {'b'},
	kvregistry.Claims:        {'l'},
	kvregistry.Releases:      {'o'},
	kvregistry.StateMaps:     {'s'},
}

const prefixRecord = 'r'

// kv is the registry's tables in Pebble: the open DB for reads (Get hands
// out Pebble's own values, released when the read ends), or the indexed
// batch of a group commit (a read sees the writes of earlier ops of the
// batch, and only the flusher writes, so nothing else changes under it).
type kv struct {
	r pebble.Reader
	b *pebble.Batch // the batch; nil for reads
	// maxRecord is the Store's: no record key above it exists (see
	// Store.maxRecord); Put keeps it up to date.
	maxRecord *[]byte
	// err is the first failed write. Pebble batch writes fail only when the
	// batch itself is broken; then the half-written op cannot be undone and
	// the whole batch is abandoned.
	err     error
	key     []byte      // the prefixed key of the last call
	closers []io.Closer // of the values a read handed out
}

var _ kvregistry.Tx = (*kv)(nil)

// prefixed returns key under the prefix of t, in a buffer that the next
// call reuses: Pebble copies the keys it keeps.
func (k *kv) prefixed(t kvregistry.Table, key []byte) []byte {
	k.key = append(append(k.key[:0], prefixes[t]...), key...)
	return k.key
}

// Get returns the value of key in t, or nil when it is absent: a copy in a
// batch, Pebble's own (valid until the read ends) in a read.
func (k *kv) Get(t kvregistry.Table, key []byte) ([]byte, error) {
	v, closer, err := k.r.Get(k.prefixed(t, key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", registry.ErrUnavailable, err)
	}
	if k.b == nil {
		k.closers = append(k.closers, closer)
		return v, nil
	}
	v = bytes.Clone(v)
	return v, closer.Close()
}

// Has reports whether key exists in t. A record key above every record
// key written so far cannot (the common case: IDs are issued in
// increasing order, timestamp first), so only the others cost a lookup.
func (k *kv) Has(t kvregistry.Table, key []byte) (bool, error) {
	pk := k.prefixed(t, key)
	if t == kvregistry.Records && bytes.Compare(pk, *k.maxRecord) > 0 {
		return false, nil
	}
	_, closer, err := k.r.Get(pk)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%w: %w", registry.ErrUnavailable, err)
	}
	return true, closer.Close()
}

// Put and Delete copy key and value into the batch. Their errors are the
// batch's (err), not the op's.
func (k *kv) Put(t kvregistry.Table, key, value []byte) error {
	pk := k.prefixed(t, key)
	if t == kvregistry.Records && bytes.Compare(pk, *k.maxRecord) > 0 {
		// Raised even if the batch is later abandoned: too high is only
		// slower, never wrong.
		*k.maxRecord = append((*k.maxRecord)[:0], pk...)
	}
	if err := k.b.Set(pk, value, nil); err != nil && k.err == nil {
		k.err = err
	}
	return nil
}

func (k *kv) Delete(t kvregistry.Table, key []byte) error {
	if err := k.b.Delete(k.prefixed(t, key), nil); err != nil && k.err == nil {
		k.err = err
	}
	return nil
}

func (k *kv) Scan(t kvregistry.Table, end []byte, fn func(key []byte) bool) error {
	p := prefixes[t]
	it, err := k.r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: append(p[:len(p):len(p)], end...)})
	if err != nil {
		return fmt.Errorf("%w: %w", registry.ErrUnavailable, err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		if !fn(it.Key()[len(p):]) {
			break
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return fmt.Errorf("%w: %w", registry.ErrUnavailable, err)
	}
	return nil
}

// release closes what a read handed out.
func (k *kv) release() {
	for _, c := range k.closers {
		_ = c.Close()
	}
}

// write runs fn in the next group commit and waits for the commit, or for
// ctx (the op may still commit later in that case). A batch of lazy ops
// alone is committed without a WAL sync; one that holds any other op is
// synced for them all. An unsynced write is durable at the next synced
// commit, and visible to readers when write returns.
func (s *Store) write(ctx context.Context, lazy bool, fn func(kvregistry.Tx) error) error {
	return kvregistry.Do(ctx, s.c, lazy, fn)
}

// read runs fn against the open DB, or returns ErrClosed or the sticky
// failure.
func (s *Store) read(fn func(kvregistry.Reader) error) error {
	return s.c.WhileOpen(func() error {
		if err := s.guard.CheckFailed(); err != nil {
			return err
		}
		k := kv{r: s.db}
		defer k.release()
		return fn(&k)
	})
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
// WAL sync (none for a batch of lazy ops alone, see write). An op's own
// error is its answer; a failed write or commit fails them all. After a
// failure of the store (sticky), nothing reaches Pebble: the batch fails
// at once.
func (s *Store) commit(batch []*kvregistry.Op) {
	if err := s.guard.CheckFailed(); err != nil {
		kvregistry.Reply(batch, err)
		return
	}
	t0 := time.Now()
	s.guard.CommitStarted()
	var size int64
	// guarded: a Fatalf of the commit (WAL write or sync failed) arrives
	// here as an error, the store already failed by it.
	err := s.log.guarded(func() error {
		b := s.db.NewIndexedBatch()
		t := kv{r: b, b: b, maxRecord: &s.maxRecord}
		err := s.c.RunBatch(&t, batch)
		if t.err != nil {
			err = t.err
		}
		if err == nil {
			size = int64(t.b.Len())
			err = t.b.Commit(s.writeOptions(batch))
		}
		s.c.Committed(err)
		// Not reached after a Fatalf: that batch is Pebble's to keep.
		_ = t.b.Close()
		return err
	})
	s.guard.CommitDone(size, err)
	kvregistry.Answer(batch, err, t0, s.cfg.Observe)
}

// writeOptions are those of the store, or NoSync for a batch of lazy ops
// alone (write).
func (s *Store) writeOptions(batch []*kvregistry.Op) *pebble.WriteOptions {
	for _, o := range batch {
		if !o.Lazy() {
			return s.wo
		}
	}
	return pebble.NoSync
}
