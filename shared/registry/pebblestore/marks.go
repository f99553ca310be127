package pebblestore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/idgen/idgen/shared/registry"
)

// Audit marks (compensation.StoreMarks): 'a' key → expiresMS BE[8], and
// the purge index 'b' expiresMS BE[8] key → empty.
const (
	prefixAuditMark     = 'a'
	prefixAuditMarkTime = 'b'
)

func auditMarkKey(key []byte) []byte {
	return append([]byte{prefixAuditMark}, key...)
}

func auditMarkTimeKey(ms int64, key []byte) []byte {
	k := make([]byte, 0, 9+len(key))
	k = append(k, prefixAuditMarkTime)
	k = binary.BigEndian.AppendUint64(k, uint64(ms))
	return append(k, key...)
}

func decodeMark(v []byte) (int64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: audit mark of %d bytes", registry.ErrCorrupt, len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// AuditMark returns the expiry (Unix ms) of the audit mark under key, or 0
// (compensation.MarkStore). Errors: ErrClosed, ErrUnavailable, ErrCorrupt.
func (s *Store) AuditMark(_ context.Context, key []byte) (int64, error) {
	var exp int64
	err := s.read(func() error {
		v, closer, err := s.db.Get(auditMarkKey(key))
		if errors.Is(err, pebble.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %w", registry.ErrUnavailable, err)
		}
		defer closer.Close()
		exp, err = decodeMark(v)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("pebblestore: audit mark: %w", err)
	}
	return exp, nil
}

// PutAuditMark stores the audit mark under key, expiring at expiresMS
// (compensation.MarkStore). It rides the next group commit without asking
// for its sync: a batch of marks alone is committed without one, and the
// next synced batch makes it durable (the WAL is one sequence). A crash
// before then loses it, which costs one repeated, recovered audit entry at
// most. Readers see it when PutAuditMark returns. Errors: ErrClosed,
// ErrUnavailable (the disk guard refuses writes).
func (s *Store) PutAuditMark(ctx context.Context, key []byte, expiresMS int64) error {
	err := s.doLazy(ctx, func(tx *tx) error {
		mk := auditMarkKey(key)
		old, err := tx.get(mk)
		if err != nil {
			return err
		}
		if old != nil {
			if exp, err := decodeMark(old); err == nil && exp != expiresMS {
				tx.del(auditMarkTimeKey(exp, key))
			}
		}
		tx.set(mk, binary.BigEndian.AppendUint64(nil, uint64(expiresMS)))
		tx.set(auditMarkTimeKey(expiresMS, key), nil)
		return nil
	})
	if err != nil {
		return fmt.Errorf("pebblestore: put audit mark: %w", err)
	}
	return nil
}

// PurgeAuditMarks deletes up to limit audit marks that ran out before
// cutoffMS and returns how many index entries it removed
// (compensation.MarkStore). Like PurgeIdempotency, it walks the expiry
// index: its cost is the number of stale marks.
func (s *Store) PurgeAuditMarks(ctx context.Context, cutoffMS int64, limit int) (int, error) {
	n := 0
	err := s.do(ctx, func(tx *tx) error {
		n = 0
		it, err := tx.b.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixAuditMarkTime}, UpperBound: auditMarkTimeKey(cutoffMS, nil)})
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
			mk := auditMarkKey(k[9:])
			v, err := tx.get(mk)
			if err != nil {
				return err
			}
			// A mark written again since has an index entry of its own:
			// delete the mark only when it is the one that ran out.
			if v != nil {
				if exp, err := decodeMark(v); err != nil || exp < cutoffMS {
					dels = append(dels, mk)
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
		return 0, fmt.Errorf("pebblestore: purge audit marks: %w", err)
	}
	return n, nil
}
