package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/tests/internal/idledger"
)

// registryReader is the registry as the checks read it
// (*redisstore.Store provides it).
type registryReader interface {
	Get(ctx context.Context, id idcodec.ID) (registry.Record, error)
}

// stateSet is a set of registry states.
type stateSet uint8

func setOf(states ...registry.State) stateSet {
	var s stateSet
	for _, st := range states {
		s |= 1 << st
	}
	return s
}

func (s stateSet) has(st registry.State) bool { return s&(1<<st) != 0 }

func (s stateSet) String() string {
	out := ""
	for _, st := range []registry.State{registry.Pending, registry.Committed, registry.Compensated} {
		if s.has(st) {
			if out != "" {
				out += "|"
			}
			out += st.String()
		}
	}
	return out
}

// expected is the set of final states the answers the driver saw allow,
// once every failure event was consumed and every deadline swept:
//   - a confirmed failure event compensates (whatever else happened);
//   - a 409 to /commit means compensated then, and compensated is final;
//   - a 200 to /commit means committed; only a failure event compensates it
//     after that (the sweeper compensates pending IDs only);
//   - an ID issued with timeout_ms and not known committed is compensated
//     by the sweeper, unless an unanswered commit landed;
//   - otherwise pending, or committed if an unanswered commit landed;
//   - an unconfirmed failure event may or may not have been applied.
func expected(r idRecord) stateSet {
	var s stateSet
	switch {
	case r.event&eventConfirmed != 0, r.commit&commitConflict != 0:
		return setOf(registry.Compensated)
	case r.commit&commitOK != 0:
		s = setOf(registry.Committed)
	case r.deadline:
		s = setOf(registry.Compensated)
		if r.commit&commitUnknown != 0 {
			s |= setOf(registry.Committed)
		}
	default:
		s = setOf(registry.Pending)
		if r.commit&commitUnknown != 0 {
			s |= setOf(registry.Committed)
		}
	}
	if r.event&eventUnconfirmed != 0 {
		s |= setOf(registry.Compensated)
	}
	return s
}

// judge checks one registry record against what the driver saw. It
// returns the final state (0 when unknown) and the violation, if any;
// retry says the record may still converge (a sweep or an event in flight).
func judge(r idRecord, rec registry.Record, err error) (registry.State, *Violation, bool) {
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return 0, &Violation{vLost, fmt.Sprintf("%s was acknowledged but the registry does not hold it", r.id)}, false
	case err != nil:
		return 0, &Violation{vRegistryRead, fmt.Sprintf("%s: %v", r.id, err)}, true
	}
	want := expected(r)
	if !want.has(rec.State) {
		return rec.State, &Violation{vState, fmt.Sprintf("%s is %s in the registry; the answers seen allow %s (deadline %v, commit %s, event %s)",
			r.id, rec.State, want, r.deadline, commitString(r.commit), eventString(r.event))}, true
	}
	if v := effects(r.id, rec); v != nil {
		return rec.State, v, false
	}
	return rec.State, nil, false
}

// effects checks that each transition took effect at most once, and a
// compensation exactly once in a compensated record.
func effects(id idcodec.ID, rec registry.Record) *Violation {
	n := map[registry.State]int{}
	for _, st := range rec.History {
		n[st.State]++
	}
	switch {
	case n[registry.Committed] > 1:
		return &Violation{vEffect, fmt.Sprintf("%s was committed %d times (history %v)", id, n[registry.Committed], rec.History)}
	case n[registry.Compensated] > 1:
		return &Violation{vEffect, fmt.Sprintf("%s was compensated %d times (history %v)", id, n[registry.Compensated], rec.History)}
	case rec.State == registry.Compensated && n[registry.Compensated] != 1:
		return &Violation{vEffect, fmt.Sprintf("%s is compensated with %d compensation steps", id, n[registry.Compensated])}
	}
	return nil
}

func commitString(c uint8) string {
	if c == 0 {
		return "none"
	}
	out := ""
	for _, f := range []struct {
		bit  uint8
		name string
	}{{commitOK, "200"}, {commitConflict, "409"}, {commitUnknown, "unanswered"}} {
		if c&f.bit != 0 {
			if out != "" {
				out += "+"
			}
			out += f.name
		}
	}
	return out
}

func eventString(e uint8) string {
	switch {
	case e&eventConfirmed != 0:
		return "confirmed"
	case e&eventUnconfirmed != 0:
		return "unconfirmed"
	}
	return "none"
}

// registryCheck is the outcome of checkRegistry.
type registryCheck struct {
	final      []registry.State // by ledger record index; 0 = unknown
	nullFinal  map[idcodec.ID]registry.State
	violations []Violation
	reads      int
}

// checkRegistry reads every acknowledged ID (and every null compensation)
// from the registry with workers goroutines and judges it. Records that may
// still converge are read again until settle has passed.
func checkRegistry(ctx context.Context, l *Ledger, reg registryReader, workers int, settle time.Duration) registryCheck {
	recs := l.records()
	l.mu.Lock()
	nulls := make(map[idcodec.ID]uint8, len(l.nulls))
	for id, st := range l.nulls {
		nulls[id] = st
	}
	l.mu.Unlock()

	out := registryCheck{final: make([]registry.State, len(recs)), nullFinal: map[idcodec.ID]registry.State{}}
	viol := make([]*Violation, len(recs))
	todo := make([]int, len(recs))
	for i := range todo {
		todo[i] = i
	}
	deadline := time.Now().Add(settle)
	for {
		var (
			mu    sync.Mutex
			again []int
		)
		idledger.Parallel(ctx, workers, len(todo), func(k int) {
			i := todo[k]
			rec, err := reg.Get(ctx, recs[i].id)
			st, v, retry := judge(recs[i], rec, err)
			mu.Lock()
			out.reads++
			out.final[i], viol[i] = st, v
			if v != nil && retry {
				again = append(again, i)
			}
			mu.Unlock()
		})
		if len(again) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		todo = again
		time.Sleep(time.Second)
	}
	for _, v := range viol {
		if v != nil {
			out.violations = append(out.violations, *v)
		}
	}
	for id, st := range nulls {
		rec, err := reg.Get(ctx, id)
		out.reads++
		switch {
		case errors.Is(err, registry.ErrNotFound) && st&eventConfirmed == 0:
			// an unconfirmed null compensation may never have been applied
		case errors.Is(err, registry.ErrNotFound):
			out.violations = append(out.violations, Violation{vLost, fmt.Sprintf("null compensation of %s: no tombstone in the registry", id)})
		case err != nil:
			out.violations = append(out.violations, Violation{vRegistryRead, fmt.Sprintf("%s: %v", id, err)})
		case rec.State != registry.Compensated || !rec.Tombstone:
			out.violations = append(out.violations, Violation{vState, fmt.Sprintf("null compensation of %s: %s (tombstone %v), want a compensated tombstone", id, rec.State, rec.Tombstone)})
		default:
			out.nullFinal[id] = rec.State
			if v := effects(id, rec); v != nil {
				out.violations = append(out.violations, *v)
			}
		}
	}
	return out
}

// checkAudit checks that every compensated ID has exactly one audit entry
// of an effective compensation across all audit logs (idgen instances'
// sweepers and HTTP, compensate workers), that no other acknowledged ID
// has one, and that no commit is audited twice. The one exception is the
// documented crash window (compensation.Core.Compensate): an attempt that
// wrote its entry and was SIGKILLed before its mark was stored; its
// redelivery writes a second entry, marked recovered, in another life and
// after the killed one's last line (auditCounts.crashRepeat). Such repeats
// are counted (repeats), not violations.
//
// Commits: a committed ID without a commit audit entry is counted, not a
// violation (the HTTP transitions have no recovery of an entry lost to a
// 503 after the write landed, or to a SIGKILL before the entry).
func checkAudit(l *Ledger, rc registryCheck, a auditCounts) (compensated, commitUnaudited, repeats int, out []Violation) {
	recs := l.records()
	one := func(id idcodec.ID, final registry.State) {
		key := id.String()
		got := a.compensate[key]
		want := 0
		if final == registry.Compensated {
			want = 1
			compensated++
		}
		switch {
		case want == 1 && got == 2 && a.crashRepeat("c "+key):
			repeats++
		case got != want:
			out = append(out, Violation{vAudit, fmt.Sprintf("%s is %s with %d compensation audit entries, want %d", id, final, got, want)})
		}
		switch c := a.commit[key]; {
		case final == registry.Committed && c == 2 && a.crashRepeat("m "+key):
			repeats++
		case c > 1:
			out = append(out, Violation{vAudit, fmt.Sprintf("%s has %d commit audit entries, want at most 1", id, c)})
		case c == 0 && final == registry.Committed:
			commitUnaudited++
		}
	}
	for i, r := range recs {
		if rc.final[i] != 0 {
			one(r.id, rc.final[i])
		}
	}
	for id, st := range rc.nullFinal {
		one(id, st)
	}
	return compensated, commitUnaudited, repeats, out
}
