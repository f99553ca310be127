package kvregistry

import (
	"bytes"
	"errors"
	"sort"
	"testing"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// memKV is an ordered key-value store whose transactions commit or are
// thrown away whole.
type memKV struct{ data map[string][]byte }

// memTx is a transaction of memKV: its writes are seen by its reads and
// reach the store only on commit.
type memTx struct {
	kv     *memKV
	writes map[string][]byte // nil value: deleted
}

func tkey(t Table, key []byte) string { return string(append([]byte{byte(t)}, key...)) }

func (x *memTx) Get(t Table, key []byte) ([]byte, error) {
	k := tkey(t, key)
	if v, ok := x.writes[k]; ok {
		return v, nil
	}
	return x.kv.data[k], nil
}

func (x *memTx) Has(t Table, key []byte) (bool, error) {
	v, err := x.Get(t, key)
	return v != nil, err
}

func (x *memTx) Put(t Table, key, value []byte) error {
	x.writes[tkey(t, key)] = append([]byte{}, value...)
	return nil
}

func (x *memTx) Delete(t Table, key []byte) error {
	x.writes[tkey(t, key)] = nil
	return nil
}

func (x *memTx) Scan(t Table, end []byte, fn func(key []byte) bool) error {
	var keys []string
	for k := range x.kv.data {
		if k[0] == byte(t) && bytes.Compare([]byte(k[1:]), end) < 0 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !fn([]byte(k[1:])) {
			return nil
		}
	}
	return nil
}

func (x *memTx) commit() {
	for k, v := range x.writes {
		if v == nil {
			delete(x.kv.data, k)
		} else {
			x.kv.data[k] = v
		}
	}
}

func testID(counter uint64) idcodec.ID {
	return idcodec.MustCompose(idcodec.Fields{TimestampMS: 1_764_000_000_000, Worker: 1, Shard: 2, Counter: counter})
}

func regOp(counters ...uint64) *Op {
	var iss registry.Issue
	for _, c := range counters {
		iss.Records = append(iss.Records, registry.Record{ID: testID(c), State: registry.Pending, IssuedAtMS: 1, Subject: "s"})
	}
	return &Op{fn: func(tx Tx) error {
		_, _, err := register(tx, iss, 0, 0, nil)
		return err
	}}
}

// TestMapCacheKeepsOnlyCommittedMaps: a batch whose commit fails leaves
// neither its records nor its maps, also in the cache the next batches of
// the same bucket read instead of the store; the batches after it write
// maps that say what the store's records are.
func TestMapCacheKeepsOnlyCommittedMaps(t *testing.T) {
	kv := &memKV{data: map[string][]byte{}}
	c := NewCommitter(16, func() error { return nil })
	// commit: 1 commits, 0 fails, -1 never answers (a commit that died:
	// Committed is not called)
	batch := func(commit int, counters ...uint64) {
		t.Helper()
		tx := &memTx{kv: kv, writes: map[string][]byte{}}
		op := regOp(counters...)
		if err := c.RunBatch(tx, []*Op{op}); err != nil || op.err != nil {
			t.Fatalf("batch %v: %v, %v", counters, err, op.err)
		}
		switch commit {
		case 1:
			tx.commit()
			c.Committed(nil)
		case 0:
			c.Committed(errors.New("disk full"))
		}
	}
	batch(1, 10, 11)
	batch(0, 12, 13) // thrown away
	batch(1, 14)
	batch(-1, 15) // thrown away, unanswered
	batch(1, 16)
	batch(0, 17)
	batch(1, 18)
	tx := &memTx{kv: kv, writes: map[string][]byte{}}
	v, _ := tx.Get(StateMaps, StateMapKey(2, 0))
	var m stateMap
	if err := decodeStateMap(v, &m); err != nil {
		t.Fatal(err)
	}
	for c := range uint64(20) {
		want := registry.CounterFree
		id := testID(c)
		if has, _ := tx.Has(Records, id[:]); has {
			want = registry.CounterPending
		}
		if m[c] != want {
			t.Errorf("counter %d: map says %d, want %d", c, m[c], want)
		}
	}
	if m[10] != registry.CounterPending || m[12] != registry.CounterFree || m[15] != registry.CounterFree || m[18] != registry.CounterPending {
		t.Fatalf("map %v", m[:20])
	}
}

// TestRegisterOutsideBatch: a registration in a transaction that is not
// a group commit's writes no record without its map: it fails.
func TestRegisterOutsideBatch(t *testing.T) {
	tx := &memTx{kv: &memKV{data: map[string][]byte{}}, writes: map[string][]byte{}}
	op := regOp(1)
	op.Run(tx)
	if !errors.Is(op.err, errOutsideBatch) {
		t.Fatalf("register outside a batch: %v", op.err)
	}
}
