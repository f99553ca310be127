package main

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/tests/internal/idledger"
)

// Violation is one broken invariant.
type Violation struct {
	Kind   string
	Detail string
}

// Kinds of violations.
const (
	vDuplicate    = "duplicate"           // two acknowledged IDs share (shard, counter)
	vIdempotency  = "idempotency"         // one Idempotency-Key answered two ID sets
	vBadAnswer    = "bad_answer"          // an idgen answer outside the contract
	vLost         = "lost"                // an acknowledged ID the registry does not hold
	vState        = "wrong_state"         // registry state not what the answers imply
	vEffect       = "effect_count"        // a transition applied more than once
	vAudit        = "audit_count"         // a compensation audited other than once
	vWrong200     = "wrong_200"           // a 200 where the fault makes one impossible
	vMonotonic    = "timestamp_went_back" // an instance's timestamps went back
	vDeadLetter   = "dead_letter"         // a failure event was dead-lettered
	vStream       = "stream_not_drained"  // failure events left unconsumed
	vRecovery     = "not_recovered"       // the service did not recover from a fault
	vAvailability = "availability"        // availability below the fault's floor
	vFault        = "fault_not_injected"  // a fault could not be injected or did not land
	vVolume       = "too_few_ids"         // fewer IDs than -min-ids
	vCheck        = "check_failed"        // a check could not be carried out
	vRegistryRead = "registry_unreadable" // the registry could not be read at the end
	vClient       = "client_disagrees"    // the Go client's result is not the answer on the wire
	vReconcile    = "reconciliation"      // a counter of a claimed range not accounted for exactly once
)

// commit outcomes seen by the driver for one ID (bit set: retries may see
// several).
const (
	commitOK       uint8 = 1 << iota // 200: committed at that moment
	commitConflict                   // 409: compensated at that moment
	commitUnknown                    // 503, timeout, no answer: may or may not have landed
)

// failure-event states for one ID (bit set).
const (
	eventConfirmed   uint8 = 1 << iota // XADD acknowledged by WAIT 1: will be applied
	eventUnconfirmed                   // sent, never confirmed: may be applied
)

// idRecord is what the driver knows of one acknowledged ID.
type idRecord struct {
	id       idcodec.ID
	deadline bool // issued with timeout_ms: the sweeper compensates it unless committed
	commit   uint8
	event    uint8
}

// result is one request and its answer, for the tables and the per-fault
// checks.
type result struct {
	sent, recv time.Time
	kind       string // "generate", "commit"
	via        string // "lb" or the instance asked directly
	life       int    // instance life of a direct request
	stream     int    // sequential stream of a direct load (-1: none)
	backend    string // instance that answered ("" when HAProxy answered itself or nothing did)
	status     int    // 0: no answer (transport error, timeout)
	fromLB     bool   // the answer was made by HAProxy, not by idgen
	ids        int
	minTS      uint64 // timestamps of the acknowledged IDs (unix ms)
	maxTS      uint64
	err        string // why there was no answer
}

// keyAnswer is the first 200 answer to an Idempotency-Key.
type keyAnswer struct {
	ids   []idcodec.ID
	first time.Time
}

// Ledger records every acknowledged answer. Uniqueness is checked as
// answers arrive, by idledger (on (shard, counter)). Answers to one
// Idempotency-Key must all carry the same IDs; they count once. Safe for
// concurrent use.
type Ledger struct {
	ids *idledger.Ledger[idRecord]

	mu      sync.Mutex
	keys    map[string]keyAnswer
	nulls   map[idcodec.ID]uint8 // null compensations sent: ID never issued → event state
	results []result
	viol    []Violation
}

func newLedger() *Ledger {
	return &Ledger{ids: idledger.New[idRecord](1 << 20), keys: map[string]keyAnswer{}, nulls: map[idcodec.ID]uint8{}}
}

// violate records a violation.
func (l *Ledger) violate(kind, format string, args ...any) {
	l.mu.Lock()
	l.viol = append(l.viol, Violation{kind, fmt.Sprintf(format, args...)})
	l.mu.Unlock()
}

// addResult records one request.
func (l *Ledger) addResult(r result) {
	l.mu.Lock()
	l.results = append(l.results, r)
	l.mu.Unlock()
}

// Acknowledge records the IDs of a 200 answer to /generate. With a key,
// the answer must equal the key's first answer, and only the first counts.
// It reports whether the IDs are new (not a replay of a known key).
func (l *Ledger) Acknowledge(ids []idcodec.ID, key string, deadline bool, at time.Time, who string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if key != "" {
		if prev, ok := l.keys[key]; ok {
			if !slices.Equal(prev.ids, ids) {
				l.viol = append(l.viol, Violation{vIdempotency, fmt.Sprintf(
					"Idempotency-Key %s answered %s (first, at %s) and later %s (%s, at %s)",
					key, idList(prev.ids), prev.first.Format(timeFmt), idList(ids), who, at.Format(timeFmt))})
			}
			return false
		}
		l.keys[key] = keyAnswer{ids: slices.Clone(ids), first: at}
	}
	for _, id := range ids {
		for _, d := range l.ids.Add(idRecord{id: id, deadline: deadline}, id) {
			l.viol = append(l.viol, Violation{vDuplicate, fmt.Sprintf(
				"%s (answered by %s at %s) has the shard and counter of %s, acknowledged before", d.ID, who, at.Format(timeFmt), d.First.ID)})
		}
	}
	return true
}

// Commit records a /commit outcome for an acknowledged ID.
func (l *Ledger) Commit(id idcodec.ID, outcome uint8) {
	l.ids.Update(id, func(r *idRecord) { r.commit |= outcome })
}

// Event records a failure event's state for an acknowledged ID, or for a
// null compensation (an ID never issued).
func (l *Ledger) Event(id idcodec.ID, state uint8, null bool) {
	if null {
		l.mu.Lock()
		l.nulls[id] |= state
		l.mu.Unlock()
		return
	}
	l.ids.Update(id, func(r *idRecord) { r.event |= state })
}

// Count is the number of distinct acknowledged IDs.
func (l *Ledger) Count() int { return l.ids.Len() }

// Duplicates is the number of duplicate IDs seen.
func (l *Ledger) Duplicates() int { return l.ids.Duplicates() }

// records returns a copy of what is known of each acknowledged ID, in
// acknowledgement order.
func (l *Ledger) records() []idRecord {
	rs := l.ids.Records()
	out := make([]idRecord, len(rs))
	for i, r := range rs {
		out[i] = r.Meta
	}
	return out
}

// Results returns a copy of the recorded requests.
func (l *Ledger) Results() []result {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.results)
}

// Violations returns a copy of the violations so far.
func (l *Ledger) Violations() []Violation {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.viol)
}

// pick returns up to n acknowledged IDs, newest first, that match ok.
func (l *Ledger) pick(n int, ok func(idRecord) bool) []idcodec.ID {
	return l.ids.Newest(n, func(r idledger.Record[idRecord]) bool { return ok(r.Meta) })
}

const timeFmt = "15:04:05.000"

func idList(ids []idcodec.ID) string {
	if len(ids) == 1 {
		return ids[0].String()
	}
	if len(ids) == 0 {
		return "[]"
	}
	return fmt.Sprintf("[%s … %s] (%d)", ids[0], ids[len(ids)-1], len(ids))
}
