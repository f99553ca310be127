package kvregistry

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/idgen/idgen/shared/registry"
)

func decodeMark(v []byte) (int64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: audit mark of %d bytes", registry.ErrCorrupt, len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// auditMark returns the expiry (Unix ms) of the audit mark under key, or 0
// (compensation.MarkStore). Errors: ErrCorrupt, the Reader's.
func auditMark(r Reader, key []byte) (int64, error) {
	v, err := r.Get(AuditMarks, key)
	if v == nil || err != nil {
		return 0, err
	}
	return decodeMark(v)
}

// putAuditMark stores the audit mark under key, expiring at expiresMS, and
// moves its expiry index entry.
func putAuditMark(tx Tx, key []byte, expiresMS int64) error {
	old, err := tx.Get(AuditMarks, key)
	if err != nil {
		return err
	}
	if old != nil {
		if exp, err := decodeMark(old); err == nil && exp != expiresMS {
			if err := tx.Delete(AuditMarkTime, AuditMarkTimeKey(exp, key)); err != nil {
				return err
			}
		}
	}
	if err := tx.Put(AuditMarks, bytes.Clone(key), binary.BigEndian.AppendUint64(nil, uint64(expiresMS))); err != nil {
		return err
	}
	return tx.Put(AuditMarkTime, AuditMarkTimeKey(expiresMS, key), nil)
}

// purgeAuditMarks deletes up to limit audit marks that ran out before
// cutoffMS and returns how many index entries it removed
// (compensation.MarkStore). Like PurgeIdempotency, it walks the expiry
// index: its cost is the number of stale marks. All its reads come before
// its first write.
func purgeAuditMarks(tx Tx, cutoffMS int64, limit int) (int, error) {
	// A mark written again since has an index entry of its own: the mark
	// goes only when it is the one that ran out.
	return purge(tx, AuditMarkTime, AuditMarkTimeKey(cutoffMS, nil), limit, AuditMarks, func(_, v []byte) bool {
		exp, err := decodeMark(v)
		return err != nil || exp < cutoffMS
	})
}
