package redisstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// The claim ledger (registry.ClaimLedger) of Config.Shard:
//
//	P claims:{<shard>}    sorted set: score claim ms, member registry.EncodeClaim
//	P released:{<shard>}  hash: field claim start → registry.EncodeReleases
//
// Both carry the shard's hash tag (one slot, like deadlines:{<shard>}).
// Claims made more than Retention (the life of the record buckets they
// account for) before a newly recorded one are trimmed with their releases.

var _ registry.ClaimLedger = (*Store)(nil)

func (s *Store) claimsKey() string {
	return s.cfg.Prefix + "claims:{" + strconv.Itoa(int(s.cfg.Shard)) + "}"
}

func (s *Store) releasesKey() string {
	return s.cfg.Prefix + "released:{" + strconv.Itoa(int(s.cfg.Shard)) + "}"
}

// RecordClaim stores c, durable (WAIT) in durable mode, and trims claims
// made more than Retention before it. Errors: registry.ErrBadClaim, ErrUnavailable,
// ErrClosed.
func (s *Store) RecordClaim(ctx context.Context, c registry.Claim) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if c.Shard != s.cfg.Shard {
		return fmt.Errorf("%w: claim of shard %d in the store of shard %d", registry.ErrBadClaim, c.Shard, s.cfg.Shard)
	}
	if err := s.readable(); err != nil {
		return fmt.Errorf("redisstore: record claim: %w", err)
	}
	v, err := registry.EncodeClaim(c)
	if err != nil {
		return err
	}
	if err := s.trimClaims(ctx, c.AtMS-s.cfg.Retention.Milliseconds()); err != nil {
		return err
	}
	return s.writeDurable(ctx, func(p redis.Pipeliner) {
		p.ZAdd(ctx, s.claimsKey(), redis.Z{Score: float64(c.AtMS), Member: v})
	})
}

// trimClaims removes (a bounded number of) claims made before cutoffMS
// and their releases.
func (s *Store) trimClaims(ctx context.Context, cutoffMS int64) error {
	old, err := s.client.ZRangeByScore(ctx, s.claimsKey(), &redis.ZRangeBy{Min: "-inf", Max: "(" + strconv.FormatInt(cutoffMS, 10), Count: 100}).Result()
	if err != nil {
		return fmt.Errorf("redisstore: trim claims: %w", s.readErr(err))
	}
	if len(old) == 0 {
		return nil
	}
	members := make([]any, 0, len(old))
	var starts []string
	for _, m := range old {
		members = append(members, m)
		// Releases belong to the confirmed claim, recorded after its
		// announcement: trimming only an announcement keeps them.
		if c, err := registry.DecodeClaim([]byte(m)); err == nil && !c.Unconfirmed {
			starts = append(starts, strconv.FormatUint(c.Start, 10))
		}
	}
	return s.writeDurable(ctx, func(p redis.Pipeliner) {
		p.ZRem(ctx, s.claimsKey(), members...)
		if len(starts) > 0 {
			p.HDel(ctx, s.releasesKey(), starts...)
		}
	})
}

// releaseScript adds a release (ARGV[2], JSON) to the JSON list under
// field ARGV[1] unless an equal one is there: Lua keeps the read and the
// write one step, so concurrent releases of one claim both land.
var releaseScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local list = {}
if cur then list = cjson.decode(cur) end
local r = cjson.decode(ARGV[2])
for _, o in ipairs(list) do
  if o.start == r.start and o['end'] == r['end'] and o.reason == r.reason then return 0 end
end
table.insert(list, r)
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(list))
return 1
`)

// RecordRelease adds rel to the releases of the claim starting at
// claimStart, durable in durable mode.
func (s *Store) RecordRelease(ctx context.Context, claimStart uint64, rel registry.Release) error {
	if err := rel.Validate(registry.Claim{Start: claimStart, End: idcodec.MaxCounter + 1}); err != nil {
		return err
	}
	if err := s.readable(); err != nil {
		return fmt.Errorf("redisstore: record release: %w", err)
	}
	// cjson decodes numbers as doubles: the counters travel as strings.
	arg := fmt.Sprintf(`{"start":"%d","end":"%d","reason":%q,"at_ms":"%d"}`, rel.Start, rel.End, rel.Reason, rel.AtMS)
	return s.writeDurable(ctx, func(p redis.Pipeliner) {
		releaseScript.Eval(ctx, p, []string{s.releasesKey()}, strconv.FormatUint(claimStart, 10), arg)
	})
}

// storedRelease is a release as the script stores it.
type storedRelease struct {
	Start  uint64 `json:"start,string"`
	End    uint64 `json:"end,string"`
	Reason string `json:"reason"`
	AtMS   int64  `json:"at_ms,string"`
}

// Claims returns the claims made from fromMS to toMS, in order of Start,
// with their releases.
func (s *Store) Claims(ctx context.Context, fromMS, toMS int64) ([]registry.ClaimEntry, error) {
	if err := s.readable(); err != nil {
		return nil, fmt.Errorf("redisstore: claims: %w", err)
	}
	ms, err := s.client.ZRangeByScore(ctx, s.claimsKey(), &redis.ZRangeBy{Min: strconv.FormatInt(fromMS, 10), Max: strconv.FormatInt(toMS, 10)}).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstore: claims: %w", s.readErr(err))
	}
	out := make([]registry.ClaimEntry, 0, len(ms))
	fields := make([]string, 0, len(ms))
	for _, m := range ms {
		c, err := registry.DecodeClaim([]byte(m))
		if err != nil {
			return nil, fmt.Errorf("redisstore: claims: %w", err)
		}
		out = append(out, registry.ClaimEntry{Claim: c})
		fields = append(fields, strconv.FormatUint(c.Start, 10))
	}
	if len(out) == 0 {
		return out, nil
	}
	vals, err := s.client.HMGet(ctx, s.releasesKey(), fields...).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstore: releases: %w", s.readErr(err))
	}
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue
		}
		var rs []storedRelease
		if err := json.Unmarshal([]byte(str), &rs); err != nil {
			return nil, fmt.Errorf("redisstore: releases of %d: %w: %w", out[i].Start, registry.ErrCorrupt, err)
		}
		for _, r := range rs {
			out[i].Releases = append(out[i].Releases, registry.Release(r))
		}
	}
	slices.SortFunc(out, func(a, b registry.ClaimEntry) int {
		if a.Start < b.Start {
			return -1
		}
		if a.Start > b.Start {
			return 1
		}
		return 0
	})
	return out, nil
}

// scanBatch is how many buckets one pipeline of ScanCounters reads.
const scanBatch = 256

// ScanCounters calls fn with every record of Config.Shard whose counter
// is in [start, end): the buckets of the range, read in pipelines of
// scanBatch HGETALLs. A field held by a record of another ID than its
// bucket's owner cannot occur (the field is addressed by the counter, and
// the record's first half is in its value).
func (s *Store) ScanCounters(ctx context.Context, start, end uint64, fn func(registry.Record) error) error {
	if start >= end {
		return nil
	}
	if err := s.readable(); err != nil {
		return fmt.Errorf("redisstore: scan: %w", err)
	}
	first, last := start>>bucketBits, (end-1)>>bucketBits
	for b := first; b <= last; b += scanBatch {
		p := s.client.Pipeline()
		cmds := make([]*redis.MapStringStringCmd, 0, scanBatch)
		for n := b; n <= last && n < b+scanBatch; n++ {
			cmds = append(cmds, p.HGetAll(ctx, s.bucketKey(n)))
		}
		if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("redisstore: scan: %w", s.readErr(err))
		}
		for i, cmd := range cmds {
			num := b + uint64(i)
			vals, err := BucketValues(cmd.Val())
			if err != nil {
				return fmt.Errorf("redisstore: scan: bucket %d: %w", num, err)
			}
			for low, v := range vals {
				if len(v) < valueHeader {
					return fmt.Errorf("redisstore: scan: bucket %d counter %d: %w: %d-byte value", num, low, registry.ErrCorrupt, len(v))
				}
				counter := num<<bucketBits | uint64(low)
				if counter < start || counter >= end {
					continue
				}
				var id idcodec.ID
				copy(id[:8], v[:8])
				binary.BigEndian.PutUint64(id[8:], uint64(0b10)<<62|uint64(s.cfg.Shard)<<56|counter)
				rec, err := decodeValue(id, v)
				if err != nil {
					return fmt.Errorf("redisstore: scan %s: %w", id, err)
				}
				if err := fn(rec); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// bucketKey is the key of bucket num of Config.Shard (see bucket).
func (s *Store) bucketKey(num uint64) string {
	return s.cfg.Prefix + "r:{" + strconv.Itoa(int(s.cfg.Shard)) + ":" + strconv.FormatUint(num, 10) + "}"
}
