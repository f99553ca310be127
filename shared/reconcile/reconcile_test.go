package reconcile_test

import (
	"context"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/idgen/idgen/shared/generator"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/reconcile"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/pebblestore"
	"github.com/idgen/idgen/shared/saga"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const shard = 5

// instance is one run of the generator over the store's clock-floor
// counter, its claims recorded by a Recorder.
type instance struct {
	gen *generator.Generator
	rec *reconcile.Recorder
}

func start(t *testing.T, st *pebblestore.Store, name string, worker uint16) *instance {
	t.Helper()
	rec, err := reconcile.NewRecorder(reconcile.RecorderConfig{
		Source: generator.NewClockFloor(st, time.Now), Ledger: st, Kind: registry.SourceClockFloor,
		Shard: shard, Instance: name, Worker: generator.FixedWorker(worker), Log: zaptest.NewLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	gen, err := generator.New(rec, generator.FixedWorker(worker), generator.Config{
		Shard: shard, InitialStep: 1000, MinStep: 1000, MaxStep: 1000, MaxBatch: 600, Released: rec.Released,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &instance{gen: gen, rec: rec}
}

// issue registers n IDs in batches of size (as the HTTP API does).
func issue(t *testing.T, st *pebblestore.Store, in *instance, n, size int) []idcodec.ID {
	t.Helper()
	ctx := context.Background()
	var all []idcodec.ID
	for len(all) < n {
		ids, err := in.gen.NextN(ctx, min(size, n-len(all)), nil)
		if err != nil {
			t.Fatal(err)
		}
		var iss registry.Issue
		for _, id := range ids {
			ms := int64(id.Decompose().TimestampMS)
			iss.Records = append(iss.Records, registry.Record{ID: id, State: registry.Pending, IssuedAtMS: ms, Subject: "svc",
				History: []registry.Step{{State: registry.Pending, AtMS: ms, Actor: "svc"}}})
		}
		if _, err := st.Register(ctx, iss, 60_000, time.Now().UnixMilli()); err != nil {
			t.Fatal(err)
		}
		all = append(all, ids...)
	}
	return all
}

func stop(t *testing.T, in *instance) {
	t.Helper()
	in.gen.Drain()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := in.rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestReconcileAccountsForEveryCounter: two runs of an embedded instance
// (the second after a clean stop), a third that "crashes" (never drains),
// single IDs and batches whose tails do not fit, commits and
// compensations by a client, a failure event and the sweeper: the report
// accounts for every counter, by state, by who compensated and by the
// reason it was never issued, with no violation; then each kind of
// tampering is reported.
func TestReconcileAccountsForEveryCounter(t *testing.T) {
	ctx := context.Background()
	st := edgeStore(t)
	from := time.Now().UnixMilli()

	a := start(t, st, "a", 1)
	ids := issue(t, st, a, 2500, 1)
	ids = append(ids, issue(t, st, a, 2000, 450)...)
	stop(t, a)
	b := start(t, st, "b", 2)
	ids = append(ids, issue(t, st, b, 700, 7)...)
	stop(t, b)
	crashed := start(t, st, "c", 3)
	ids = append(ids, issue(t, st, crashed, 300, 1)...)
	crashed.gen.Close()
	if err := crashed.rec.Close(ctx); err != nil {
		t.Fatal(err)
	}

	change := func(id idcodec.ID, ch registry.Change) {
		t.Helper()
		ch.NowMS = time.Now().UnixMilli()
		if _, _, err := st.Transition(ctx, id, ch); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		change(ids[i], registry.Change{To: registry.Committed, Actor: "svc"})
	}
	change(ids[0], registry.Change{To: registry.Compensated, Actor: "svc", Reason: "refund"})
	change(ids[20], registry.Change{To: registry.Compensated, Actor: "compensate:stream", Reason: "payment failed"})
	change(ids[21], registry.Change{To: registry.Compensated, Actor: saga.ActorSystem, Reason: saga.ReasonTimeout})
	change(ids[22], registry.Change{To: registry.Compensated, Actor: "svc"})
	to := time.Now().UnixMilli()

	rep, err := reconcile.Run(ctx, st, reconcile.Query{Shard: shard, FromMS: from, ToMS: to, Live: func(string) bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("violations %+v, unaccounted %d", rep.Violations, rep.Totals.Unaccounted)
	}
	tot := rep.Totals
	if tot.Issued != uint64(len(ids)) || tot.Pending != uint64(len(ids))-9-4 || tot.Committed != 9 || tot.Compensated != 4 {
		t.Fatalf("totals %+v, issued %d", tot, len(ids))
	}
	wantBy := map[string]uint64{reconcile.ByClient: 2, reconcile.ByFailureEvent: 1, reconcile.ByDeadline: 1}
	for k, v := range wantBy {
		if tot.CompensatedBy[k] != v {
			t.Fatalf("compensated by %v, want %v", tot.CompensatedBy, wantBy)
		}
	}
	var notIssued uint64
	for _, v := range tot.NotIssued {
		notIssued += v
	}
	if tot.Issued+notIssued != tot.Size {
		t.Fatalf("issued %d + not issued %v != size %d", tot.Issued, tot.NotIssued, tot.Size)
	}
	for _, why := range []string{registry.ReleasedAtShutdown, registry.ReleasedBatchTail, reconcile.Abandoned} {
		if tot.NotIssued[why] == 0 {
			t.Fatalf("no counter not issued as %s: %v", why, tot.NotIssued)
		}
	}
	// The crashed instance's rest counts as held while it is said to run.
	if held, err := reconcile.Run(ctx, st, reconcile.Query{Shard: shard, FromMS: from, ToMS: to, Live: func(name string) bool { return name == "c" }}); err != nil ||
		held.Totals.NotIssued[reconcile.Held] != tot.NotIssued[reconcile.Abandoned] || held.Totals.NotIssued[reconcile.Abandoned] != 0 {
		t.Fatalf("with c running: %v, %v", held.Totals.NotIssued, err)
	}
	if len(rep.Gaps) != 2 {
		t.Fatalf("gaps %+v: want the clock-floor skips before the 2nd and 3rd run", rep.Gaps)
	}
	// A deep report reads every record and finds the maps say what they
	// are: the same account, no violation.
	deep, err := reconcile.Run(ctx, st, reconcile.Query{Shard: shard, FromMS: from, ToMS: to, Live: func(string) bool { return false }, Deep: true})
	if err != nil || !deep.OK() || !reflect.DeepEqual(deep.Claims, rep.Claims) || !reflect.DeepEqual(deep.Totals, rep.Totals) {
		t.Fatalf("deep report %+v, %v\nwant the claims and totals of %+v", deep, err, rep)
	}

	// Tampering, one kind at a time.
	last := rep.Claims[len(rep.Claims)-1]
	kinds := func(r *reconcile.Report) map[string]int {
		m := map[string]int{}
		for _, v := range r.Violations {
			m[v.Kind]++
		}
		return m
	}
	// An ID registered in the gap before the second run's first claim.
	gap := rep.Gaps[0]
	stray := idcodec.MustCompose(idcodec.Fields{TimestampMS: uint64(to), Worker: 9, Shard: shard, Counter: gap.Start + 1})
	if _, err := st.Register(ctx, registry.Issue{Records: []registry.Record{{ID: stray, State: registry.Pending, IssuedAtMS: to, Subject: "x"}}}, 60_000, to); err != nil {
		t.Fatal(err)
	}
	// A released counter of the first run that is also registered.
	var rel registry.Release
	for _, c := range rep.Claims {
		if c.Instance == "a" {
			entries, _ := st.Claims(ctx, c.AtMS, c.AtMS)
			for _, e := range entries {
				if len(e.Releases) > 0 {
					rel = e.Releases[0]
				}
			}
		}
	}
	if rel.End == 0 {
		t.Fatal("no release of run a found")
	}
	reused := idcodec.MustCompose(idcodec.Fields{TimestampMS: uint64(to), Worker: 1, Shard: shard, Counter: rel.Start})
	if _, err := st.Register(ctx, registry.Issue{Records: []registry.Record{{ID: reused, State: registry.Pending, IssuedAtMS: to, Subject: "x"}}}, 60_000, to); err != nil {
		t.Fatal(err)
	}
	// A ZooKeeper claim after a gap (an unrecorded claim), and one that
	// overlaps the last claim.
	zk := registry.Claim{Shard: shard, Start: last.End + 5000, End: last.End + 6000, Instance: "z", Source: registry.SourceZooKeeper, AtMS: to}
	over := registry.Claim{Shard: shard, Start: last.End + 5500, End: last.End + 7000, Instance: "z", Source: registry.SourceZooKeeper, AtMS: to}
	for _, c := range []registry.Claim{zk, over} {
		if err := st.RecordClaim(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	// A counter released twice.
	if err := st.RecordRelease(ctx, zk.Start, registry.Release{Start: zk.Start, End: zk.Start + 10, Reason: registry.ReleasedAtShutdown, AtMS: to}); err != nil {
		t.Fatal(err)
	}
	if err := st.RecordRelease(ctx, zk.Start, registry.Release{Start: zk.Start + 5, End: zk.Start + 20, Reason: registry.ReleasedPrefetch, AtMS: to}); err != nil {
		t.Fatal(err)
	}
	bad, err := reconcile.Run(ctx, st, reconcile.Query{Shard: shard, FromMS: from, ToMS: to, SharedLedger: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{
		reconcile.OutsideClaim: 1, reconcile.IssuedAndReleased: 1, reconcile.UnrecordedClaim: 1,
		reconcile.OverlappingClaims: 1, reconcile.ReleasedTwice: 1,
	}
	got := kinds(bad)
	for k, n := range want {
		if got[k] != n {
			t.Fatalf("violations %v (%+v), want %v", got, bad.Violations, want)
		}
	}
	if bad.OK() {
		t.Fatal("a tampered ledger reconciles OK")
	}
}

// TestRecorderHoldsBackUnrecordedClaims: a claim the ledger refuses is not
// handed out, and is recorded with a release of all of it once the ledger
// answers again.
func TestRecorderHoldsBackUnrecordedClaims(t *testing.T) {
	ctx := context.Background()
	st := edgeStore(t)
	fl := &flaky{Store: st}
	fl.down.Store(true)
	rec, err := reconcile.NewRecorder(reconcile.RecorderConfig{
		Source: generator.NewClockFloor(st, time.Now), Ledger: fl, Kind: registry.SourceClockFloor, Shard: shard, Instance: "a", Log: zaptest.NewLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = rec.ClaimRange(cctx, 1000)
	cancel()
	if err == nil {
		t.Fatal("a claim the ledger refused was handed out")
	}
	fl.down.Store(false)
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := rec.Close(fctx); err != nil {
		t.Fatal(err)
	}
	entries, err := st.Claims(ctx, 0, time.Now().UnixMilli())
	if err != nil || len(entries) != 1 || len(entries[0].Releases) != 1 || entries[0].Releases[0].Reason != registry.ReleasedUnused ||
		entries[0].Releases[0].Start != entries[0].Start || entries[0].Releases[0].End != entries[0].End {
		t.Fatalf("ledger %+v, %v: want the claim, released whole as never used", entries, err)
	}
}

type flaky struct {
	*pebblestore.Store
	down atomic.Bool
}

func (f *flaky) RecordClaim(ctx context.Context, c registry.Claim) error {
	if f.down.Load() {
		return registry.ErrUnavailable
	}
	return f.Store.RecordClaim(ctx, c)
}

// TestUnconfirmedClaims: an announcement that a confirmed claim overlaps
// does not count; one that none overlaps counts once, all of it
// claim_outcome_unknown, and explains the gap it fills; an ID registered
// in it is a violation.
func TestUnconfirmedClaims(t *testing.T) {
	ctx := context.Background()
	st := edgeStore(t)
	zk := func(start, end uint64, ms int64, unconfirmed bool) registry.Claim {
		return registry.Claim{Shard: shard, Start: start, End: end, Instance: "i", Source: registry.SourceZooKeeper, AtMS: ms, Unconfirmed: unconfirmed}
	}
	for _, c := range []registry.Claim{
		zk(0, 100, 1, true), zk(0, 100, 2, false), // announced, then confirmed
		zk(100, 200, 3, true), // lost to the other instance's claim below
		zk(100, 150, 4, true), zk(100, 150, 5, false),
		zk(150, 300, 6, true), zk(150, 300, 7, true), // announced twice, its process died
		zk(300, 400, 8, true), zk(300, 400, 9, false),
	} {
		if err := st.RecordClaim(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := reconcile.Run(ctx, st, reconcile.Query{Shard: shard, FromMS: 0, ToMS: 100, SharedLedger: true, NowMS: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || len(rep.Gaps) != 0 || len(rep.Claims) != 4 {
		t.Fatalf("claims %+v, gaps %+v, violations %+v", rep.Claims, rep.Gaps, rep.Violations)
	}
	if got := rep.Totals.NotIssued[reconcile.OutcomeUnknown]; got != 150 || rep.Totals.Size != 400 {
		t.Fatalf("totals %+v: want 150 counters of unknown outcome of 400", rep.Totals)
	}
	id := idcodec.MustCompose(idcodec.Fields{TimestampMS: 1, Worker: 1, Shard: shard, Counter: 160})
	if _, err := st.Register(ctx, registry.Issue{Records: []registry.Record{{ID: id, State: registry.Pending, IssuedAtMS: 1, Subject: "x"}}}, 60_000, 1); err != nil {
		t.Fatal(err)
	}
	if rep, err := reconcile.Run(ctx, st, reconcile.Query{Shard: shard, FromMS: 0, ToMS: 100, SharedLedger: true, NowMS: 1 << 40}); err != nil || len(rep.Violations) != 1 || rep.Violations[0].Kind != reconcile.OutsideClaim {
		t.Fatalf("an ID in an unconfirmed claim: %+v, %v", rep, err)
	}
}

// mapTamper serves the store's state maps with counter c's state set to
// st: a map that no longer says what the records are.
type mapTamper struct {
	*pebblestore.Store
	c  uint64
	st registry.CounterState
}

func (m mapTamper) StateMaps(ctx context.Context, from, to uint64, fn func(*registry.StateMap) error) error {
	return m.Store.StateMaps(ctx, from, to, func(sm *registry.StateMap) error {
		if registry.StateMapBucket(m.c) == sm.Bucket {
			sm.States[m.c%registry.StateMapSize] = m.st
		}
		return fn(sm)
	})
}

// TestDeepFindsTamperedMaps: the accounts come from the state maps alone;
// a deep report reads the records too and names every counter whose map
// says something else, with its ID.
func TestDeepFindsTamperedMaps(t *testing.T) {
	ctx := context.Background()
	st := edgeStore(t)
	from := time.Now().UnixMilli()
	a := start(t, st, "a", 1)
	ids := issue(t, st, a, 40, 1)
	stop(t, a)
	to := time.Now().UnixMilli()
	c0, last := ids[0].Decompose().Counter, ids[len(ids)-1].Decompose().Counter
	// An unissued counter in a bucket that has a map.
	free := last + 1
	if registry.StateMapBucket(free) != registry.StateMapBucket(last) {
		free = c0 - 1
	}
	q := reconcile.Query{Shard: shard, FromMS: from, ToMS: to}
	for _, tt := range []struct {
		name string
		c    uint64
		st   registry.CounterState
		id   string
	}{
		{"a committed map of a pending record", c0, registry.CounterCommitted, ids[0].String()},
		{"a free map of a record", c0, registry.CounterFree, ids[0].String()},
		{"a repeated map of one record", c0, registry.CounterPending | registry.CounterRepeated, ids[0].String()},
		{"a pending map where no record is", free, registry.CounterPending, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rd := mapTamper{Store: st, c: tt.c, st: tt.st}
			q.Deep = true
			rep, err := reconcile.Run(ctx, rd, q)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, v := range rep.Violations {
				if v.Kind == reconcile.StateMapMismatch {
					n++
					if v.Start != tt.c || v.ID != tt.id {
						t.Fatalf("mismatch %+v, want counter %d, ID %s", v, tt.c, tt.id)
					}
				}
			}
			if n != 1 || rep.OK() {
				t.Fatalf("deep report: %d mismatches of %+v, want 1", n, rep.Violations)
			}
			q.Deep = false
			if rep, err := reconcile.Run(ctx, rd, q); err != nil || len(rep.Violations) > 0 && rep.Violations[0].Kind == reconcile.StateMapMismatch {
				t.Fatalf("a report that is not deep: %+v, %v", rep, err)
			}
		})
	}
}
