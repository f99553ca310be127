package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// Register stores the pending records of iss, and its idempotency entry, in
// one group-committed transaction. When iss.Idem names a key that already has
// a live entry, nothing is written and that entry is returned (a replay: the
// caller answers with it and its own IDs are burnt). A record that already
// exists fails the whole issue with ErrCollision.
func (s *Store) Register(ctx context.Context, iss registry.Issue, idemTTLMS, nowMS int64) (*registry.IdemEntry, error) {
	var replay *registry.IdemEntry
	err := s.do(ctx, func(tx *bbolt.Tx) error {
		replay = nil
		if iss.Idem != nil {
			if v := tx.Bucket(bucketIdem).Get(iss.Idem.KeyHash[:]); v != nil {
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
		ids := tx.Bucket(bucketIDs)
		for i := range iss.Records {
			if ids.Get(iss.Records[i].ID[:]) != nil {
				return fmt.Errorf("%w: %s", registry.ErrCollision, iss.Records[i].ID)
			}
		}
		for i := range iss.Records {
			r := &iss.Records[i]
			// bbolt keeps key and value slices until commit: one buffer each.
			if err := ids.Put(r.ID[:], r.AppendBinary(nil)); err != nil {
				return err
			}
			if r.DeadlineMS > 0 {
				if err := tx.Bucket(bucketDeadlines).Put(deadlineKey(r.DeadlineMS, r.ID), nil); err != nil {
					return err
				}
			}
		}
		if iss.Idem != nil {
			v, _ := iss.Idem.MarshalBinary()
			if err := tx.Bucket(bucketIdem).Put(iss.Idem.KeyHash[:], v); err != nil {
				return err
			}
			if err := tx.Bucket(bucketIdemTime).Put(idemTimeKey(iss.Idem.CreatedMS, iss.Idem.KeyHash), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: register: %w", err)
	}
	return replay, nil
}

func deadlineKey(ms int64, id idcodec.ID) []byte {
	k := make([]byte, 8, 24)
	binary.BigEndian.PutUint64(k, uint64(ms))
	return append(k, id[:]...)
}

// Get returns the record of id, or ErrNotFound.
func (s *Store) Get(_ context.Context, id idcodec.ID) (registry.Record, error) {
	var rec registry.Record
	err := s.view(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketIDs).Get(id[:])
		if v == nil {
			return registry.ErrNotFound
		}
		var err error
		rec, err = registry.DecodeRecord(id, v)
		return err
	})
	return rec, err
}

// Transition applies ch to id atomically (registry.Apply inside the write
// transaction, so concurrent transitions serialize) and returns the record
// after it. A replay returns the stored record unchanged.
func (s *Store) Transition(ctx context.Context, id idcodec.ID, ch registry.Change) (registry.Record, registry.Outcome, error) {
	var (
		rec registry.Record
		out registry.Outcome
	)
	err := s.do(ctx, func(tx *bbolt.Tx) error {
		ids := tx.Bucket(bucketIDs)
		v := ids.Get(id[:])
		rec = registry.Record{ID: id}
		if v != nil {
			var err error
			if rec, err = registry.DecodeRecord(id, v); err != nil {
				return err
			}
		}
		var err error
		out, err = registry.Apply(&rec, v != nil, ch)
		if err != nil || out == registry.Replayed {
			return err
		}
		if rec.DeadlineMS > 0 && rec.State != registry.Pending {
			if err := tx.Bucket(bucketDeadlines).Delete(deadlineKey(rec.DeadlineMS, id)); err != nil {
				return err
			}
		}
		return ids.Put(id[:], rec.AppendBinary(nil))
	})
	if err != nil {
		return registry.Record{}, 0, fmt.Errorf("boltstore: transition %s: %w", id, err)
	}
	return rec, out, nil
}

// Expired returns up to limit IDs whose deadline is at or before nowMS and
// that are still pending, oldest deadline first.
func (s *Store) Expired(_ context.Context, nowMS int64, limit int) ([]idcodec.ID, error) {
	var out []idcodec.ID
	err := s.view(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketDeadlines).Cursor()
		end := deadlineKey(nowMS, idcodec.ID{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		for k, _ := c.First(); k != nil && len(out) < limit && bytes.Compare(k, end) <= 0; k, _ = c.Next() {
			var id idcodec.ID
			copy(id[:], k[8:])
			out = append(out, id)
		}
		return nil
	})
	return out, err
}

// PurgeIdempotency deletes idempotency entries created before cutoffMS and
// returns how many index entries it removed (at most limit per call). It
// walks the creation-time index, so its cost is the number of stale keys.
func (s *Store) PurgeIdempotency(ctx context.Context, cutoffMS int64, limit int) (int, error) {
	n := 0
	err := s.do(ctx, func(tx *bbolt.Tx) error {
		n = 0
		idx, idem := tx.Bucket(bucketIdemTime), tx.Bucket(bucketIdem)
		end := idemTimeKey(cutoffMS, [32]byte{})
		var stale [][]byte
		c := idx.Cursor()
		for k, _ := c.First(); k != nil && len(stale) < limit && bytes.Compare(k, end) < 0; k, _ = c.Next() {
			stale = append(stale, append([]byte(nil), k...))
		}
		for _, k := range stale {
			var kh [32]byte
			copy(kh[:], k[8:])
			// The key may have been reused after it expired: delete the
			// entry only when it is the stale one this index key points at.
			if v := idem.Get(kh[:]); v != nil {
				if e, err := registry.DecodeIdemEntry(kh, v); err != nil || e.CreatedMS < cutoffMS {
					if err := idem.Delete(kh[:]); err != nil {
						return err
					}
				}
			}
			if err := idx.Delete(k); err != nil {
				return err
			}
		}
		n = len(stale)
		return nil
	})
	return n, err
}

// idemTimeKey indexes idempotency entries by creation time for purging.
func idemTimeKey(ms int64, kh [32]byte) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 40), uint64(ms))
	return append(k, kh[:]...)
}
