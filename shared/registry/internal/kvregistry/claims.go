package kvregistry

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

var _ registry.ClaimLedger = (*Registry)(nil)

// RecordClaim stores c in the Claims table, durable when it returns
// (registry.ClaimLedger). Errors: ErrBadClaim, a claim of another shard.
func (r *Registry) RecordClaim(ctx context.Context, c registry.Claim) error {
	if err := r.checkClaim(c); err != nil {
		return err
	}
	v, err := registry.EncodeClaim(c)
	if err != nil {
		return err
	}
	return r.write(ctx, false, func(tx Tx) error { return tx.Put(Claims, ClaimKey(c.AtMS, c.Start), v) })
}

func (r *Registry) checkClaim(c registry.Claim) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if c.Shard != r.shard {
		return fmt.Errorf("%w: claim of shard %d in the store of shard %d", registry.ErrBadClaim, c.Shard, r.shard)
	}
	return nil
}

// RecordRelease adds rel to the releases of the claim starting at
// claimStart (registry.ClaimLedger).
func (r *Registry) RecordRelease(ctx context.Context, claimStart uint64, rel registry.Release) error {
	if err := rel.Validate(registry.Claim{Start: claimStart, End: idcodec.MaxCounter + 1}); err != nil {
		return err
	}
	return r.write(ctx, false, func(tx Tx) error {
		v, err := tx.Get(Releases, ReleaseKey(claimStart))
		if err != nil {
			return err
		}
		var rs []registry.Release
		if v != nil {
			if rs, err = registry.DecodeReleases(v); err != nil {
				return err
			}
		}
		rs, added := registry.AddRelease(rs, rel)
		if !added {
			return nil
		}
		b, err := registry.EncodeReleases(rs)
		if err != nil {
			return err
		}
		return tx.Put(Releases, ReleaseKey(claimStart), b)
	})
}

// Claims returns the claims made from fromMS to toMS, in order of Start,
// with their releases (registry.ClaimLedger).
func (r *Registry) Claims(_ context.Context, fromMS, toMS int64) ([]registry.ClaimEntry, error) {
	var out []registry.ClaimEntry
	if toMS < 0 || toMS < fromMS {
		return out, nil // no claim is made before 1970
	}
	err := r.read(func(rd Reader) error {
		out = out[:0]
		var keys [][]byte
		if err := rd.Scan(Claims, ClaimKey(toMS+1, 0), func(k []byte) bool {
			if int64(binary.BigEndian.Uint64(k)) >= fromMS {
				keys = append(keys, slices.Clone(k))
			}
			return true
		}); err != nil {
			return err
		}
		for _, k := range keys {
			v, err := rd.Get(Claims, k)
			if err != nil {
				return err
			}
			c, err := registry.DecodeClaim(v)
			if err != nil {
				return err
			}
			e := registry.ClaimEntry{Claim: c}
			if v, err = rd.Get(Releases, ReleaseKey(c.Start)); err != nil {
				return err
			}
			if v != nil {
				if e.Releases, err = registry.DecodeReleases(v); err != nil {
					return err
				}
			}
			out = append(out, e)
		}
		return nil
	})
	slices.SortFunc(out, func(a, b registry.ClaimEntry) int { return cmpUint64(a.Start, b.Start) })
	return out, err
}

func cmpUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ScanCounters calls fn with every record whose counter is in [start,
// end) (registry.ClaimLedger). Records are keyed by ID, time first, so it
// walks every key once (16 bytes kept per match), then reads the matches'
// values in reads of scanChunk records each: a reconciliation's cost, not
// the request path's. Records are never deleted, so reads apart see them
// all.
func (r *Registry) ScanCounters(_ context.Context, start, end uint64, fn func(registry.Record) error) error {
	var ids []idcodec.ID
	err := r.read(func(rd Reader) error {
		// Every 16-byte key is below maxID followed by one more byte.
		return rd.Scan(Records, append(maxID[:], 0), func(k []byte) bool {
			var id idcodec.ID
			copy(id[:], k)
			if f := id.Decompose(); f.Shard == r.shard && start <= f.Counter && f.Counter < end {
				ids = append(ids, id)
			}
			return true
		})
	})
	if err != nil {
		return err
	}
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), scanChunk)]
		ids = ids[len(chunk):]
		recs := make([]registry.Record, 0, len(chunk))
		if err := r.read(func(rd Reader) error {
			for _, id := range chunk {
				rec, err := get(rd, id)
				if err != nil {
					return err
				}
				recs = append(recs, rec)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, rec := range recs {
			if err := fn(rec); err != nil {
				return err
			}
		}
	}
	return nil
}

// scanChunk bounds the records of one read of ScanCounters (a Pebble read
// holds its values until it ends; a bbolt read holds the file's pages).
const scanChunk = 1024
