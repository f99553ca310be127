package reconcile

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/idgen/idgen/shared/registry"
)

// Reader is what Run reads: the claim ledger, the state maps (the tallies
// of every report) and the records (a deep report's).
type Reader interface {
	Claims(ctx context.Context, fromMS, toMS int64) ([]registry.ClaimEntry, error)
	registry.StateMapper
	ScanCounters(ctx context.Context, start, end uint64, fn func(registry.Record) error) error
}

// Who compensated an ID (Counts.CompensatedBy).
const (
	ByClient       = registry.ByClient
	ByFailureEvent = registry.ByFailureEvent
	ByDeadline     = registry.ByDeadline
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
	// IssuedTwice: two records of one counter (two IDs differing in time
	// or worker but not in shard and counter).
	IssuedTwice = "issued_twice"
	// ForeignRecord: a record in a claim's range that is not of the claim's
	// shard and counter (a corrupt registry; deep reports).
	ForeignRecord = "foreign_record"
	// StateMapMismatch: a counter whose state map does not say what its
	// records are (deep reports).
	StateMapMismatch = "state_map_mismatch"
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
	Reason string `json:"reason"` // GapClockFloor, GapOtherLedger or UnrecordedClaim
}

// Reasons of a Gap that are no violation.
const (
	// GapClockFloor: an embedded store's clock floor skipped the counters
	// at a start.
	GapClockFloor = "clock_floor_skip"
	// GapOtherLedger: ZooKeeper handed the counters to instances whose
	// claims are in registries of their own (embedded stores sharing a
	// ZooKeeper ensemble), not in this one.
	GapOtherLedger = "other_instances_ledger"
)

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

// ParseTime parses a bound of a window, as GET /reconcile and
// idgen reconcile take it: unix milliseconds or an RFC 3339 time, from 1970
// on; def when s is empty.
func ParseTime(s string, def int64) (int64, error) {
	if s == "" {
		return def, nil
	}
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t, perr := time.Parse(time.RFC3339Nano, s)
		if perr != nil {
			return 0, fmt.Errorf("%q is not unix milliseconds or an RFC 3339 time", s)
		}
		ms = t.UnixMilli()
	}
	if ms < 0 {
		return 0, fmt.Errorf("%q is before 1970", s)
	}
	return ms, nil
}

// Query says what Run accounts for.
type Query struct {
	Shard        uint8
	FromMS, ToMS int64 // the claims made in this window (inclusive), by their own clock
	// Live says whether an instance run is running, to tell Held from
	// Abandoned (nil: none runs).
	Live func(instance string) bool
	// SharedLedger says the ledger holds every claim of the shard (a Redis
	// registry, shared by every instance): a gap between two ZooKeeper
	// claims is then a claim it never heard of. Without it (an embedded
	// store, one instance's), such a gap is other instances' claims.
	SharedLedger bool
	// NowMS is the time of the report (0: the clock's).
	NowMS int64
	// Deep also reads every record of the window's counters and checks
	// that the state maps say what the records are (StateMapMismatch,
	// ForeignRecord), naming the IDs; it costs a read of each record.
	Deep bool
}

// Margins of the window. Claims are read pad beyond both ends of the
// window, so that a claim made just outside it (another instance's clock
// is skewed, or its record came late) still delimits the window's gaps and
// settles its announcements; only claims inside the window are accounted
// for. An announcement younger than inFlight that no confirmed claim
// overlaps may still be confirmed: it is left to a later report.
const (
	pad      = int64(2 * time.Minute / time.Millisecond)
	inFlight = int64(time.Minute / time.Millisecond)
)

// Run accounts for every counter of the claims of q.Shard made in the
// window: which were issued and in what state each record is, which were
// released and why, and which neither; and it reports the violations of
// the package's invariants among them and in the gaps between them. It
// reads the state maps of the window's counters, one byte a counter; a
// deep report (q.Deep) also reads their records and checks the maps
// against them.
func Run(ctx context.Context, rd Reader, q Query) (*Report, error) {
	if q.NowMS == 0 {
		q.NowMS = time.Now().UnixMilli()
	}
	all, err := rd.Claims(ctx, max(q.FromMS-pad, 0), q.ToMS+pad)
	if err != nil {
		return nil, fmt.Errorf("reconcile: claims: %w", err)
	}
	claims := settle(all, q.NowMS)
	rep := &Report{Shard: q.Shard, FromMS: q.FromMS, ToMS: q.ToMS, Claims: []ClaimReport{}, Gaps: []Gap{}, Totals: newCounts(), Violations: []Violation{}}
	in := func(c registry.Claim) bool { return q.FromMS <= c.AtMS && c.AtMS <= q.ToMS }
	// The span of counters the report reads: from the first to the last
	// counter of the window's claims.
	var lo, hi uint64
	found := false
	for _, ce := range claims {
		if in(ce.Claim) {
			if !found {
				lo, hi, found = ce.Start, ce.End, true
			}
			lo, hi = min(lo, ce.Start), max(hi, ce.End)
		}
	}
	if !found {
		return rep, nil
	}
	accts := make([]*account, len(claims))
	var reach uint64 // the largest end of the claims before
	for i, ce := range claims {
		if i > 0 {
			rep.between(claims[i-1].Claim, reach, ce.Claim, q.SharedLedger, lo, hi)
		}
		reach = max(reach, ce.End)
		accts[i] = rep.newAccount(ce)
	}
	// The account of counter c: the last claim starting at or below it,
	// when c is below its end.
	find := func(c uint64) *account {
		i, ok := slices.BinarySearchFunc(claims, c, func(e registry.ClaimEntry, c uint64) int { return cmp.Compare(e.Start, c) })
		if !ok {
			i--
		}
		if i >= 0 && claims[i].Contains(c) {
			return accts[i]
		}
		return nil
	}
	var states map[uint64]registry.CounterState // deep: the maps' states, to check against the records
	if q.Deep {
		states = map[uint64]registry.CounterState{}
	}
	from, to := registry.StateMapBucket(lo), registry.StateMapBucket(hi-1)+1
	err = rd.StateMaps(ctx, from, to, func(m *registry.StateMap) error {
		base := m.Bucket << registry.StateMapBits
		for i, st := range m.States {
			c := base + uint64(i)
			if st == registry.CounterFree || c < lo || c >= hi {
				continue
			}
			if states != nil {
				states[c] = st
			}
			if a := find(c); a != nil {
				a.count(rep, st, c)
				continue
			}
			if st.Issued() { // a tombstone is a null compensation of an ID never issued here
				rep.violate(Violation{Kind: OutsideClaim, Start: c, End: c + 1,
					Detail: "a registered ID whose counter is in no recorded claim"})
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reconcile: state maps of buckets [%d, %d): %w", from, to, err)
	}
	if q.Deep {
		if err := rep.verify(ctx, rd, q.Shard, lo, hi, states); err != nil {
			return nil, err
		}
	}
	for _, a := range accts {
		if !in(a.Claim) {
			continue // read to settle the window's edges, accounted for in its own window
		}
		a.finish(q.Live)
		rep.Claims = append(rep.Claims, a.ClaimReport)
		rep.Totals.add(a.Counts)
	}
	return rep, nil
}

// verify reads the records of the counters [lo, hi) and reports every
// counter whose state map (states, the non-free ones) does not say what
// its records are: the state of its one registered record; for more than
// one, CounterRepeated beside the state of one of them (the one written
// last, which the records do not tell); for tombstones alone,
// CounterTombstone.
func (rep *Report) verify(ctx context.Context, rd Reader, shard uint8, lo, hi uint64, states map[uint64]registry.CounterState) error {
	type seen struct {
		issued, tombs int
		id            string
		bases         []registry.CounterState // of the registered records
	}
	recs := map[uint64]*seen{}
	err := rd.ScanCounters(ctx, lo, hi, func(rec registry.Record) error {
		f := rec.ID.Decompose()
		if f.Shard != shard {
			rep.violate(Violation{Kind: ForeignRecord, ID: rec.ID.String(), Detail: "scanned a record of another shard"})
			return nil
		}
		s := recs[f.Counter]
		if s == nil {
			s = &seen{id: rec.ID.String()}
			recs[f.Counter] = s
		}
		if rec.Tombstone {
			s.tombs++
			return nil
		}
		if s.issued == 0 {
			s.id = rec.ID.String()
		}
		s.issued++
		s.bases = append(s.bases, registry.StateOf(&rec))
		return nil
	})
	if err != nil {
		return fmt.Errorf("reconcile: scan [%d, %d): %w", lo, hi, err)
	}
	for c, s := range recs {
		got := states[c]
		var ok bool
		var want string
		switch {
		case s.issued == 0:
			ok, want = got == registry.CounterTombstone, fmt.Sprint(uint8(registry.CounterTombstone))
		case s.issued == 1:
			ok, want = got == s.bases[0], fmt.Sprint(uint8(s.bases[0]))
		default:
			ok = got&registry.CounterRepeated != 0 && slices.Contains(s.bases, got.Base())
			want = fmt.Sprintf("%d (repeated) with one of the states %v", registry.CounterRepeated, s.bases)
		}
		if !ok {
			rep.violate(Violation{Kind: StateMapMismatch, Start: c, End: c + 1, ID: s.id,
				Detail: fmt.Sprintf("the state map says %d, %d registered record(s) and %d tombstone(s) say %s", got, s.issued, s.tombs, want)})
		}
		delete(states, c)
	}
	for c, st := range states {
		rep.violate(Violation{Kind: StateMapMismatch, Start: c, End: c + 1,
			Detail: fmt.Sprintf("the state map says %d, no record holds the counter", st)})
	}
	return nil
}

// settle returns the claims that count, in order of Start: every
// confirmed claim, and the announcements (Claim.Unconfirmed) that no
// confirmed claim overlaps, merged where they overlap each other (two
// instances racing for the same counters announce both; one committed at
// most), except those younger than inFlight. Such an announcement may
// have been committed by a process that died before confirming it:
// nothing of it was issued (OutcomeUnknown). An announcement a confirmed
// claim overlaps was either not committed (another claim took its
// counters) or is confirmed.
func settle(all []registry.ClaimEntry, nowMS int64) []registry.ClaimEntry {
	var confirmed, announced []registry.ClaimEntry
	for _, e := range all {
		if e.Unconfirmed {
			announced = append(announced, e)
		} else {
			confirmed = append(confirmed, e)
		}
	}
	byStart := func(a, b registry.ClaimEntry) int { return cmp.Compare(a.Start, b.Start) }
	slices.SortStableFunc(confirmed, byStart)
	slices.SortStableFunc(announced, byStart)
	// reach[i] is the largest end of confirmed[0..i].
	reach := make([]uint64, len(confirmed))
	for i, e := range confirmed {
		reach[i] = e.End
		if i > 0 {
			reach[i] = max(reach[i], reach[i-1])
		}
	}
	overlapped := func(u registry.Claim) bool {
		i, _ := slices.BinarySearchFunc(confirmed, u.End, func(e registry.ClaimEntry, end uint64) int { return cmp.Compare(e.Start, end) })
		return i > 0 && reach[i-1] > u.Start
	}
	out := confirmed
	var cur *registry.ClaimEntry
	for _, e := range announced {
		if overlapped(e.Claim) || e.AtMS > nowMS-inFlight {
			continue
		}
		if cur != nil && e.Start < cur.End {
			cur.End = max(cur.End, e.End)
			cur.AtMS = min(cur.AtMS, e.AtMS)
			continue
		}
		if cur != nil {
			out = append(out, *cur)
		}
		c := e
		c.Releases = nil
		cur = &c
	}
	if cur != nil {
		out = append(out, *cur)
	}
	slices.SortStableFunc(out, byStart)
	return out
}

// between checks the counters from claim a's end (reach: the largest end
// so far) to claim b's start, when they lie in [lo, hi).
func (rep *Report) between(a registry.Claim, reach uint64, b registry.Claim, shared bool, lo, hi uint64) {
	switch {
	case b.Start < reach:
		if b.Start >= hi || min(reach, b.End) <= lo {
			return
		}
		rep.violate(Violation{Kind: OverlappingClaims, Start: b.Start, End: min(reach, b.End),
			Detail: fmt.Sprintf("claim [%d, %d) of %s overlaps a claim before it (up to %d; the last one [%d, %d) of %s)", b.Start, b.End, b.Instance, reach, a.Start, a.End, a.Instance)})
		return
	case b.Start == reach || reach >= hi || b.Start <= lo:
		return
	}
	g := Gap{Start: reach, End: b.Start, Reason: GapClockFloor}
	switch {
	case b.Source == registry.SourceZooKeeper && !shared:
		g.Reason = GapOtherLedger
	case b.Source == registry.SourceZooKeeper:
		g.Reason = UnrecordedClaim
		rep.violate(Violation{Kind: UnrecordedClaim, Start: g.Start, End: g.End,
			Detail: fmt.Sprintf("%d counters between two ZooKeeper claims are in no recorded claim", g.End-g.Start)})
	}
	rep.Gaps = append(rep.Gaps, g)
}

// account is one claim's account while the maps are read. Releases are
// intervals (a shutdown releases up to millions of counters), so a
// counter's release is found by binary search, never kept per counter.
type account struct {
	ClaimReport
	rels     []registry.Release // sorted by Start, not overlapping
	released uint64             // counters released once and not issued
}

func (rep *Report) newAccount(ce registry.ClaimEntry) *account {
	a := &account{ClaimReport: ClaimReport{Claim: ce.Claim, Counts: newCounts()}}
	a.Size = ce.Len()
	if ce.Unconfirmed {
		// Never handed out: an announcement is never given to the
		// generator.
		a.NotIssued[OutcomeUnknown] = a.Size
		a.released = a.Size
		return a
	}
	var rels []registry.Release
	for _, rel := range ce.Releases {
		if rel.Start < ce.Start || rel.End > ce.End || rel.Start >= rel.End {
			rep.violate(Violation{Kind: ReleasedTwice, Start: rel.Start, End: rel.End, Detail: "a release outside its claim"})
			continue
		}
		rels = append(rels, rel)
	}
	slices.SortFunc(rels, func(x, y registry.Release) int { return cmp.Compare(x.Start, y.Start) })
	var reach uint64
	for _, rel := range rels {
		if rel.Start < reach {
			over := min(reach, rel.End) - rel.Start
			rep.violate(Violation{Kind: ReleasedTwice, Start: rel.Start, End: rel.Start + over,
				Detail: fmt.Sprintf("released as %s and before", rel.Reason)})
			a.Unaccounted -= int64(over)
			if rel.End <= reach {
				continue
			}
			rel.Start = reach // the rest of it is released once
		}
		reach = rel.End
		a.rels = append(a.rels, rel)
		a.NotIssued[rel.Reason] += rel.End - rel.Start
		a.released += rel.End - rel.Start
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

// count accounts for counter c in state st (not free). A counter issued
// and released (a violation) counts as issued only.
func (a *account) count(rep *Report, st registry.CounterState, c uint64) {
	if !st.Issued() {
		a.Tombstones++ // a null compensation: the counter stays not issued
		return
	}
	a.Issued++
	if st&registry.CounterRepeated != 0 {
		rep.violate(Violation{Kind: IssuedTwice, Start: c, End: c + 1, Detail: "two registered IDs share this counter"})
		a.Unaccounted--
	}
	switch {
	case a.Unconfirmed:
		rep.violate(Violation{Kind: OutsideClaim, Start: c, End: c + 1,
			Detail: "a registered ID whose counter is only in an unconfirmed claim"})
		a.NotIssued[OutcomeUnknown]--
		a.released--
	default:
		if rel, ok := a.releaseOf(c); ok {
			rep.violate(Violation{Kind: IssuedAndReleased, Start: c, End: c + 1, Detail: "registered and released as " + rel.Reason})
			a.NotIssued[rel.Reason]--
			a.released--
		}
	}
	switch st.Base() {
	case registry.CounterPending:
		a.Pending++
	case registry.CounterCommitted:
		a.Committed++
	case registry.CounterCompensatedClient:
		a.Compensated++
		a.CompensatedBy[ByClient]++
	case registry.CounterCompensatedEvent:
		a.Compensated++
		a.CompensatedBy[ByFailureEvent]++
	case registry.CounterCompensatedDeadline:
		a.Compensated++
		a.CompensatedBy[ByDeadline]++
	}
}

// finish counts the rest, neither issued nor released: still held by a
// running instance, or abandoned by one that stopped without releasing.
func (a *account) finish(live func(string) bool) {
	rest := int64(a.Size) - int64(a.Issued) - int64(a.released)
	switch {
	case rest < 0:
		a.Unaccounted += rest
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
