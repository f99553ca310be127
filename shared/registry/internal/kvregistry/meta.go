package kvregistry

import (
	"encoding/binary"
	"fmt"

	"github.com/idgen/idgen/shared/idcodec"
)

// claimRange advances the shard's counter by n and returns its old value
// (the range is old..old+n). Errors: the counter would pass
// idcodec.MaxCounter; ErrCorrupt; the Tx's.
func claimRange(tx Tx, shard uint8, n uint64) (uint64, error) {
	next, err := getUint64(tx, Meta, CounterKey(shard), "counter")
	if err != nil {
		return 0, err
	}
	if next+n > idcodec.MaxCounter || next+n < next {
		return 0, fmt.Errorf("shard %d counter exhausted", shard)
	}
	if err := tx.Put(Meta, CounterKey(shard), binary.BigEndian.AppendUint64(nil, next+n)); err != nil {
		return 0, err
	}
	return next, nil
}

// counter returns the shard's next unclaimed counter, or 0.
func counter(r Reader, shard uint8) (uint64, error) {
	return getUint64(r, Meta, CounterKey(shard), "counter")
}

// raiseHighWater records that counters below v were handed out by an
// outside range source. It never lowers the mark.
func raiseHighWater(tx Tx, shard uint8, v uint64) error {
	old, err := getUint64(tx, Meta, HighWaterKey(shard), "high-water mark")
	if err != nil || old >= v {
		return err
	}
	return tx.Put(Meta, HighWaterKey(shard), binary.BigEndian.AppendUint64(nil, v))
}

// highWater returns the mark RaiseHighWater recorded, or 0.
func highWater(r Reader, shard uint8) (uint64, error) {
	return getUint64(r, Meta, HighWaterKey(shard), "high-water mark")
}

// getKey returns a copy of the key material under name, or nil
// (sealer.KeyStore).
func getKey(r Reader, name string) ([]byte, error) {
	v, err := r.Get(Keys, []byte(name))
	if v == nil || err != nil {
		return nil, err
	}
	return append([]byte(nil), v...), nil
}

// putKeyIfAbsent stores v under name unless a value exists, and returns
// the stored value.
func putKeyIfAbsent(tx Tx, name string, v []byte) ([]byte, error) {
	cur, err := tx.Get(Keys, []byte(name))
	if err != nil {
		return nil, err
	}
	if cur != nil {
		return append([]byte(nil), cur...), nil
	}
	return v, tx.Put(Keys, []byte(name), v)
}

// deleteKey removes the key material under name.
func deleteKey(tx Tx, name string) error {
	return tx.Delete(Keys, []byte(name))
}
