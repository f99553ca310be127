package reconcile_test

import (
	"context"
	"testing"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/reconcile"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/pebblestore"
)

func edgeStore(t testing.TB) *pebblestore.Store {
	st, err := pebblestore.Open(pebblestore.Config{Dir: t.TempDir(), Shard: shard, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func zkc(start, end uint64, ms int64, inst string, unconfirmed bool) registry.Claim {
	return registry.Claim{Shard: shard, Start: start, End: end, Instance: inst, Source: registry.SourceZooKeeper, AtMS: ms, Unconfirmed: unconfirmed}
}

func put(t testing.TB, st *pebblestore.Store, cs ...registry.Claim) {
	for _, c := range cs {
		if err := st.RecordClaim(context.Background(), c); err != nil {
			t.Fatal(err)
		}
	}
}

func reg(t *testing.T, st *pebblestore.Store, ts uint64, counters ...uint64) {
	for _, c := range counters {
		id := idcodec.MustCompose(idcodec.Fields{TimestampMS: ts, Worker: 1, Shard: shard, Counter: c})
		if _, err := st.Register(context.Background(), registry.Issue{Records: []registry.Record{{ID: id, State: registry.Pending, IssuedAtMS: int64(ts), Subject: "x"}}}, 60_000, int64(ts)); err != nil {
			t.Fatal(err)
		}
	}
}

// A window that ends between a claim's announcement and its confirmation
// reports neither, and no violation.
func TestEdgeWindowCutsAnnouncement(t *testing.T) {
	st := edgeStore(t)
	put(t, st, zkc(0, 100, 10, "a", true), zkc(0, 100, 11, "a", false))
	reg(t, st, 12, 5, 6)
	rep, err := reconcile.Run(context.Background(), st, reconcile.Query{Shard: shard, FromMS: 0, ToMS: 10, SharedLedger: true, NowMS: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Errorf("window [0,10] ending between announce@10 and confirm@11: %d violations, first %+v", len(rep.Violations), rep.Violations[0])
	}
}

// Claim times out of counter order across instances (clock skew, a slow
// confirmation): a claim just outside the window, in the middle of its
// counters, delimits no gap and its IDs are no violation.
func TestEdgeWindowInterleaved(t *testing.T) {
	st := edgeStore(t)
	put(t, st,
		zkc(0, 100, 19, "a", true), zkc(0, 100, 20, "a", false), // A: clock 10ms ahead
		zkc(100, 200, 8, "b", true), zkc(100, 200, 9, "b", false), // B
		zkc(200, 300, 21, "a", true), zkc(200, 300, 22, "a", false))
	reg(t, st, 30, 1, 101, 201)
	rep, err := reconcile.Run(context.Background(), st, reconcile.Query{Shard: shard, FromMS: 10, ToMS: 30, SharedLedger: true, NowMS: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Errorf("window [10,30]: violations %+v gaps %+v", rep.Violations, rep.Gaps)
	}
}

// Two instances' announcements of different sizes at the same counter (a
// compare-and-set race whose winner died after its commit) merge into one
// claim of unknown outcome, no overlap.
func TestEdgeConcurrentAnnouncements(t *testing.T) {
	st := edgeStore(t)
	put(t, st, zkc(0, 100, 1, "a", true), zkc(0, 100, 2, "a", false),
		zkc(100, 150, 3, "a", true), zkc(100, 300, 4, "b", true))
	rep, err := reconcile.Run(context.Background(), st, reconcile.Query{Shard: shard, FromMS: 0, ToMS: 100, SharedLedger: true, NowMS: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Errorf("concurrent announcements: violations %+v", rep.Violations)
	}
}

// A counter issued twice (two IDs, one counter) is a violation, also when
// the claim has an unissued rest that could absorb it.
func TestEdgeDoubleIssueHidden(t *testing.T) {
	st := edgeStore(t)
	put(t, st, zkc(0, 100, 1, "a", true), zkc(0, 100, 2, "a", false))
	reg(t, st, 5, 0, 1, 2, 3, 4)
	reg(t, st, 6, 3) // counter 3 again
	rep, err := reconcile.Run(context.Background(), st, reconcile.Query{Shard: shard, FromMS: 0, ToMS: 100, SharedLedger: true, NowMS: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Violations) != 1 || rep.Violations[0].Kind != reconcile.IssuedTwice || rep.Violations[0].Start != 3 || rep.Totals.Issued != 5 || rep.Totals.Unaccounted != -1 {
		t.Errorf("counter 3 issued twice: violations %+v, totals %+v", rep.Violations, rep.Totals)
	}
}

// A counter issued twice inside a release leaves no count below zero.
func TestEdgeNotIssuedUnderflow(t *testing.T) {
	st := edgeStore(t)
	put(t, st, zkc(0, 100, 1, "a", true), zkc(0, 100, 2, "a", false))
	if err := st.RecordRelease(context.Background(), 0, registry.Release{Start: 50, End: 51, Reason: registry.ReleasedBatchTail, AtMS: 3}); err != nil {
		t.Fatal(err)
	}
	reg(t, st, 5, 50)
	reg(t, st, 6, 50)
	rep, err := reconcile.Run(context.Background(), st, reconcile.Query{Shard: shard, FromMS: 0, ToMS: 100, SharedLedger: true, NowMS: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range rep.Totals.NotIssued {
		if v > 1<<62 {
			t.Errorf("NotIssued[%s] = %d (wrapped)", k, v)
		}
	}
}

// Releases nested in an earlier one are each listed, and their counters
// counted once.
func TestEdgeReleasedTwiceMissed(t *testing.T) {
	st := edgeStore(t)
	put(t, st, zkc(0, 100, 1, "a", true), zkc(0, 100, 2, "a", false))
	for _, r := range []registry.Release{{Start: 0, End: 100, Reason: registry.ReleasedAtShutdown}, {Start: 10, End: 20, Reason: registry.ReleasedBatchTail}, {Start: 30, End: 40, Reason: registry.ReleasedLeaseLost}} {
		if err := st.RecordRelease(context.Background(), 0, r); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := reconcile.Run(context.Background(), st, reconcile.Query{Shard: shard, FromMS: 0, ToMS: 100, SharedLedger: true, NowMS: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Violations) != 2 || rep.Totals.Unaccounted != -20 || rep.Totals.NotIssued[registry.ReleasedAtShutdown] != 100 {
		t.Errorf("want 2 released_twice violations ([10,20) and [30,40)) and 20 counted twice: %+v, totals %+v", rep.Violations, rep.Totals)
	}
}

// ZooKeeper with an embedded registry per instance: the other instances'
// ranges are gaps of this ledger, no violation; in a shared ledger the same
// gap is an unrecorded claim.
func TestEdgeZKEmbeddedOtherInstances(t *testing.T) {
	st := edgeStore(t)
	put(t, st, zkc(0, 100, 1, "a", false), zkc(200, 300, 3, "a", false)) // [100,200) went to instance b, whose ledger is its own store
	rep, err := reconcile.Run(context.Background(), st, reconcile.Query{Shard: shard, FromMS: 0, ToMS: 100, SharedLedger: false, NowMS: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || len(rep.Gaps) != 1 || rep.Gaps[0].Reason != reconcile.GapOtherLedger {
		t.Errorf("one instance's own ledger in ZooKeeper+embedded mode: violations %+v, gaps %+v", rep.Violations, rep.Gaps)
	}
	shared, err := reconcile.Run(context.Background(), st, reconcile.Query{Shard: shard, FromMS: 0, ToMS: 100, SharedLedger: true, NowMS: 1 << 40})
	if err != nil || len(shared.Violations) != 1 || shared.Violations[0].Kind != reconcile.UnrecordedClaim {
		t.Errorf("the same gap in a shared ledger: %+v, %v; want one unrecorded_claim", shared, err)
	}
}

// A window before 1970 holds no claim.
func TestEdgeNegativeTo(t *testing.T) {
	st := edgeStore(t)
	put(t, st, zkc(0, 100, 1_000_000, "a", false))
	es, err := st.Claims(context.Background(), -5000, -1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 0 {
		t.Errorf("Claims(-5000, -1000) = %d claims, want 0", len(es))
	}
}

func TestParseTime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"", 42, true},
		{"1764000000000", 1764000000000, true},
		{"2025-01-01T00:00:00Z", 1735689600000, true},
		{"2025-01-01T00:00:00.5+01:00", 1735686000500, true},
		{"-5", 0, false},
		{"1969-12-31T00:00:00Z", 0, false},
		{"yesterday", 0, false},
	} {
		got, err := reconcile.ParseTime(tc.in, 42)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseTime(%q) = %d, %v; want %d (ok %v)", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// Tombstones of other IDs and second records of a counter on an embedded
// store (records keyed by ID hold both): a null compensation of another
// ID of an issued counter leaves it issued in its record's state; a
// registration over another ID's tombstone is issued once; a second
// registered record is issued twice, whichever of the two a transition
// changes. Each report is deep, and finds the maps saying what the
// records are.
func TestEdgeTombstonesAndRepeats(t *testing.T) {
	ctx := context.Background()
	const ms = 1_764_000_000_000
	other := func(c uint64) idcodec.ID {
		return idcodec.MustCompose(idcodec.Fields{TimestampMS: ms + 1, Worker: 2, Shard: shard, Counter: c})
	}
	own := func(c uint64) idcodec.ID {
		return idcodec.MustCompose(idcodec.Fields{TimestampMS: ms, Worker: 1, Shard: shard, Counter: c})
	}
	null := registry.Change{To: registry.Compensated, Reason: "lost", Actor: "svc", NowMS: ms + 5}
	commit := registry.Change{To: registry.Committed, Actor: "svc", NowMS: ms + 5}
	for _, tt := range []struct {
		name                                  string
		steps                                 func(t *testing.T, st *pebblestore.Store)
		issued, pending, committed, tombstone uint64
		twice                                 int
	}{
		{"null compensation of another ID of an issued counter", func(t *testing.T, st *pebblestore.Store) {
			reg(t, st, ms, 5)
			mustTransition(t, st, other(5), null)
		}, 1, 1, 0, 0, 0},
		{"registration over another ID's tombstone", func(t *testing.T, st *pebblestore.Store) {
			mustTransition(t, st, other(5), null)
			reg(t, st, ms, 5)
		}, 1, 1, 0, 0, 0},
		{"a tombstone alone", func(t *testing.T, st *pebblestore.Store) {
			mustTransition(t, st, other(5), null)
		}, 0, 0, 0, 1, 0},
		{"two records, the older committed", func(t *testing.T, st *pebblestore.Store) {
			reg(t, st, ms, 5)
			reg(t, st, ms+1, 5)
			mustTransition(t, st, own(5), commit)
		}, 1, 0, 1, 0, 1},
		{"two records, the newer committed", func(t *testing.T, st *pebblestore.Store) {
			reg(t, st, ms, 5)
			reg(t, st, ms+1, 5)
			mustTransition(t, st, idcodec.MustCompose(idcodec.Fields{TimestampMS: ms + 1, Worker: 1, Shard: shard, Counter: 5}), commit)
		}, 1, 0, 1, 0, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := edgeStore(t)
			put(t, st, zkc(0, 100, ms, "a", false))
			tt.steps(t, st)
			rep, err := reconcile.Run(ctx, st, reconcile.Query{Shard: shard, FromMS: ms, ToMS: ms, NowMS: ms + 10, Deep: true})
			if err != nil {
				t.Fatal(err)
			}
			got := rep.Totals
			twice := 0
			for _, v := range rep.Violations {
				switch v.Kind {
				case reconcile.IssuedTwice:
					twice++
				default:
					t.Errorf("violation %+v", v)
				}
			}
			if got.Issued != tt.issued || got.Pending != tt.pending || got.Committed != tt.committed || got.Tombstones != tt.tombstone || twice != tt.twice {
				t.Fatalf("issued %d pending %d committed %d tombstones %d, issued twice %d; want %d %d %d %d, %d",
					got.Issued, got.Pending, got.Committed, got.Tombstones, twice, tt.issued, tt.pending, tt.committed, tt.tombstone, tt.twice)
			}
		})
	}
}

func mustTransition(t *testing.T, st *pebblestore.Store, id idcodec.ID, ch registry.Change) {
	t.Helper()
	if _, _, err := st.Transition(context.Background(), id, ch); err != nil {
		t.Fatal(err)
	}
}
