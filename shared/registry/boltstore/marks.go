package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/idgen/idgen/shared/registry"
)

// Audit marks (compensation.StoreMarks): key → expiresMS BE[8], and the
// purge index expiresMS BE[8] key → nil.
var (
	bucketAuditMarks    = []byte("auditmarks")
	bucketAuditMarkTime = []byte("auditmarktime")
)

func auditMarkTimeKey(ms int64, key []byte) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(key)), uint64(ms))
	return append(k, key...)
}

func decodeMark(v []byte) (int64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: audit mark of %d bytes", registry.ErrCorrupt, len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// AuditMark returns the expiry (Unix ms) of the audit mark under key, or 0
// (compensation.MarkStore). Errors: ErrCorrupt, bbolt's.
func (s *Store) AuditMark(_ context.Context, key []byte) (int64, error) {
	var exp int64
	err := s.view(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketAuditMarks).Get(key)
		if v == nil {
			return nil
		}
		var err error
		exp, err = decodeMark(v)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("boltstore: audit mark: %w", err)
	}
	return exp, nil
}

// PutAuditMark stores the audit mark under key, expiring at expiresMS
// (compensation.MarkStore). It rides the next group-committed transaction
// with its fsyncs (bbolt has no commit without them that survives a
// crash intact). Errors: ErrClosed, ErrUnavailable (the disk guard refuses
// writes).
func (s *Store) PutAuditMark(ctx context.Context, key []byte, expiresMS int64) error {
	err := s.do(ctx, func(tx *bbolt.Tx) error {
		marks, idx := tx.Bucket(bucketAuditMarks), tx.Bucket(bucketAuditMarkTime)
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], uint64(expiresMS))
		if old := marks.Get(key); old != nil {
			if exp, err := decodeMark(old); err == nil && exp != expiresMS {
				if err := idx.Delete(auditMarkTimeKey(exp, key)); err != nil {
					return err
				}
			}
		}
		if err := marks.Put(bytes.Clone(key), v[:]); err != nil {
			return err
		}
		return idx.Put(auditMarkTimeKey(expiresMS, key), nil)
	})
	if err != nil {
		return fmt.Errorf("boltstore: put audit mark: %w", err)
	}
	return nil
}

// PurgeAuditMarks deletes up to limit audit marks that ran out before
// cutoffMS and returns how many index entries it removed
// (compensation.MarkStore). Like PurgeIdempotency, it walks the expiry
// index: its cost is the number of stale marks.
func (s *Store) PurgeAuditMarks(ctx context.Context, cutoffMS int64, limit int) (int, error) {
	n := 0
	err := s.do(ctx, func(tx *bbolt.Tx) error {
		n = 0
		marks, idx := tx.Bucket(bucketAuditMarks), tx.Bucket(bucketAuditMarkTime)
		end := auditMarkTimeKey(cutoffMS, nil)
		var stale [][]byte
		c := idx.Cursor()
		for k, _ := c.First(); k != nil && len(stale) < limit && bytes.Compare(k, end) < 0; k, _ = c.Next() {
			stale = append(stale, bytes.Clone(k))
		}
		for _, k := range stale {
			// A mark written again since has an index entry of its own:
			// delete the mark only when it is the one that ran out.
			if v := marks.Get(k[8:]); v != nil {
				if exp, err := decodeMark(v); err != nil || exp < cutoffMS {
					if err := marks.Delete(k[8:]); err != nil {
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
	if err != nil {
		return 0, fmt.Errorf("boltstore: purge audit marks: %w", err)
	}
	return n, nil
}
