package kvregistry

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

var _ registry.StateMapper = (*Registry)(nil)

// StateMapKey is the StateMaps key of a shard's bucket.
func StateMapKey(shard uint8, bucket uint64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, 9), shard), bucket)
}

type stateMapKey [9]byte

type stateMap = [registry.StateMapSize]registry.CounterState

// mapCache holds the state maps of the last buckets the commits wrote, as
// committed: only the group commit writes maps, one batch at a time, so a
// cached map is the stored one and a batch reads no map of the buckets it
// keeps writing (sequential IDs fill a bucket over a few batches). A
// failed commit empties it.
type mapCache struct {
	maps  map[stateMapKey]*stateMap
	order []stateMapKey // oldest first, at most mapCacheSize
}

// mapCacheSize bounds the buckets mapCache holds.
const mapCacheSize = 8

// batchTx is the Tx of one group commit with the state maps its ops
// changed, each written once when the batch's ops have run (RunBatch): a
// batch of a thousand registrations in one bucket writes its map once.
type batchTx struct {
	Tx
	cache *mapCache
	maps  map[stateMapKey]*stateMap
}

// RunBatch runs the ops of batch in tx, then writes the state maps they
// changed. A backend's commit calls it in the transaction it commits, and
// Committed with the commit's outcome; its error (a failed write of a
// map) fails the whole batch, since the records it wrote would otherwise
// go without their maps.
func (c *Committer) RunBatch(tx Tx, batch []*Op) error {
	b := batchTx{Tx: tx, cache: &c.maps}
	for _, o := range batch {
		o.Run(&b)
	}
	c.staged = b.maps
	return b.flush()
}

// Committed tells c whether the transaction of the last RunBatch was
// committed (err nil): the maps it wrote become the cached ones, or the
// cache is emptied.
func (c *Committer) Committed(err error) {
	staged := c.staged
	c.staged = nil
	m := &c.maps
	if err != nil {
		m.maps, m.order = nil, m.order[:0]
		return
	}
	for k, v := range staged {
		if m.maps == nil {
			m.maps = map[stateMapKey]*stateMap{}
		}
		if _, ok := m.maps[k]; !ok {
			if len(m.order) == mapCacheSize {
				delete(m.maps, m.order[0])
				m.order = append(m.order[:0], m.order[1:]...)
			}
			m.order = append(m.order, k)
		}
		m.maps[k] = v
	}
}

// state returns the map of id's bucket as this batch sees it, and id's
// index in it.
func (b *batchTx) state(id idcodec.ID) (*stateMap, int, error) {
	f := id.Decompose()
	var k stateMapKey
	k[0] = f.Shard
	binary.BigEndian.PutUint64(k[1:], registry.StateMapBucket(f.Counter))
	i := int(f.Counter & (registry.StateMapSize - 1))
	if m, ok := b.maps[k]; ok {
		return m, i, nil
	}
	m := new(stateMap)
	if c, ok := b.cache.maps[k]; ok {
		*m = *c // the batch's copy: the cache keeps what is committed
	} else {
		// A key of its own: k stays on the stack on the common path.
		v, err := b.Get(StateMaps, append([]byte(nil), k[:]...))
		if err != nil {
			return nil, 0, err
		}
		if err := decodeStateMap(v, m); err != nil {
			return nil, 0, err
		}
	}
	if b.maps == nil {
		b.maps = map[stateMapKey]*stateMap{}
	}
	b.maps[k] = m
	return m, i, nil
}

func (b *batchTx) flush() error {
	for k, m := range b.maps {
		v := make([]byte, registry.StateMapSize)
		for i, st := range m {
			v[i] = byte(st)
		}
		if err := b.Put(StateMaps, append([]byte(nil), k[:]...), v); err != nil {
			return err
		}
	}
	return nil
}

// errOutsideBatch: a registration or a transition ran in a transaction
// that is not a group commit's (RunBatch), which alone writes state maps.
var errOutsideBatch = errors.New("kvregistry: a write outside the group commit")

// setState sets the state of id's counter to f of its state before.
func setState(tx Tx, id idcodec.ID, f func(registry.CounterState) registry.CounterState) error {
	b, ok := tx.(*batchTx)
	if !ok {
		return errOutsideBatch
	}
	m, i, err := b.state(id)
	if err != nil {
		return err
	}
	m[i] = f(m[i])
	return nil
}

// registered is the state of a counter whose record was just registered:
// pending, and CounterRepeated when another record of the counter was
// registered before (another ID: another time or worker).
func registered(old registry.CounterState) registry.CounterState {
	st := registry.CounterPending | old&registry.CounterRepeated
	if old.Issued() {
		st |= registry.CounterRepeated
	}
	return st
}

// decodeStateMap decodes a stored map into m (absent: all free). Errors:
// ErrCorrupt.
func decodeStateMap(v []byte, m *[registry.StateMapSize]registry.CounterState) error {
	if v == nil {
		return nil
	}
	if len(v) != registry.StateMapSize {
		return fmt.Errorf("%w: state map of %d bytes", registry.ErrCorrupt, len(v))
	}
	for i, c := range v {
		if st := registry.CounterState(c); !st.Valid() {
			return fmt.Errorf("%w: state %#x in a state map", registry.ErrCorrupt, c)
		}
		m[i] = registry.CounterState(c)
	}
	return nil
}

// StateMaps calls fn with the map of every bucket of the shard in [from,
// to) that has one, in order of Bucket (registry.StateMapper). It walks
// the map keys below to (one a bucket), then reads the maps in reads of
// scanChunk each.
func (r *Registry) StateMaps(ctx context.Context, from, to uint64, fn func(*registry.StateMap) error) error {
	if from >= to {
		return nil
	}
	var buckets []uint64
	end := StateMapKey(r.shard, to)
	err := r.read(func(rd Reader) error {
		return rd.Scan(StateMaps, end, func(k []byte) bool {
			if len(k) == 9 && k[0] == r.shard {
				if b := binary.BigEndian.Uint64(k[1:]); b >= from {
					buckets = append(buckets, b)
				}
			}
			return true
		})
	})
	if err != nil {
		return err
	}
	maps := make([]registry.StateMap, 0, min(len(buckets), scanChunk))
	for len(buckets) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		chunk := buckets[:min(len(buckets), scanChunk)]
		buckets = buckets[len(chunk):]
		maps = maps[:0]
		if err := r.read(func(rd Reader) error {
			for _, b := range chunk {
				v, err := rd.Get(StateMaps, StateMapKey(r.shard, b))
				if err != nil {
					return err
				}
				m := registry.StateMap{Bucket: b}
				if err := decodeStateMap(v, &m.States); err != nil {
					return fmt.Errorf("bucket %d: %w", b, err)
				}
				maps = append(maps, m)
			}
			return nil
		}); err != nil {
			return err
		}
		for i := range maps {
			if err := fn(&maps[i]); err != nil {
				return err
			}
		}
	}
	return nil
}
