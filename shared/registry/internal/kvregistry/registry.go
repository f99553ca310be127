package kvregistry

import (
	"context"
	"fmt"
	"sync"

	"github.com/idgen/idgen/shared/generator"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// Registry is the registry, range source, key store and audit mark store
// of an embedded backend, over the backend's group commit and reads; the
// backend's Store embeds it. Safe for concurrent use.
type Registry struct {
	name  string // of the backend: the prefix of its errors
	shard uint8
	write func(ctx context.Context, lazy bool, fn func(Tx) error) error
	read  func(fn func(Reader) error) error
	// registers pools the operations of Register (see registerOp).
	registers sync.Pool
}

// registerOp is one Register: its arguments, its answer, the buffer of
// its values and run, its write bound to it once for the life of the
// registerOp. It goes back to the pool only when its write has returned
// with ctx not ended: then run has run or never will (see New), and the
// engine holds none of its values any more (the commit is over).
type registerOp struct {
	iss              registry.Issue
	idemTTLMS, nowMS int64
	replay           *registry.IdemEntry
	buf              []byte
	run              func(Tx) error
}

// maxPooledBuf bounds the value buffer a pooled registerOp keeps (a
// large batch's is left to the garbage collector).
const maxPooledBuf = 4 << 10

func newRegisterOp() any {
	o := &registerOp{}
	o.run = func(tx Tx) (err error) {
		o.replay, o.buf, err = register(tx, o.iss, o.idemTTLMS, o.nowMS, o.buf)
		return err
	}
	return o
}

// New returns the Registry of the backend name (the prefix of its errors)
// whose counter and high-water mark are the shard's. write runs fn in the
// next group commit and returns once that is committed (lazy: a write
// whose loss in a crash costs little, which the backend may commit without
// a sync of its own), or an error of the backend (ErrClosed, ErrUnavailable)
// and then fn's; it returns before fn runs or after its commit, unless ctx
// ended (as Do does); read runs fn against the open store.
func New(name string, shard uint8, write func(ctx context.Context, lazy bool, fn func(Tx) error) error, read func(fn func(Reader) error) error) *Registry {
	return &Registry{name: name, shard: shard, write: write, read: read, registers: sync.Pool{New: newRegisterOp}}
}

// Register stores the pending records of iss, and its idempotency entry,
// in one group commit, durable when it returns. When iss.Idem names a key
// that already has a live entry (created less than idemTTLMS before
// nowMS), nothing is written and that entry is returned (a replay: the
// caller answers with it and its own IDs are burnt). A record that already
// exists fails the whole issue with ErrCollision and writes nothing.
func (r *Registry) Register(ctx context.Context, iss registry.Issue, idemTTLMS, nowMS int64) (*registry.IdemEntry, error) {
	o := r.registers.Get().(*registerOp)
	o.iss, o.idemTTLMS, o.nowMS, o.replay = iss, idemTTLMS, nowMS, nil
	err := r.write(ctx, false, o.run)
	replay := o.replay
	if ctx.Err() == nil {
		o.iss, o.replay = registry.Issue{}, nil
		if cap(o.buf) > maxPooledBuf {
			o.buf = nil
		}
		r.registers.Put(o)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: register: %w", r.name, err)
	}
	return replay, nil
}

// Get returns the record of id. Errors: ErrNotFound, ErrClosed,
// ErrCorrupt.
func (r *Registry) Get(_ context.Context, id idcodec.ID) (registry.Record, error) {
	var rec registry.Record
	err := r.read(func(rd Reader) (err error) {
		rec, err = get(rd, id)
		return err
	})
	return rec, err
}

// Transition applies ch to id atomically (registry.Apply inside the group
// commit, so concurrent transitions serialize) and returns the record
// after it. A replay returns the stored record unchanged.
func (r *Registry) Transition(ctx context.Context, id idcodec.ID, ch registry.Change) (registry.Record, registry.Outcome, error) {
	var (
		rec registry.Record
		out registry.Outcome
	)
	err := r.write(ctx, false, func(tx Tx) (err error) {
		rec, out, err = transition(tx, id, ch)
		return err
	})
	if err != nil {
		return registry.Record{}, 0, fmt.Errorf("%s: transition %s: %w", r.name, id, err)
	}
	return rec, out, nil
}

// Expired returns up to limit IDs whose deadline is at or before nowMS and
// that are still pending, oldest deadline first. Errors: ErrClosed.
func (r *Registry) Expired(_ context.Context, nowMS int64, limit int) ([]idcodec.ID, error) {
	var out []idcodec.ID
	err := r.read(func(rd Reader) (err error) {
		out, err = expired(rd, nowMS, limit)
		return err
	})
	return out, err
}

// PurgeIdempotency deletes idempotency entries created before cutoffMS and
// returns how many index entries it removed (at most limit per call). It
// walks the creation-time index, so its cost is the number of stale keys,
// not the number of live ones.
func (r *Registry) PurgeIdempotency(ctx context.Context, cutoffMS int64, limit int) (int, error) {
	return r.purge(ctx, "purge idempotency", func(tx Tx) (int, error) { return purgeIdempotency(tx, cutoffMS, limit) })
}

// ClaimRange advances the shard's counter by n and returns the old
// value..new value, once the commit is synced: a restart never hands out
// a counter of it again.
func (r *Registry) ClaimRange(ctx context.Context, n uint64) (generator.Range, error) {
	var start uint64
	err := r.write(ctx, false, func(tx Tx) (err error) {
		start, err = claimRange(tx, r.shard, n)
		return err
	})
	if err != nil {
		return generator.Range{}, fmt.Errorf("%s: claim range: %w", r.name, err)
	}
	return generator.Range{Start: start, End: start + n}, nil
}

// Counter returns the shard's next unclaimed counter (its high-water
// mark). Errors: ErrClosed.
func (r *Registry) Counter() (uint64, error) {
	var next uint64
	err := r.read(func(rd Reader) (err error) {
		next, err = counter(rd, r.shard)
		return err
	})
	return next, err
}

// RaiseHighWater durably records that counters below v were handed out by
// an outside range source (ZooKeeper), so that a source restored from an
// old snapshot is noticed at the next start. It never lowers the mark.
func (r *Registry) RaiseHighWater(ctx context.Context, v uint64) error {
	return r.write(ctx, false, func(tx Tx) error { return raiseHighWater(tx, r.shard, v) })
}

// HighWater returns the mark RaiseHighWater recorded, or 0.
func (r *Registry) HighWater(context.Context) (uint64, error) {
	var hw uint64
	err := r.read(func(rd Reader) (err error) {
		hw, err = highWater(rd, r.shard)
		return err
	})
	return hw, err
}

// GetKey returns the stored key material under name, or nil
// (sealer.KeyStore).
func (r *Registry) GetKey(_ context.Context, name string) ([]byte, error) {
	var out []byte
	err := r.read(func(rd Reader) (err error) {
		out, err = getKey(rd, name)
		return err
	})
	return out, err
}

// PutKeyIfAbsent stores v under name unless a value exists; it returns the
// stored value, durable when it returns.
func (r *Registry) PutKeyIfAbsent(ctx context.Context, name string, v []byte) ([]byte, error) {
	var out []byte
	err := r.write(ctx, false, func(tx Tx) (err error) {
		out, err = putKeyIfAbsent(tx, name, v)
		return err
	})
	return out, err
}

// DeleteKey removes the key material under name, durably.
func (r *Registry) DeleteKey(ctx context.Context, name string) error {
	return r.write(ctx, false, func(tx Tx) error { return deleteKey(tx, name) })
}

// AuditMark returns the expiry (Unix ms) of the audit mark under key, or 0
// (compensation.MarkStore). Errors: ErrClosed, ErrUnavailable, ErrCorrupt.
func (r *Registry) AuditMark(_ context.Context, key []byte) (int64, error) {
	var exp int64
	err := r.read(func(rd Reader) (err error) {
		exp, err = auditMark(rd, key)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("%s: audit mark: %w", r.name, err)
	}
	return exp, nil
}

// PutAuditMark stores the audit mark under key, expiring at expiresMS
// (compensation.MarkStore). It is a lazy write (see New): the backend may
// commit it without a sync of its own, and the next synced commit makes it
// durable; a crash before then loses it, which costs one repeated,
// recovered audit entry at most. Readers see it when PutAuditMark returns.
// Errors: ErrClosed, ErrUnavailable (the disk guard refuses writes).
func (r *Registry) PutAuditMark(ctx context.Context, key []byte, expiresMS int64) error {
	err := r.write(ctx, true, func(tx Tx) error { return putAuditMark(tx, key, expiresMS) })
	if err != nil {
		return fmt.Errorf("%s: put audit mark: %w", r.name, err)
	}
	return nil
}

// PurgeAuditMarks deletes up to limit audit marks that ran out before
// cutoffMS and returns how many index entries it removed
// (compensation.MarkStore). Like PurgeIdempotency, it walks the expiry
// index: its cost is the number of stale marks.
func (r *Registry) PurgeAuditMarks(ctx context.Context, cutoffMS int64, limit int) (int, error) {
	return r.purge(ctx, "purge audit marks", func(tx Tx) (int, error) { return purgeAuditMarks(tx, cutoffMS, limit) })
}

// purge runs fn in the next group commit and returns its count.
func (r *Registry) purge(ctx context.Context, what string, fn func(Tx) (int, error)) (int, error) {
	n := 0
	err := r.write(ctx, false, func(tx Tx) (err error) {
		n, err = fn(tx)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("%s: %s: %w", r.name, what, err)
	}
	return n, nil
}
