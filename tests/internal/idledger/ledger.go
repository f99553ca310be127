// Package idledger is the one record the end-to-end suites and the chaos
// and bench tools keep of the IDs idgen issued them: every ID once, what
// the caller knows of it, and the duplicates. Unregistered checks that the
// Redis registry holds them; Parallel spreads such reads over workers.
//
// Invariants:
//   - Uniqueness is judged by (shard, counter), the pair it rests on
//     (Key), so two IDs that differ only in their time or worker bits are a
//     duplicate too.
//   - A duplicate is never recorded: the ledger holds the first ID of each
//     (shard, counter) and counts the others.
//   - A Ledger is safe for concurrent use; what it returns are copies.
package idledger

import (
	"sync"

	"github.com/idgen/idgen/shared/idcodec"
)

// Key is (shard, counter) as one number: 6 bits of shard above 56 of
// counter.
func Key(id idcodec.ID) uint64 {
	f := id.Decompose()
	return uint64(f.Shard)<<56 | f.Counter
}

// Record is one recorded ID and what its caller knows of it.
type Record[T any] struct {
	ID   idcodec.ID
	Meta T
}

// Duplicate is an ID whose (shard, counter) was recorded before, as First.
type Duplicate[T any] struct {
	ID    idcodec.ID
	Meta  T
	First Record[T]
}

// Ledger records IDs in arrival order. The zero value is not usable; call
// New.
type Ledger[T any] struct {
	mu    sync.Mutex
	index map[uint64]int32 // Key → recs index
	recs  []Record[T]
	dups  int
}

// New returns an empty ledger with room for size IDs before it grows.
func New[T any](size int) *Ledger[T] {
	return &Ledger[T]{index: make(map[uint64]int32, size)}
}

// Add records ids, each with meta, and returns those whose (shard, counter)
// was recorded before; they are counted, not recorded.
func (l *Ledger[T]) Add(meta T, ids ...idcodec.ID) []Duplicate[T] {
	l.mu.Lock()
	defer l.mu.Unlock()
	var dups []Duplicate[T]
	for _, id := range ids {
		k := Key(id)
		if i, ok := l.index[k]; ok {
			l.dups++
			dups = append(dups, Duplicate[T]{ID: id, Meta: meta, First: l.recs[i]})
			continue
		}
		l.index[k] = int32(len(l.recs))
		l.recs = append(l.recs, Record[T]{ID: id, Meta: meta})
	}
	return dups
}

// Len is the number of distinct IDs recorded.
func (l *Ledger[T]) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recs)
}

// Duplicates is the number of IDs Add refused as duplicates.
func (l *Ledger[T]) Duplicates() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dups
}

// Records returns a copy of the records in arrival order.
func (l *Ledger[T]) Records() []Record[T] {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Record[T](nil), l.recs...)
}

// IDs returns the recorded IDs in arrival order.
func (l *Ledger[T]) IDs() []idcodec.ID {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]idcodec.ID, len(l.recs))
	for i, r := range l.recs {
		out[i] = r.ID
	}
	return out
}

// Update applies f to the meta of id's record under the ledger's lock and
// reports whether id itself (not only its (shard, counter)) is recorded.
func (l *Ledger[T]) Update(id idcodec.ID, f func(*T)) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	i, ok := l.index[Key(id)]
	if !ok || l.recs[i].ID != id {
		return false
	}
	f(&l.recs[i].Meta)
	return true
}

// Newest returns up to n recorded IDs, newest first, whose record
// satisfies ok.
func (l *Ledger[T]) Newest(n int, ok func(Record[T]) bool) []idcodec.ID {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []idcodec.ID
	for i := len(l.recs) - 1; i >= 0 && len(out) < n; i-- {
		if ok(l.recs[i]) {
			out = append(out, l.recs[i].ID)
		}
	}
	return out
}
