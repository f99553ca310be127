package reconcile

import (
	"cmp"
	"context"
	"errors"
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

// errTooMany stops a scan that found more violations than a report lists.
var errTooMany = errors.New("too many violations")

// Run accounts for every counter of the claims of shard made from fromMS
// to toMS: which were issued and in what state each record is, which were
// released and why, and which neither (live says whether an instance runs,
// to tell Held from Abandoned; nil: none runs); and it reports the
// violations of the package's invariants among them and in the gaps
// between them.
func Run(ctx context.Context, rd Reader, shard uint8, fromMS, toMS int64, live func(instance string) bool) (*Report, error) {
	claims, err := rd.Claims(ctx, fromMS, toMS)
	if err != nil {
		return nil, fmt.Errorf("reconcile: claims: %w", err)
	}
	rep := &Report{Shard: shard, FromMS: fromMS, ToMS: toMS, Claims: []ClaimReport{}, Gaps: []Gap{}, Totals: newCounts(), Violations: []Violation{}}
	for i, ce := range claims {
		if i > 0 {
			if err := rep.between(ctx, rd, claims[i-1].Claim, ce.Claim); err != nil {
				return nil, err
			}
		}
		cr, err := rep.claim(ctx, rd, ce, live)
		if err != nil {
			return nil, err
		}
		rep.Claims = append(rep.Claims, cr)
		rep.Totals.add(cr.Counts)
	}
	return rep, nil
}

// between checks the counters from claim a's end to claim b's start.
func (rep *Report) between(ctx context.Context, rd Reader, a, b registry.Claim) error {
	switch {
	case b.Start < a.End:
		rep.violate(Violation{Kind: OverlappingClaims, Start: b.Start, End: min(a.End, b.End),
			Detail: fmt.Sprintf("claim [%d, %d) of %s and claim [%d, %d) of %s share counters", a.Start, a.End, a.Instance, b.Start, b.End, b.Instance)})
		return nil
	case b.Start == a.End:
		return nil
	}
	g := Gap{Start: a.End, End: b.Start, Reason: "clock_floor_skip"}
	if b.Source == registry.SourceZooKeeper {
		g.Reason = UnrecordedClaim
		rep.violate(Violation{Kind: UnrecordedClaim, Start: g.Start, End: g.End,
			Detail: fmt.Sprintf("%d counters between two ZooKeeper claims are in no recorded claim", g.End-g.Start)})
	}
	rep.Gaps = append(rep.Gaps, g)
	err := rd.ScanCounters(ctx, g.Start, g.End, func(rec registry.Record) error {
		if rec.Tombstone {
			return nil // a null compensation of an ID never issued here
		}
		rep.violate(Violation{Kind: OutsideClaim, Start: g.Start, End: g.End, ID: rec.ID.String(),
			Detail: "a registered ID whose counter is in no recorded claim"})
		if len(rep.Violations) >= maxViolations {
			return errTooMany
		}
		return nil
	})
	if err != nil && !errors.Is(err, errTooMany) {
		return fmt.Errorf("reconcile: scan gap [%d, %d): %w", g.Start, g.End, err)
	}
	return nil
}

// claim accounts for the counters of one claim. Releases are intervals
// (a shutdown releases up to millions of counters), so a counter's
// release is found by binary search, never by a set of counters.
func (rep *Report) claim(ctx context.Context, rd Reader, ce registry.ClaimEntry, live func(string) bool) (ClaimReport, error) {
	cr := ClaimReport{Claim: ce.Claim, Counts: newCounts()}
	cr.Size = ce.Len()
	rels := make([]registry.Release, 0, len(ce.Releases))
	for _, rel := range ce.Releases {
		if rel.Start < ce.Start || rel.End > ce.End || rel.Start >= rel.End {
			rep.violate(Violation{Kind: ReleasedTwice, Start: rel.Start, End: rel.End, Detail: "a release outside its claim"})
			continue
		}
		rels = append(rels, rel)
	}
	slices.SortFunc(rels, func(a, b registry.Release) int { return cmp.Compare(a.Start, b.Start) })
	var released uint64
	for i, rel := range rels {
		n := rel.End - rel.Start
		if i > 0 && rel.Start < rels[i-1].End {
			over := min(rels[i-1].End, rel.End) - rel.Start
			rep.violate(Violation{Kind: ReleasedTwice, Start: rel.Start, End: rel.Start + over,
				Detail: fmt.Sprintf("released as %s and as %s", rels[i-1].Reason, rel.Reason)})
			n -= over
		}
		cr.NotIssued[rel.Reason] += n
		released += n
	}
	releaseOf := func(c uint64) (registry.Release, bool) {
		i, _ := slices.BinarySearchFunc(rels, c, func(r registry.Release, c uint64) int {
			switch {
			case r.End <= c:
				return -1
			case r.Start > c:
				return 1
			}
			return 0
		})
		if i < len(rels) && rels[i].Start <= c && c < rels[i].End {
			return rels[i], true
		}
		return registry.Release{}, false
	}
	err := rd.ScanCounters(ctx, ce.Start, ce.End, func(rec registry.Record) error {
		f := rec.ID.Decompose()
		if f.Shard != ce.Shard || !ce.Contains(f.Counter) {
			rep.violate(Violation{Kind: ForeignRecord, Start: ce.Start, End: ce.End, ID: rec.ID.String(), Detail: "scanned a record of another shard or counter"})
			return nil
		}
		if rec.Tombstone {
			cr.Tombstones++ // a null compensation: the counter stays not issued
			return nil
		}
		cr.Issued++
		if rel, ok := releaseOf(f.Counter); ok {
			rep.violate(Violation{Kind: IssuedAndReleased, Start: f.Counter, End: f.Counter + 1, ID: rec.ID.String(), Detail: "registered and released as " + rel.Reason})
			cr.NotIssued[rel.Reason]--
			released--
		}
		switch rec.State {
		case registry.Pending:
			cr.Pending++
		case registry.Committed:
			cr.Committed++
		case registry.Compensated:
			cr.Compensated++
			cr.CompensatedBy[CompensatedBy(rec.Last())]++
		}
		return nil
	})
	if err != nil {
		return cr, fmt.Errorf("reconcile: scan claim [%d, %d): %w", ce.Start, ce.End, err)
	}
	// The rest was neither issued nor released: still held by its running
	// instance, or abandoned by one that stopped without releasing.
	rest := int64(cr.Size) - int64(cr.Issued) - int64(released)
	switch {
	case rest < 0:
		cr.Unaccounted = rest // more counted than exist: listed above as violations
	case rest > 0 && live != nil && live(ce.Instance):
		cr.NotIssued[Held] = uint64(rest)
	case rest > 0:
		cr.NotIssued[Abandoned] = uint64(rest)
	}
	for k, v := range cr.NotIssued {
		if v == 0 {
			delete(cr.NotIssued, k)
		}
	}
	return cr, nil
}
