package reconcile

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/saga"
)

// Reader is what Run reads: the claim ledger and the records.
type Reader interface {
	Claims(ctx context.Context, fromMS, toMS int64) ([]registry.ClaimEntry, error)
	ScanCounters(ctx context.Context, start, end uint64, fn func(registry.Record) error) error
}

// Who compensated an ID (Counts.CompensatedBy).
const (
	ByClient       = "client"        // POST /compensate by a caller
	ByFailureEvent = "failure_event" // the compensate worker (stream, SQS)
	ByDeadline     = "deadline"      // the sweeper, or a commit after the deadline
)

// Reasons of counters that are neither issued nor released
// (Counts.NotIssued), besides the registry's Released* reasons. Both also
// hold the counters of requests that took them and then failed to
// register (the registry refused or was unreachable).
const (
	// Held: the claim's instance is running and holds the rest of its
	// range in use or prefetched.
	Held = "held_by_running_instance"
	// Abandoned: the claim's instance is not running and released nothing
	// of the rest (it crashed, or its releases were not written).
	Abandoned = "abandoned"
	// OutcomeUnknown: an announced claim that no confirmed claim overlaps:
	// committed or not, its instance never handed it out (it died, or lost
	// the reply of the commit and claimed anew).
	OutcomeUnknown = "claim_outcome_unknown"
)

// Kinds of Violation.
const (
	// IssuedAndReleased: a counter both registered and released.
	IssuedAndReleased = "issued_and_released"
	// ReleasedTwice: a counter in two releases.
	ReleasedTwice = "released_twice"
	// OutsideClaim: a record whose counter lies in no recorded claim
	// (reported for the gaps between claims of the window).
	OutsideClaim = "registered_outside_claim"
	// UnrecordedClaim: counters ZooKeeper handed out (a gap between two
	// ZooKeeper claims) that the ledger never heard of.
	UnrecordedClaim = "unrecorded_claim"
	// OverlappingClaims: two recorded claims share counters (a counter
	// handed out twice).
	OverlappingClaims = "overlapping_claims"
	// ForeignRecord: a record in a claim's range that is not of the claim's
	// shard and counter (a corrupt registry).
	ForeignRecord = "foreign_record"
)

// Counts account for counters.
type Counts struct {
	Size          uint64            `json:"size"`
	Issued        uint64            `json:"issued"`
	Pending       uint64            `json:"pending"`
	Committed     uint64            `json:"committed"`
	Compensated   uint64            `json:"compensated"`
	CompensatedBy map[string]uint64 `json:"compensated_by"`
	// Tombstones are null compensations of counters never issued (an ID
	// compensated before, or instead of, its registration).
	Tombstones uint64 `json:"tombstones"`
	// NotIssued counts the counters never issued, by reason.
	NotIssued map[string]uint64 `json:"not_issued"`
	// Unaccounted is how many counters were counted more than once (as
	// issued and released, or released twice), negated; 0 when every
	// counter is accounted for exactly once.
	Unaccounted int64 `json:"unaccounted"`
}

func newCounts() Counts {
	return Counts{CompensatedBy: map[string]uint64{}, NotIssued: map[string]uint64{}}
}

func (c *Counts) add(o Counts) {
	c.Size += o.Size
	c.Issued += o.Issued
	c.Pending += o.Pending
	c.Committed += o.Committed
	c.Compensated += o.Compensated
	c.Tombstones += o.Tombstones
	c.Unaccounted += o.Unaccounted
	for k, v := range o.CompensatedBy {
		c.CompensatedBy[k] += v
	}
	for k, v := range o.NotIssued {
		c.NotIssued[k] += v
	}
}

// ClaimReport is one claim's account.
type ClaimReport struct {
	registry.Claim
	Counts
}

// Gap is a stretch of counters between two claims of the window.
type Gap struct {
	Start  uint64 `json:"start"`
	End    uint64 `json:"end"`
	Reason string `json:"reason"` // "clock_floor_skip" or UnrecordedClaim
}

// Violation is a breach of the invariants.
type Violation struct {
	Kind   string `json:"kind"`
	Start  uint64 `json:"start"`
	End    uint64 `json:"end"`
	ID     string `json:"id,omitempty"`
	Detail string `json:"detail"`
}

// Report is the account of a shard's claims made in a window.
type Report struct {
	Shard      uint8         `json:"shard"`
	FromMS     int64         `json:"from_ms"`
	ToMS       int64         `json:"to_ms"`
	Claims     []ClaimReport `json:"claims"`
	Gaps       []Gap         `json:"gaps"`
	Totals     Counts        `json:"totals"`
	Violations []Violation   `json:"violations"`
}

// OK reports whether nothing is unaccounted and nothing violated.
func (r *Report) OK() bool { return len(r.Violations) == 0 && r.Totals.Unaccounted == 0 }

// maxViolations bounds the violations a report lists one by one.
const maxViolations = 1000

func (r *Report) violate(v Violation) {
	if len(r.Violations) < maxViolations {
		r.Violations = append(r.Violations, v)
	}
}

// CompensatedBy names who made the compensation step st.
func CompensatedBy(st registry.Step) string {
	switch {
	case st.Actor == saga.ActorSystem:
		return ByDeadline
	case strings.HasPrefix(st.Actor, "compensate:"):
		return ByFailureEvent
	}
	return ByClient
}

// Run accounts for every counter of the claims of shard made from fromMS
// to toMS: which were issued and in what state each record is, which were
// released and why, and which neither (live says whether an instance runs,
// to tell Held from Abandoned; nil: none runs); and it reports the
// violations of the package's invariants among them and in the gaps
// between them. It reads the records of the claims' span in one scan.
func Run(ctx context.Context, rd Reader, shard uint8, fromMS, toMS int64, live func(instance string) bool) (*Report, error) {
	all, err := rd.Claims(ctx, fromMS, toMS)
	if err != nil {
		return nil, fmt.Errorf("reconcile: claims: %w", err)
	}
	claims := settle(all)
	rep := &Report{Shard: shard, FromMS: fromMS, ToMS: toMS, Claims: []ClaimReport{}, Gaps: []Gap{}, Totals: newCounts(), Violations: []Violation{}}
	if len(claims) == 0 {
		return rep, nil
	}
	accts := make([]*account, len(claims))
	end := claims[0].End
	for i, ce := range claims {
		if i > 0 {
			rep.between(claims[i-1].Claim, ce.Claim)
		}
		accts[i] = rep.newAccount(ce)
		end = max(end, ce.End)
	}
	// The account of counter c: the last claim starting at or below it,
	// when c is below its end.
	find := func(c uint64) *account {
		i, found := slices.BinarySearchFunc(claims, c, func(e registry.ClaimEntry, c uint64) int { return cmp.Compare(e.Start, c) })
		if !found {
			i--
		}
		if i >= 0 && claims[i].Contains(c) {
			return accts[i]
		}
		return nil
	}
	err = rd.ScanCounters(ctx, claims[0].Start, end, func(rec registry.Record) error {
		f := rec.ID.Decompose()
		if f.Shard != shard {
			rep.violate(Violation{Kind: ForeignRecord, ID: rec.ID.String(), Detail: "scanned a record of another shard"})
			return nil
		}
		if a := find(f.Counter); a != nil {
			a.record(rep, rec, f.Counter)
			return nil
		}
		if !rec.Tombstone { // a tombstone is a null compensation of an ID never issued here
			rep.violate(Violation{Kind: OutsideClaim, Start: f.Counter, End: f.Counter + 1, ID: rec.ID.String(),
				Detail: "a registered ID whose counter is in no recorded claim"})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reconcile: scan [%d, %d): %w", claims[0].Start, end, err)
	}
	for _, a := range accts {
		a.finish(live)
		rep.Claims = append(rep.Claims, a.ClaimReport)
		rep.Totals.add(a.Counts)
	}
	return rep, nil
}

// settle returns the claims that count, in order of Start: every
// confirmed claim, and each announcement (Claim.Unconfirmed) that no
// confirmed claim overlaps, once: it may have been committed by a process
// that died before confirming it (nothing of it was issued; its counters
// are OutcomeUnknown). An announcement a confirmed claim overlaps was
// either not committed (another claim took its counters) or is confirmed.
func settle(all []registry.ClaimEntry) []registry.ClaimEntry {
	var confirmed, out []registry.ClaimEntry
	for _, e := range all {
		if !e.Unconfirmed {
			confirmed = append(confirmed, e)
		}
	}
	overlapped := func(u registry.Claim) bool {
		// The last confirmed claim starting below u's end is the only one
		// that can overlap u (confirmed claims do not overlap each other;
		// those that do are reported as such).
		i, _ := slices.BinarySearchFunc(confirmed, u.End, func(e registry.ClaimEntry, end uint64) int { return cmp.Compare(e.Start, end) })
		return i > 0 && confirmed[i-1].End > u.Start
	}
	seen := map[[2]uint64]bool{}
	out = append(out, confirmed...)
	for _, e := range all {
		k := [2]uint64{e.Start, e.End}
		if e.Unconfirmed && !overlapped(e.Claim) && !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	slices.SortStableFunc(out, func(a, b registry.ClaimEntry) int { return cmp.Compare(a.Start, b.Start) })
	return out
}

// between checks the counters from claim a's end to claim b's start.
func (rep *Report) between(a, b registry.Claim) {
	switch {
	case b.Start < a.End:
		rep.violate(Violation{Kind: OverlappingClaims, Start: b.Start, End: min(a.End, b.End),
			Detail: fmt.Sprintf("claim [%d, %d) of %s and claim [%d, %d) of %s share counters", a.Start, a.End, a.Instance, b.Start, b.End, b.Instance)})
		return
	case b.Start == a.End:
		return
	}
	g := Gap{Start: a.End, End: b.Start, Reason: "clock_floor_skip"}
	if b.Source == registry.SourceZooKeeper {
		g.Reason = UnrecordedClaim
		rep.violate(Violation{Kind: UnrecordedClaim, Start: g.Start, End: g.End,
			Detail: fmt.Sprintf("%d counters between two ZooKeeper claims are in no recorded claim", g.End-g.Start)})
	}
	rep.Gaps = append(rep.Gaps, g)
}

// account is one claim's account while the scan runs. Releases are
// intervals (a shutdown releases up to millions of counters), so a
// counter's release is found by binary search, never kept per counter.
type account struct {
	ClaimReport
	rels     []registry.Release // sorted by Start
	released uint64             // counters released once
}

func (rep *Report) newAccount(ce registry.ClaimEntry) *account {
	a := &account{ClaimReport: ClaimReport{Claim: ce.Claim, Counts: newCounts()}}
	a.Size = ce.Len()
	if ce.Unconfirmed {
		// Never handed out: an unconfirmed claim is never given to the
		// generator.
		a.NotIssued[OutcomeUnknown] = a.Size
		a.released = a.Size
		return a
	}
	for _, rel := range ce.Releases {
		if rel.Start < ce.Start || rel.End > ce.End || rel.Start >= rel.End {
			rep.violate(Violation{Kind: ReleasedTwice, Start: rel.Start, End: rel.End, Detail: "a release outside its claim"})
			continue
		}
		a.rels = append(a.rels, rel)
	}
	slices.SortFunc(a.rels, func(x, y registry.Release) int { return cmp.Compare(x.Start, y.Start) })
	for i, rel := range a.rels {
		n := rel.End - rel.Start
		if i > 0 && rel.Start < a.rels[i-1].End {
			over := min(a.rels[i-1].End, rel.End) - rel.Start
			rep.violate(Violation{Kind: ReleasedTwice, Start: rel.Start, End: rel.Start + over,
				Detail: fmt.Sprintf("released as %s and as %s", a.rels[i-1].Reason, rel.Reason)})
			n -= over
		}
		a.NotIssued[rel.Reason] += n
		a.released += n
	}
	return a
}

func (a *account) releaseOf(c uint64) (registry.Release, bool) {
	i, _ := slices.BinarySearchFunc(a.rels, c, func(r registry.Release, c uint64) int {
		switch {
		case r.End <= c:
			return -1
		case r.Start > c:
			return 1
		}
		return 0
	})
	if i < len(a.rels) && a.rels[i].Start <= c && c < a.rels[i].End {
		return a.rels[i], true
	}
	return registry.Release{}, false
}

// record accounts for the record of counter c.
func (a *account) record(rep *Report, rec registry.Record, c uint64) {
	if rec.Tombstone {
		a.Tombstones++ // a null compensation: the counter stays not issued
		return
	}
	a.Issued++
	if a.Unconfirmed {
		rep.violate(Violation{Kind: OutsideClaim, Start: c, End: c + 1, ID: rec.ID.String(),
			Detail: "a registered ID whose counter is only in an unconfirmed claim"})
		a.NotIssued[OutcomeUnknown]--
		a.released--
	} else if rel, ok := a.releaseOf(c); ok {
		rep.violate(Violation{Kind: IssuedAndReleased, Start: c, End: c + 1, ID: rec.ID.String(), Detail: "registered and released as " + rel.Reason})
		a.NotIssued[rel.Reason]--
		a.released--
	}
	switch rec.State {
	case registry.Pending:
		a.Pending++
	case registry.Committed:
		a.Committed++
	case registry.Compensated:
		a.Compensated++
		a.CompensatedBy[CompensatedBy(rec.Last())]++
	}
}

// finish counts the rest, neither issued nor released: still held by a
// running instance, or abandoned by one that stopped without releasing.
func (a *account) finish(live func(string) bool) {
	rest := int64(a.Size) - int64(a.Issued) - int64(a.released)
	switch {
	case rest < 0:
		a.Unaccounted = rest // more counted than exist: each listed as a violation
	case rest > 0 && live != nil && live(a.Instance):
		a.NotIssued[Held] = uint64(rest)
	case rest > 0:
		a.NotIssued[Abandoned] = uint64(rest)
	}
	for k, v := range a.NotIssued {
		if v == 0 {
			delete(a.NotIssued, k)
		}
	}
}
