// Package kvregistry is the registry of the embedded backends (boltstore,
// pebblestore) over an ordered key-value engine: the key layout, the checks
// and the writes of every operation. A backend supplies the engine's I/O
// (Reader, Tx), its group commit and its disk guard.
//
// Invariants: every write operation checks everything before it writes, so
// an operation that fails leaves its transaction as it found it; a key is
// a table and fixed-width big-endian parts, so each index is one ordered
// key range and a scan below a bound is a walk over the stale entries only.
package kvregistry

import (
	"encoding/binary"
	"fmt"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// Table is one key range of the store: a bbolt bucket, a Pebble key prefix.
type Table uint8

// Tables and what their keys and values hold.
const (
	Meta          Table = iota + 1 // CounterKey, HighWaterKey → uint64 BE
	Records                        // id[16] → registry.Record.AppendBinary
	Idem                           // keyHash[32] → registry.IdemEntry.MarshalBinary
	Deadlines                      // deadlineMS BE[8] id[16] → empty
	IdemTime                       // createdMS BE[8] keyHash[32] → empty (purge index)
	Keys                           // name → wrapped data key (sealer.KeyStore)
	AuditMarks                     // key → expiresMS BE[8] (compensation.StoreMarks)
	AuditMarkTime                  // expiresMS BE[8] key → empty (purge index)
	Claims                         // atMS BE[8] start BE[8] → registry.EncodeClaim
	Releases                       // claim start BE[8] → registry.EncodeReleases
	StateMaps                      // shard[1] bucket BE[8] → registry.StateMap.States[128]
)

// Reader reads the tables: the open store, or a write transaction (which
// sees its own writes).
type Reader interface {
	// Get returns the value of key in t, or nil when it is absent. The
	// value is valid until the operation returns.
	Get(t Table, key []byte) ([]byte, error)
	// Scan calls fn with the keys of t below end (exclusive), in order,
	// until fn returns false. A key is valid only during its call.
	Scan(t Table, end []byte, fn func(key []byte) bool) error
}

// Tx is a write transaction of the group commit.
type Tx interface {
	Reader
	// Has reports whether key exists in t.
	Has(t Table, key []byte) (bool, error)
	// Put stores value under key in t. The engine may keep key and value
	// until the commit: callers do not change them afterwards.
	Put(t Table, key, value []byte) error
	// Delete removes key from t.
	Delete(t Table, key []byte) error
}

// CounterKey is the Meta key of the shard's next unclaimed counter.
func CounterKey(shard uint8) []byte { return []byte{'c', shard} }

// HighWaterKey is the Meta key of the highest counter an outside range
// source handed out for the shard.
func HighWaterKey(shard uint8) []byte { return []byte{'h', shard} }

// DeadlineKey is the Deadlines key of id with its deadline ms.
func DeadlineKey(ms int64, id idcodec.ID) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(id)), uint64(ms))
	return append(k, id[:]...)
}

// IdemTimeKey is the IdemTime key of an idempotency entry created at ms.
func IdemTimeKey(ms int64, kh [32]byte) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(kh)), uint64(ms))
	return append(k, kh[:]...)
}

// AuditMarkTimeKey is the AuditMarkTime key of the mark under key expiring
// at ms.
func AuditMarkTimeKey(ms int64, key []byte) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(key)), uint64(ms))
	return append(k, key...)
}

// ClaimKey is the Claims key of a claim made at ms starting at start.
func ClaimKey(ms int64, start uint64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(make([]byte, 0, 16), uint64(ms)), start)
}

// ReleaseKey is the Releases key of the claim starting at start.
func ReleaseKey(start uint64) []byte { return binary.BigEndian.AppendUint64(nil, start) }

// maxID is the largest ID: DeadlineKey(ms, maxID) is the last key of ms.
var maxID = idcodec.ID{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// decodeUint64 decodes a counter, a high-water mark or an audit mark: 8
// bytes, or absent (0). Errors: ErrCorrupt naming what.
func decodeUint64(what string, v []byte) (uint64, error) {
	switch len(v) {
	case 0:
		return 0, nil
	case 8:
		return binary.BigEndian.Uint64(v), nil
	}
	return 0, fmt.Errorf("%w: %s of %d bytes", registry.ErrCorrupt, what, len(v))
}

// getUint64 reads the uint64 under key in t, or 0.
func getUint64(r Reader, t Table, key []byte, what string) (uint64, error) {
	v, err := r.Get(t, key)
	if err != nil {
		return 0, err
	}
	return decodeUint64(what, v)
}

// purge deletes the first entries of the expiry index below end, at most
// limit, and returns how many. An index key is a time BE[8] and the key of
// the entry of target it indexes; that entry goes too when stale says so
// of its value (an entry written again since has an index key of its own).
// All reads come before the first write, so a failed read writes nothing.
func purge(tx Tx, index Table, end []byte, limit int, target Table, stale func(key, v []byte) bool) (int, error) {
	var idx [][]byte
	err := tx.Scan(index, end, func(k []byte) bool {
		if len(idx) >= limit {
			return false
		}
		idx = append(idx, append([]byte(nil), k...))
		return len(idx) < limit
	})
	if err != nil {
		return 0, err
	}
	var dels [][]byte
	for _, k := range idx {
		v, err := tx.Get(target, k[8:])
		if err != nil {
			return 0, err
		}
		if v != nil && stale(k[8:], v) {
			dels = append(dels, k[8:])
		}
	}
	for _, k := range dels {
		if err := tx.Delete(target, k); err != nil {
			return 0, err
		}
	}
	for _, k := range idx {
		if err := tx.Delete(index, k); err != nil {
			return 0, err
		}
	}
	return len(idx), nil
}
