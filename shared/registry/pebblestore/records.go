package pebblestore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

func recordKey(id idcodec.ID) []byte {
	return append([]byte{prefixRecord}, id[:]...)
}

func idemKey(kh [32]byte) []byte {
	return append([]byte{prefixIdem}, kh[:]...)
}

// idemTimeKey indexes idempotency entries by creation time for purging.
func idemTimeKey(ms int64, kh [32]byte) []byte {
	k := make([]byte, 0, 41)
	k = append(k, prefixIdemTime)
	k = binary.BigEndian.AppendUint64(k, uint64(ms))
	return append(k, kh[:]...)
}

func deadlineKey(ms int64, id idcodec.ID) []byte {
	k := make([]byte, 1, 1+8+16+1)
	k[0] = prefixDeadline
	k = binary.BigEndian.AppendUint64(k, uint64(ms))
	return append(k, id[:]...)
}

// Register stores the pending records of iss, and its idempotency entry, in
// one group commit. When iss.Idem names a key that already has a live entry,
// nothing is written and that entry is returned (a replay: the caller
// answers with it and its own IDs are burnt). A record that already exists
// fails the whole issue with ErrCollision and writes nothing.
func (s *Store) Register(ctx context.Context, iss registry.Issue, idemTTLMS, nowMS int64) (*registry.IdemEntry, error) {
	var replay *registry.IdemEntry
	err := s.do(ctx, func(tx *tx) error {
		replay = nil
		if iss.Idem != nil {
			v, err := tx.get(idemKey(iss.Idem.KeyHash))
			if err != nil {
				return err
			}
			if v != nil {
				e, err := registry.DecodeIdemEntry(iss.Idem.KeyHash, v)
				if err != nil {
					return err
				}
				if e.CreatedMS+idemTTLMS > nowMS {
					replay = &e
					return nil
				}
			}
		}
		// The record keys, built once for the probe and the write, in one
		// buffer (tx.set copies keys and values).
		const kl = 1 + len(idcodec.ID{})
		keys := make([]byte, 0, kl*len(iss.Records)+128)
		for i := range iss.Records {
			keys = append(append(keys, prefixRecord), iss.Records[i].ID[:]...)
		}
		key := func(i int) []byte { return keys[kl*i : kl*(i+1) : kl*(i+1)] }
		for i := range iss.Records {
			found, err := tx.hasRecord(key(i))
			if err != nil {
				return err
			}
			if found {
				return fmt.Errorf("%w: %s", registry.ErrCollision, iss.Records[i].ID)
			}
		}
		// Everything is checked: from here on, only writes.
		buf := keys[len(keys):] // the spare capacity holds a record without metadata
		for i := range iss.Records {
			r := &iss.Records[i]
			buf = r.AppendBinary(buf[:0])
			tx.set(key(i), buf)
			if r.DeadlineMS > 0 {
				tx.set(deadlineKey(r.DeadlineMS, r.ID), nil)
			}
		}
		if iss.Idem != nil {
			v, _ := iss.Idem.MarshalBinary()
			tx.set(idemKey(iss.Idem.KeyHash), v)
			tx.set(idemTimeKey(iss.Idem.CreatedMS, iss.Idem.KeyHash), nil)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pebblestore: register: %w", err)
	}
	return replay, nil
}

// Get returns the record of id. Errors: ErrNotFound, ErrClosed.
func (s *Store) Get(_ context.Context, id idcodec.ID) (registry.Record, error) {
	var rec registry.Record
	err := s.read(func() error {
		v, closer, err := s.db.Get(recordKey(id))
		if errors.Is(err, pebble.ErrNotFound) {
			return registry.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("%w: %w", registry.ErrUnavailable, err)
		}
		defer closer.Close()
		rec, err = registry.DecodeRecord(id, v) // copies what it keeps
		return err
	})
	return rec, err
}

// Transition applies ch to id atomically (registry.Apply inside the
// flusher, so concurrent transitions serialize) and returns the record after
// it. A replay returns the stored record unchanged.
func (s *Store) Transition(ctx context.Context, id idcodec.ID, ch registry.Change) (registry.Record, registry.Outcome, error) {
	var (
		rec registry.Record
		out registry.Outcome
	)
	err := s.do(ctx, func(tx *tx) error {
		v, err := tx.get(recordKey(id))
		if err != nil {
			return err
		}
		rec = registry.Record{ID: id}
		if v != nil {
			if rec, err = registry.DecodeRecord(id, v); err != nil {
				return err
			}
		}
		out, err = registry.Apply(&rec, v != nil, ch)
		if err != nil || out == registry.Replayed {
			return err
		}
		if rec.DeadlineMS > 0 && rec.State != registry.Pending {
			tx.del(deadlineKey(rec.DeadlineMS, id))
		}
		tx.set(recordKey(id), rec.AppendBinary(nil))
		return nil
	})
	if err != nil {
		return registry.Record{}, 0, fmt.Errorf("pebblestore: transition %s: %w", id, err)
	}
	return rec, out, nil
}

// maxID is the largest ID: deadlineKey(ms, maxID) is the last key of ms.
var maxID = idcodec.ID{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// Expired returns up to limit IDs whose deadline is at or before nowMS and
// that are still pending, oldest deadline first. Errors: ErrClosed.
func (s *Store) Expired(_ context.Context, nowMS int64, limit int) ([]idcodec.ID, error) {
	var out []idcodec.ID
	err := s.read(func() error {
		it, err := s.db.NewIter(&pebble.IterOptions{
			LowerBound: []byte{prefixDeadline},
			// Exclusive bound just past the last key of nowMS.
			UpperBound: append(deadlineKey(nowMS, maxID), 0),
		})
		if err != nil {
			return err
		}
		for ok := it.First(); ok && len(out) < limit; ok = it.Next() {
			var id idcodec.ID
			copy(id[:], it.Key()[9:])
			out = append(out, id)
		}
		return errors.Join(it.Error(), it.Close())
	})
	return out, err
}

// PurgeIdempotency deletes idempotency entries created before cutoffMS and
// returns how many index entries it removed (at most limit per call). It
// walks the creation-time index, so its cost is the number of stale keys,
// not the number of live ones.
func (s *Store) PurgeIdempotency(ctx context.Context, cutoffMS int64, limit int) (int, error) {
	n := 0
	err := s.do(ctx, func(tx *tx) error {
		n = 0
		it, err := tx.b.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixIdemTime}, UpperBound: idemTimeKey(cutoffMS, [32]byte{})})
		if err != nil {
			return err
		}
		var stale [][]byte
		for ok := it.First(); ok && len(stale) < limit; ok = it.Next() {
			stale = append(stale, append([]byte(nil), it.Key()...))
		}
		// Check the scan before any delete: a failed op writes nothing.
		if err := errors.Join(it.Error(), it.Close()); err != nil {
			return fmt.Errorf("%w: %w", registry.ErrUnavailable, err)
		}
		var dels [][]byte
		for _, k := range stale {
			var kh [32]byte
			copy(kh[:], k[9:])
			v, err := tx.get(idemKey(kh))
			if err != nil {
				return err
			}
			// The key may have been reused after it expired: delete the
			// entry only when it is the stale one this index key points at.
			if v != nil {
				if e, err := registry.DecodeIdemEntry(kh, v); err != nil || e.CreatedMS < cutoffMS {
					dels = append(dels, idemKey(kh))
				}
			}
			dels = append(dels, k)
		}
		for _, k := range dels {
			tx.del(k)
		}
		n = len(stale)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("pebblestore: purge idempotency: %w", err)
	}
	return n, nil
}
