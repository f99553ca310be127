package kvregistry

import (
	"fmt"
	"slices"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// register stores the pending records of iss, and its idempotency entry.
// When iss.Idem names a key that already has a live entry (created less
// than idemTTLMS before nowMS), nothing is written and that entry is
// returned (a replay: the caller answers with it and its own IDs are
// burnt). A record that already exists fails the whole issue with
// ErrCollision and writes nothing. The values go into buf's array when it
// is large enough (the caller reuses it once the commit is over); register
// returns the buffer it used.
func register(tx Tx, iss registry.Issue, idemTTLMS, nowMS int64, buf []byte) (*registry.IdemEntry, []byte, error) {
	if iss.Idem != nil {
		v, err := tx.Get(Idem, iss.Idem.KeyHash[:])
		if err != nil {
			return nil, buf, err
		}
		if v != nil {
			e, err := registry.DecodeIdemEntry(iss.Idem.KeyHash, v)
			if err != nil {
				return nil, buf, err
			}
			if e.CreatedMS+idemTTLMS > nowMS {
				return &e, buf, nil
			}
		}
	}
	size := 0
	for i := range iss.Records {
		r := &iss.Records[i]
		found, err := tx.Has(Records, r.ID[:])
		if err != nil {
			return nil, buf, err
		}
		if found {
			return nil, buf, fmt.Errorf("%w: %s", registry.ErrCollision, r.ID)
		}
		size += 24 + len(r.Subject) + len(r.IdemKeyHash) + len(r.Metadata) + 12*len(r.History)
	}
	// Everything is checked: from here on, only writes. The values share
	// one buffer, grown first to hold them all; a value handed to Put is
	// never written again (an append writes past it), as Put asks. A
	// record alike the one before but for its ID (a batch) is given the
	// same value, encoded once.
	buf = slices.Grow(buf[:0], size)
	var v []byte
	for i := range iss.Records {
		r := &iss.Records[i]
		if i == 0 || !r.SameBody(&iss.Records[i-1]) {
			start := len(buf)
			buf = r.AppendBinary(buf)
			v = buf[start:len(buf):len(buf)]
		}
		if err := tx.Put(Records, r.ID[:], v); err != nil {
			return nil, buf, err
		}
		if err := setState(tx, r.ID, registered); err != nil {
			return nil, buf, err
		}
		if r.DeadlineMS > 0 {
			if err := tx.Put(Deadlines, DeadlineKey(r.DeadlineMS, r.ID), nil); err != nil {
				return nil, buf, err
			}
		}
	}
	if iss.Idem != nil {
		v, _ := iss.Idem.MarshalBinary()
		if err := tx.Put(Idem, iss.Idem.KeyHash[:], v); err != nil {
			return nil, buf, err
		}
		if err := tx.Put(IdemTime, IdemTimeKey(iss.Idem.CreatedMS, iss.Idem.KeyHash), nil); err != nil {
			return nil, buf, err
		}
	}
	return nil, buf, nil
}

// get returns the record of id. Errors: ErrNotFound, ErrCorrupt, the
// Reader's.
func get(r Reader, id idcodec.ID) (registry.Record, error) {
	v, err := r.Get(Records, id[:])
	if err != nil {
		return registry.Record{}, err
	}
	if v == nil {
		return registry.Record{}, registry.ErrNotFound
	}
	return registry.DecodeRecord(id, v) // copies what it keeps
}

// transition applies ch to id (registry.Apply inside the write
// transaction, so concurrent transitions serialize) and returns the record
// after it. A replay returns the stored record unchanged and writes
// nothing.
func transition(tx Tx, id idcodec.ID, ch registry.Change) (registry.Record, registry.Outcome, error) {
	v, err := tx.Get(Records, id[:])
	if err != nil {
		return registry.Record{}, 0, err
	}
	rec := registry.Record{ID: id}
	if v != nil {
		if rec, err = registry.DecodeRecord(id, v); err != nil {
			return registry.Record{}, 0, err
		}
	}
	out, err := registry.Apply(&rec, v != nil, ch)
	if err != nil || out == registry.Replayed {
		return rec, out, err
	}
	if rec.DeadlineMS > 0 && rec.State != registry.Pending {
		if err := tx.Delete(Deadlines, DeadlineKey(rec.DeadlineMS, id)); err != nil {
			return registry.Record{}, 0, err
		}
	}
	if err := tx.Put(Records, id[:], rec.AppendBinary(nil)); err != nil {
		return registry.Record{}, 0, err
	}
	st, tomb := registry.StateOf(&rec), rec.Tombstone
	if err := setState(tx, id, func(old registry.CounterState) registry.CounterState {
		if tomb && old.Issued() {
			// A null compensation of another ID of an issued counter:
			// the counter stays issued, in its record's state.
			return old
		}
		return st | old&registry.CounterRepeated
	}); err != nil {
		return registry.Record{}, 0, err
	}
	return rec, out, nil
}

// expired returns up to limit IDs whose deadline is at or before nowMS and
// that are still pending, oldest deadline first.
func expired(r Reader, nowMS int64, limit int) ([]idcodec.ID, error) {
	var out []idcodec.ID
	// Exclusive bound just past the last key of nowMS.
	end := append(DeadlineKey(nowMS, maxID), 0)
	err := r.Scan(Deadlines, end, func(k []byte) bool {
		if len(out) >= limit {
			return false
		}
		var id idcodec.ID
		copy(id[:], k[8:])
		out = append(out, id)
		return len(out) < limit
	})
	return out, err
}

// purgeIdempotency deletes idempotency entries created before cutoffMS and
// returns how many index entries it removed (at most limit). It walks the
// creation-time index, so its cost is the number of stale keys, not the
// number of live ones. All its reads come before its first write.
func purgeIdempotency(tx Tx, cutoffMS int64, limit int) (int, error) {
	// The key may have been reused after it expired: the entry goes only
	// when it is the stale one the index key points at.
	return purge(tx, IdemTime, IdemTimeKey(cutoffMS, [32]byte{}), limit, Idem, func(kh, v []byte) bool {
		var h [32]byte
		copy(h[:], kh)
		e, err := registry.DecodeIdemEntry(h, v)
		return err != nil || e.CreatedMS < cutoffMS
	})
}
