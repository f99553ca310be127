package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// maxCASAttempts bounds the re-reads of one Transition that keeps losing
// races (each loss means another transition of the same ID took effect).
const maxCASAttempts = 64

// Register stores the pending records of iss, its deadline index entries and
// its idempotency entry in one group commit. When iss.Idem names a key with
// a live entry of another call (CreatedMS+TTL after nowMS), that entry is
// returned (a replay: the caller answers with it; its own IDs are burnt and
// never registered, or voided in Cluster mode). A record held by another
// value fails the whole issue with registry.ErrCollision and writes nothing.
// Other errors: registry.ErrUnavailable (also when WAIT is short of
// replicas in durable mode), registry.ErrClosed.
//
// The idempotency key expires idemTTLMS after it is written (PX);
// idemTTLMS <= 0 stores no entry.
func (s *Store) Register(ctx context.Context, iss registry.Issue, idemTTLMS, nowMS int64) (*registry.IdemEntry, error) {
	n := len(iss.Records)
	o, _ := s.registers.Get().(*op)
	if o == nil {
		o = &op{done: make(chan struct{}, 1)}
	}
	*o = op{kind: opRegister, iss: iss, idemTTL: idemTTLMS, nowMS: nowMS, done: o.done, many: o.many}
	// A value longer than buf1 moves buf to the heap; the values before
	// it keep the bytes they point to.
	buf := o.buf1[:0]
	if n == 1 {
		o.keys, o.fields, o.vals = o.key1[:], o.field1[:], o.val1[:]
	} else {
		m := o.many
		if m == nil || cap(m.keys) < n {
			m = &manyArrays{keys: make([]string, n), fields: make([]string, n), vals: make([][]byte, n)}
			if n <= maxKeptRecords {
				o.many = m
			}
		}
		o.keys, o.fields, o.vals = m.keys[:n], m.fields[:n], m.vals[:n]
	}
	// The Store's own nonce: a resend of this issue by this Store (go-redis
	// after a broken connection, or the caller after ErrUnavailable) finds
	// its own values and succeeds; any other writer's value is a collision.
	nonce := s.nonceBase
	for i := range iss.Records {
		r := &iss.Records[i]
		if i > 0 && sameBucket(r.ID, iss.Records[i-1].ID) {
			o.keys[i], o.fields[i] = o.keys[i-1], fieldOf(r.ID)
		} else {
			o.keys[i], o.fields[i] = s.bucket(r.ID)
		}
		// A value holds the first 8 bytes of its ID (time and worker) and
		// the record without its ID: a record of the same millisecond and
		// worker as the one before, alike but for its ID (a batch), has the
		// same value and shares its bytes, without being encoded.
		if i > 0 && string(r.ID[:8]) == string(iss.Records[i-1].ID[:8]) && r.SameBody(&iss.Records[i-1]) {
			o.vals[i] = o.vals[i-1]
		} else {
			start := len(buf)
			buf = appendValue(buf, r, nonce)
			o.vals[i] = buf[start:len(buf):len(buf)]
		}
		if r.DeadlineMS > 0 {
			o.dls = append(o.dls, deadline{key: s.deadlineKey(shardOf(r.ID)), score: r.DeadlineMS, member: string(r.ID[:])})
		}
	}
	if iss.Idem != nil {
		o.idemKey = s.idemKey(iss.Idem.KeyHash)
		o.idemVal = appendIdemValue(iss.Idem, idemTTLMS)
	}
	err := s.do(ctx, o)
	replay := o.replay
	if ctx.Err() == nil {
		clear(o.vals)
		*o = op{done: o.done, many: o.many}
		s.registers.Put(o)
	}
	if err != nil {
		return nil, fmt.Errorf("redisstore: register: %w", err)
	}
	if replay == nil {
		return nil, nil
	}
	e, err := decodeIdemValue(iss.Idem.KeyHash, replay)
	if err != nil {
		return nil, fmt.Errorf("redisstore: register: idempotency entry: %w", err)
	}
	return &e, nil
}

// Get returns the record of id. Errors: registry.ErrNotFound (also when the
// field holds another ID with the same shard and counter),
// registry.ErrCorrupt, registry.ErrUnavailable, registry.ErrClosed.
func (s *Store) Get(ctx context.Context, id idcodec.ID) (registry.Record, error) {
	v, err := s.load(ctx, id)
	if err != nil {
		return registry.Record{}, fmt.Errorf("redisstore: get %s: %w", id, err)
	}
	if v == nil {
		return registry.Record{}, registry.ErrNotFound
	}
	rec, err := decodeValue(id, v)
	if errors.Is(err, errOtherID) {
		return registry.Record{}, registry.ErrNotFound
	}
	return rec, err
}

// load returns the raw value of id's record (its field, else the run that
// covers it: FieldValue), nil when absent. A record found absent while the
// Store started refusing (a concurrent reconnect found the marker gone)
// answers the refusal, never not-found.
func (s *Store) load(ctx context.Context, id idcodec.ID) ([]byte, error) {
	if err := s.readable(); err != nil {
		return nil, err
	}
	key, field := s.bucket(id)
	vals, err := s.client.HMGet(ctx, key, field, RunsField).Result()
	if err != nil {
		return nil, s.readErr(err)
	}
	var f, r []byte
	if v, ok := vals[0].(string); ok {
		f = []byte(v)
	}
	if v, ok := vals[1].(string); ok {
		r = []byte(v)
	}
	v, err := FieldValue(fieldOffset(field), f, r)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, s.guard.refusal()
	}
	return v, nil
}

// Transition applies ch to id and returns the record after it; a replay
// returns the stored record unchanged.
//
// Atomicity: Lua cannot run registry.Apply, and Apply must stay the only
// place of the saga rules. So Transition reads the field, runs Apply in Go
// and writes its result with a compare-and-set on the whole field value
// (inside a group commit, with the deadline-index removal in the same
// script outside Cluster mode): the write happens only if the field still
// holds exactly what was read (absent, for a null-compensation tombstone).
// A lost race re-reads and re-applies, so the loser sees the winner's state
// (a compensation after a commit applies; a second compensation replays).
// Unlike WATCH/MULTI, this needs no dedicated connection, rides the group
// commit, and conflicts only on the same ID, not on its 127 bucket
// neighbours. The new value carries a fresh nonce, so a resent write finds
// itself (done) while an identical transition of another call does not.
//
// Errors: those of registry.Apply (ErrNotFound, ErrConflict),
// ErrCollision (a tombstone's field holds another ID), ErrUnavailable,
// ErrClosed.
func (s *Store) Transition(ctx context.Context, id idcodec.ID, ch registry.Change) (registry.Record, registry.Outcome, error) {
	rec, out, err := s.transition(ctx, id, ch)
	if err != nil {
		return registry.Record{}, 0, fmt.Errorf("redisstore: transition %s: %w", id, err)
	}
	return rec, out, nil
}

func (s *Store) transition(ctx context.Context, id idcodec.ID, ch registry.Change) (registry.Record, registry.Outcome, error) {
	key, field := s.bucket(id)
	nonce := s.nonce()
	for attempt := 0; ; attempt++ {
		v, err := s.load(ctx, id)
		if err != nil {
			return registry.Record{}, 0, err
		}
		rec := registry.Record{ID: id}
		if v != nil {
			if rec, err = decodeValue(id, v); errors.Is(err, errOtherID) {
				rec = registry.Record{ID: id}
				if _, err := registry.Apply(&rec, false, ch); err != nil {
					return registry.Record{}, 0, err
				}
				s.stats.collisions.Add(1)
				if s.cfg.Collision != nil {
					s.cfg.Collision(id)
				}
				return registry.Record{}, 0, fmt.Errorf("%w: its counter is held by another ID", registry.ErrCollision)
			} else if err != nil {
				return registry.Record{}, 0, err
			}
		}
		out, err := registry.Apply(&rec, v != nil, ch)
		if err != nil {
			if ch.From != 0 && v != nil && rec.State != ch.From {
				s.dropDeadline(ctx, &rec)
			}
			return registry.Record{}, 0, err
		}
		if out == registry.Replayed {
			return rec, out, nil
		}
		o := &op{kind: opCAS, key: key, field: field, old: v, new: appendValue(nil, &rec, nonce), ttl: s.cfg.Retention.Milliseconds(), state: registry.StateOf(&rec)}
		if out == registry.Tombstoned && s.cfg.TombstoneTTL > s.cfg.Retention {
			o.ttl = s.cfg.TombstoneTTL.Milliseconds()
		}
		if rec.DeadlineMS > 0 && rec.State != registry.Pending {
			o.zkey, o.member = s.deadlineKey(shardOf(id)), string(id[:])
		}
		if err := s.do(ctx, o); err != nil {
			return registry.Record{}, 0, err
		}
		if !o.mismatch {
			return rec, out, nil
		}
		s.stats.casRetries.Add(1)
		if attempt+1 >= maxCASAttempts {
			return registry.Record{}, 0, fmt.Errorf("%w: %d lost races in a row", registry.ErrUnavailable, maxCASAttempts)
		}
	}
}

// dropDeadline removes a stale deadline-index entry (the record left
// pending but its entry was not removed, possible in Cluster mode after a
// failed clean-up), so that the sweeper stops seeing it. Best effort.
func (s *Store) dropDeadline(ctx context.Context, rec *registry.Record) {
	if rec.DeadlineMS == 0 || rec.State == registry.Pending {
		return
	}
	if err := s.client.ZRem(ctx, s.deadlineKey(shardOf(rec.ID)), string(rec.ID[:])).Err(); err != nil {
		s.cfg.Logger.Warn("registry: removing a stale deadline entry failed", zap.Stringer("id", rec.ID), zap.Error(err))
	}
}

// Expired returns up to limit IDs of Config.Shard whose deadline is at or
// before nowMS and that are still pending, oldest deadline first. Errors:
// ErrUnavailable, ErrClosed.
func (s *Store) Expired(ctx context.Context, nowMS int64, limit int) ([]idcodec.ID, error) {
	return s.ExpiredShard(ctx, s.cfg.Shard, nowMS, limit)
}

// ExpiredShard is Expired for the deadline index of another shard.
func (s *Store) ExpiredShard(ctx context.Context, shard uint8, nowMS int64, limit int) ([]idcodec.ID, error) {
	if err := s.readable(); err != nil {
		return nil, fmt.Errorf("redisstore: expired: %w", err)
	}
	if limit <= 0 {
		return nil, nil
	}
	members, err := s.client.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: s.deadlineKey(shard), ByScore: true, Start: "-inf", Stop: strconv.FormatInt(nowMS, 10), Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("redisstore: expired: %w", s.readErr(err))
	}
	out := make([]idcodec.ID, 0, len(members))
	for _, m := range members {
		if len(m) != len(idcodec.ID{}) {
			continue
		}
		out = append(out, idcodec.ID([]byte(m)))
	}
	return out, nil
}

// PurgeIdempotency does nothing and returns 0: Redis expires idempotency
// keys by their PX. It exists so that Store serves where the embedded
// stores do.
func (s *Store) PurgeIdempotency(context.Context, int64, int) (int, error) {
	if s.c.Closed() {
		return 0, registry.ErrClosed
	}
	return 0, nil
}
