package redisstore

import (
	"context"

	"github.com/idgen/idgen/shared/registry"
)

// In Cluster mode the keys of one registration live in several slots (record
// buckets by counter, the idempotency key by its hash, the deadline index by
// shard), and a script may only touch one slot. A flush then takes up to
// three round trips, each one pipeline of one script call per slot:
//
//  1. records: each slot's script checks its records of an op, then writes
//     them (a retry of the same write is no collision); compare-and-sets
//     and high-water marks also go here.
//  2. for the ops whose records all landed: their idempotency entry (first
//     live entry wins, in the script) and their deadline index entries; for
//     the others (a collision or an error in some slot): a rollback that
//     deletes each record only while it still holds this op's value; the
//     deferred ZREMs of the compare-and-sets of phase 1.
//  3. for the ops that lost the idempotency race: their records, which no
//     client ever saw, are voided (compensated, reason "idempotency_replay")
//     and their deadline entries removed; the op answers with the winner's
//     entry.
//
// So every ID returned is registered (its records landed before its key was
// set, and a winner's key points at records that landed), and a loser's IDs
// are never returned. What is not atomic: a crash between the phases leaves
// pending records that no client saw (without deadline entries, or not
// voided); they are harmless and expire with their bucket.
func (s *Store) flushCluster(ctx context.Context, batch []*op) {
	phase := newSlotCalls(s)
	for _, o := range batch {
		switch o.kind {
		case opRegister:
			bySlot := map[int][]int{}
			var order []int
			for i, k := range o.keys {
				sl := slot(k)
				if _, ok := bySlot[sl]; !ok {
					order = append(order, sl)
				}
				bySlot[sl] = append(bySlot[sl], i)
			}
			for _, sl := range order {
				recs := bySlot[sl]
				phase.at(o.keys[recs[0]]).register(part{o: o, role: roleRecords, recs: recs}, false, recs, nil)
			}
		case opCAS:
			phase.at(o.key).cas(part{o: o, role: roleWhole}, o.key, o.field, o.old, o.new, o.ttl, "", "", o.state)
		case opRaise:
			phase.at(s.highWaterKey()).raise(part{o: o, role: roleWhole}, s.highWaterKey(), o.hw)
		}
	}
	phase.run(ctx)

	phase = newSlotCalls(s)
	for _, o := range batch {
		switch {
		case o.kind == opRegister && o.err == nil && o.collision == 0:
			if o.idemVal != nil {
				phase.at(o.idemKey).register(part{o: o, role: roleIdem}, true, nil, nil)
			}
			bySlot := map[string][]deadline{}
			for _, d := range o.dls {
				bySlot[d.key] = append(bySlot[d.key], d)
			}
			for k, dls := range bySlot {
				phase.at(k).register(part{o: o, role: roleDeadlines}, false, nil, dls)
			}
		case o.kind == opRegister:
			for i := range o.keys {
				phase.at(o.keys[i]).cas(part{o: o, role: roleCleanup}, o.keys[i], o.fields[i], o.vals[i], nil, 0, "", "", registry.CounterFree)
			}
		case o.kind == opCAS && o.err == nil && !o.mismatch && o.zkey != "":
			phase.at(o.zkey).cas(part{o: o, role: roleCleanup}, "", "", nil, nil, 0, o.zkey, o.member, registry.CounterFree)
		}
	}
	phase.run(ctx)

	phase = newSlotCalls(s)
	for _, o := range batch {
		if o.kind != opRegister || o.err != nil || o.replay == nil {
			continue
		}
		nonce := s.nonce()
		for i := range o.keys {
			rec := o.iss.Records[i]
			rec.History = append([]registry.Step(nil), rec.History...)
			if _, err := registry.Apply(&rec, true, registry.Change{To: registry.Compensated, Reason: ReasonIdempotencyReplay, Actor: "system", NowMS: o.nowMS}); err != nil {
				continue
			}
			v := appendValue(nil, &rec, nonce)
			phase.at(o.keys[i]).cas(part{o: o, role: roleCleanup}, o.keys[i], o.fields[i], o.vals[i], v, s.cfg.Retention.Milliseconds(), "", "", registry.StateOf(&rec))
			s.stats.voided.Add(1)
		}
		for _, d := range o.dls {
			phase.at(d.key).cas(part{o: o, role: roleCleanup}, "", "", nil, nil, 0, d.key, d.member, registry.CounterFree)
		}
	}
	phase.run(ctx)
}

// ReasonIdempotencyReplay is the compensation reason of the IDs of a
// registration that lost an idempotency race in Cluster mode (they were
// registered, then voided; no client ever received them).
const ReasonIdempotencyReplay = "idempotency_replay"

// slotCalls collects one call per slot.
type slotCalls struct {
	s     *Store
	calls map[int]*call
	order []*call
}

func newSlotCalls(s *Store) *slotCalls { return &slotCalls{s: s, calls: map[int]*call{}} }

func (p *slotCalls) at(key string) *call {
	sl := slot(key)
	c, ok := p.calls[sl]
	if !ok {
		c = p.s.newCall()
		p.calls[sl] = c
		p.order = append(p.order, c)
	}
	return c
}

func (p *slotCalls) run(ctx context.Context) {
	if len(p.order) == 0 {
		return
	}
	res := p.s.exec(ctx, p.order)
	for i, c := range p.order {
		p.s.read(c, res[i])
	}
}
