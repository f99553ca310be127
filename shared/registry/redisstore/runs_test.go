package redisstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// stampedAt is the ID of counter c stamped at ms, of id's worker and
// shard: another ID than id(c) when ms is not testMS.
func stampedAt(ms, c uint64) idcodec.ID {
	return idcodec.MustCompose(idcodec.Fields{TimestampMS: ms, Worker: 7, Shard: 3, Counter: c})
}

// laterIDs is the IDs of counters lo..hi-1 stamped one millisecond after
// testMS: each holds the counter of id(c) with another ID.
func laterIDs(lo, hi uint64) []idcodec.ID {
	var out []idcodec.ID
	for c := lo; c < hi; c++ {
		out = append(out, stampedAt(testMS+1, c))
	}
	return out
}

// runsStore opens a Store of shard 3 (the shard of id), with the prefix
// of like when like is not nil: another writer (another nonce) of the
// same registry.
func runsStore(t *testing.T, like *Store) *Store {
	t.Helper()
	cfg := Config{Shard: 3, Retention: time.Hour}
	if like != nil {
		cfg.Prefix = like.cfg.Prefix
	}
	return open(t, cfg)
}

// runsStores opens two Stores (two nonces: each one's records collide with
// the other's) on one fresh registry.
func runsStores(t *testing.T) (a, b *Store) {
	t.Helper()
	a = runsStore(t, nil)
	return a, runsStore(t, a)
}

// runsRegister registers iss on s, failing t on any error.
func runsRegister(t *testing.T, s *Store, iss registry.Issue) {
	t.Helper()
	if _, err := s.Register(context.Background(), iss, 0, testMS); err != nil {
		t.Fatal(err)
	}
}

// runsBucket is what Redis holds for one bucket: its fields and its
// state map ("" when there is none).
type runsBucket struct {
	fields   map[string]string
	stateMap string
}

// runsState is the raw state of some buckets of a registry, of its
// deadline index and of its keys other than buckets and maps.
type runsState struct {
	buckets   map[uint64]runsBucket
	deadlines []string
	others    []string
}

// runsSnapshot reads buckets [from, to) of s's shard, their maps, the
// deadline index of shard 3 and the names of every other key of s's
// prefix (idempotency entries, say).
func runsSnapshot(t *testing.T, s *Store, from, to uint64) runsState {
	t.Helper()
	ctx := context.Background()
	out := runsState{buckets: map[uint64]runsBucket{}}
	for b := from; b < to; b++ {
		h, err := s.client.HGetAll(ctx, s.bucketKey(b)).Result()
		if err != nil {
			t.Fatal(err)
		}
		m, err := s.client.Get(ctx, s.stateKey(b)).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		out.buckets[b] = runsBucket{fields: h, stateMap: m}
	}
	d, err := s.client.ZRange(ctx, s.deadlineKey(3), 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	out.deadlines = d
	ks, err := s.client.Keys(ctx, s.cfg.Prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range ks {
		rest := strings.TrimPrefix(k, s.cfg.Prefix)
		if !strings.HasPrefix(rest, "r:{") && !strings.HasPrefix(rest, "s:{") && !strings.HasPrefix(rest, "deadlines:{") && !strings.HasPrefix(rest, "epoch") {
			out.others = append(out.others, rest)
		}
	}
	slices.Sort(out.others)
	return out
}

// runsSame fails t unless got is want, naming the first difference.
func runsSame(t *testing.T, what string, want, got runsState) {
	t.Helper()
	for b, w := range want.buckets {
		g := got.buckets[b]
		if !maps.Equal(w.fields, g.fields) {
			t.Fatalf("%s: bucket %d fields %s, want %s", what, b, runsDescribe(g.fields), runsDescribe(w.fields))
		}
		if w.stateMap != g.stateMap {
			t.Fatalf("%s: bucket %d map %s, want %s", what, b, runsMapBytes(g.stateMap), runsMapBytes(w.stateMap))
		}
	}
	if !slices.Equal(want.deadlines, got.deadlines) {
		t.Fatalf("%s: deadline index %q, want %q", what, got.deadlines, want.deadlines)
	}
	if !slices.Equal(want.others, got.others) {
		t.Fatalf("%s: other keys %q, want %q", what, got.others, want.others)
	}
}

// runsMapBytes is a state map as its non-zero bytes, offset:state each.
func runsMapBytes(m string) string {
	if m == "" {
		return "none"
	}
	var out []string
	for i := 0; i < len(m); i++ {
		if m[i] != 0 {
			out = append(out, fmt.Sprintf("%d:%d", i, m[i]))
		}
	}
	return fmt.Sprintf("%d bytes {%s}", len(m), strings.Join(out, " "))
}

// runsDescribe is a bucket's fields: their names, RunsField as its runs.
func runsDescribe(h map[string]string) string {
	var names []string
	for f, v := range h {
		if f == RunsField {
			names = append(names, "r="+runsSpansOf([]byte(v)))
		} else {
			names = append(names, f)
		}
	}
	slices.Sort(names)
	return "{" + strings.Join(names, " ") + "}"
}

// runsSpansOf is a RunsField value as its runs' offsets, "lo..hi" each, in
// the field's order.
func runsSpansOf(v []byte) string {
	rs, err := parseRuns(v)
	if err != nil {
		return "corrupt: " + err.Error()
	}
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprintf("%d..%d", r.lo, r.lo+r.n-1))
	}
	return strings.Join(out, " ")
}

// runsSpans is the runs of bucket b of s's shard (see runsSpansOf), "" for none.
func runsSpans(t *testing.T, s *Store, b uint64) string {
	t.Helper()
	v, err := s.client.HGet(context.Background(), s.bucketKey(b), RunsField).Bytes()
	if errors.Is(err, redis.Nil) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return runsSpansOf(v)
}

// wantRunSpans fails t unless bucket b's runs are want.
func wantRunSpans(t *testing.T, s *Store, b uint64, want string) {
	t.Helper()
	if got := runsSpans(t, s, b); got != want {
		t.Fatalf("bucket %d runs %q, want %q", b, got, want)
	}
}

// wantBucketFields fails t unless bucket b's fields are exactly want (RunsField
// included when it is in want).
func wantBucketFields(t *testing.T, s *Store, b uint64, want ...string) {
	t.Helper()
	got, err := s.client.HKeys(context.Background(), s.bucketKey(b)).Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("bucket %d fields %q, want %q", b, got, want)
	}
}

// wantRunState fails t unless Get of x is in state st (0: absent).
func wantRunState(t *testing.T, s *Store, x idcodec.ID, st registry.State) {
	t.Helper()
	rec, err := s.Get(context.Background(), x)
	switch {
	case st == 0 && !errors.Is(err, registry.ErrNotFound):
		t.Fatalf("counter %d: want absent, got %+v, %v", x.Decompose().Counter, rec, err)
	case st != 0 && (err != nil || rec.State != st):
		t.Fatalf("counter %d: want %s, got %+v, %v", x.Decompose().Counter, st, rec, err)
	}
}

// runsDelete deletes the record of x with a compare-and-set ('C' with an empty
// new value), as a Cluster rollback does, old being what x's counter held
// when read (its field, else its run). It returns whether the field held something
// else than old (nothing deleted).
func runsDelete(t *testing.T, s *Store, x idcodec.ID, old []byte) (mismatch bool) {
	t.Helper()
	key, field := s.bucket(x)
	o := &op{kind: opCAS, key: key, field: field, old: old, state: registry.CounterFree}
	if err := s.do(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	return o.mismatch
}

// runsValue is the raw value of x's record (its field, else its run).
func runsValue(t *testing.T, s *Store, x idcodec.ID) []byte {
	t.Helper()
	v, err := s.load(context.Background(), x)
	if err != nil || v == nil {
		t.Fatalf("counter %d: value %q, %v", x.Decompose().Counter, v, err)
	}
	return v
}

// A batch of one millisecond into free counters is one run per bucket and
// no field per counter: each bucket holds RunsField alone, its runs cover
// exactly the batch, and Get reads every record from them. A resend of the
// batch, or of a part of it (one record: the 'S' op; records across a
// bucket edge; a group inside the run), finds its own values and changes no
// byte of the buckets or their maps.
func TestRunsBatchIsRunsOnly(t *testing.T) {
	s := runsStore(t, nil)
	batch := ids(1, 301) // 1..127, 128..255, 256..300
	runsRegister(t, s, pending(batch...))
	for b, want := range []string{"1..127", "0..127", "0..44"} {
		wantBucketFields(t, s, uint64(b), RunsField)
		wantRunSpans(t, s, uint64(b), want)
	}
	wantRecords(t, s, "svc-payments", batch)
	wantRecords(t, s, "", ids(0, 1))
	wantRecords(t, s, "", ids(301, 384))

	before := runsSnapshot(t, s, 0, 3)
	for _, part := range [][]idcodec.ID{batch, ids(60, 70), ids(1, 2), ids(127, 129), ids(300, 301), ids(128, 256)} {
		if _, err := s.Register(context.Background(), pending(part...), 0, testMS); err != nil {
			t.Fatalf("resend of %d records from counter %d: %v", len(part), part[0].Decompose().Counter, err)
		}
		runsSame(t, fmt.Sprintf("resend of %d records from counter %d", len(part), part[0].Decompose().Counter), before, runsSnapshot(t, s, 0, 3))
	}
	checkStateMaps(t, s, 0, 3)
}

// Never a duplicate: a registration of any counter a run holds, by another
// Store (another nonce) or of another ID of the counter (another
// millisecond), is registry.ErrCollision and writes nothing (no field, no
// run, no map byte, no deadline, no idempotency entry). This holds for one
// record (the 'S' op) and several (the 'R' op), at a run's first, middle
// and last counters, for a group overlapping a run on either side, inside
// it, around it, or across a bucket edge (its first bucket's part free,
// written as a run, then undone), for a run in the middle of a bucket and
// one filling a bucket, for an issue holding two IDs of one counter, and
// for the null compensation of another ID of a held counter.
func TestRunsNeverDuplicate(t *testing.T) {
	a, b := runsStores(t)
	ctx := context.Background()
	runsRegister(t, a, pending(ids(40, 60)...))   // the middle of bucket 0
	runsRegister(t, a, pending(ids(128, 256)...)) // all of bucket 1
	runsRegister(t, a, pending(id(30)))           // a field of its own beside the run
	wantRunSpans(t, a, 0, "40..59")
	wantRunSpans(t, a, 1, "0..127")
	before := runsSnapshot(t, a, 0, 3)

	withExtras := func(iss registry.Issue) registry.Issue {
		for i := range iss.Records {
			iss.Records[i].DeadlineMS = testMS + 1000
		}
		iss.Idem = &registry.IdemEntry{KeyHash: registry.IdemKeyHash("svc-payments", "runs"), IDs: []idcodec.ID{iss.Records[0].ID}, CreatedMS: testMS}
		return iss
	}
	cases := []struct {
		name string
		s    *Store
		iss  registry.Issue
	}{
		{"one record at the run's first counter, another Store", b, pending(id(40))},
		{"one record at the run's last counter, another Store", b, pending(id(59))},
		{"one record inside the run, another ID", a, pending(laterIDs(50, 51)...)},
		{"one record at the first counter, another ID", a, pending(laterIDs(40, 41)...)},
		{"one record at the full bucket's first counter, another ID", a, pending(laterIDs(128, 129)...)},
		{"one record at the full bucket's last counter, another Store", b, pending(id(255))},
		{"two records, the held one last", b, pending(id(10), id(59))},
		{"two records, the held one first", a, pending(stampedAt(testMS+1, 40), stampedAt(testMS+1, 100))},
		{"a group over the run's first counter", b, pending(ids(30, 41)...)},
		{"a group over the run's last counter", b, pending(ids(59, 70)...)},
		{"a group inside the run", b, pending(ids(45, 50)...)},
		{"a group around the run, another ID", a, pending(laterIDs(35, 65)...)},
		{"a group around the run, another Store", b, pending(ids(0, 128)...)},
		{"a group across the bucket edge", b, pending(ids(100, 130)...)},
		{"a group from the full bucket into a free one", b, pending(ids(250, 260)...)},
		{"a free bucket's group, then the full bucket's", b, pending(append(ids(256, 260), ids(250, 256)...)...)},
		{"a group of another ID across the bucket edge", a, pending(laterIDs(120, 140)...)},
		{"a group with deadlines and an idempotency entry", b, withExtras(pending(ids(55, 65)...))},
		{"two IDs of the same counters in one issue", b, pending(append(ids(70, 72), laterIDs(70, 72)...)...)},
		{"a free group, then a field of the same bucket", b, pending(append(ids(80, 90), ids(30, 31)...)...)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := c.s.Register(ctx, c.iss, 60_000, testMS); !errors.Is(err, registry.ErrCollision) {
				t.Fatalf("want ErrCollision, got %v", err)
			}
			runsSame(t, "after the collision", before, runsSnapshot(t, a, 0, 3))
		})
	}
	if _, _, err := a.Transition(ctx, stampedAt(testMS+1, 45), registry.Change{To: registry.Compensated, Reason: "lost", NowMS: testMS + 1}); !errors.Is(err, registry.ErrCollision) {
		t.Fatalf("null compensation of another ID of a held counter: %v", err)
	}
	runsSame(t, "after the null compensation", before, runsSnapshot(t, a, 0, 3))
	wantRecords(t, a, "svc-payments", append(append(ids(40, 60), id(30)), ids(128, 256)...))
	checkStateMaps(t, a, 0, 3)
}

// A bucket without its map (written by an idgen before state maps) is
// written field by field, and each field is checked against the runs: a
// registration over a run's counters collides and adds no field and no
// run, whichever counter of the run it meets first.
func TestRunsCollideWithoutMap(t *testing.T) {
	a, b := runsStores(t)
	ctx := context.Background()
	runsRegister(t, a, pending(ids(40, 60)...))
	for _, iss := range []registry.Issue{pending(ids(30, 41)...), pending(ids(59, 70)...), pending(id(50)), pending(laterIDs(45, 50)...), pending(ids(0, 128)...)} {
		// Each attempt finds the bucket without a map.
		if err := a.client.Del(ctx, a.stateKey(0)).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Register(ctx, iss, 0, testMS); !errors.Is(err, registry.ErrCollision) {
			t.Fatalf("registration of counters %d..: want ErrCollision, got %v", iss.Records[0].ID.Decompose().Counter, err)
		}
		wantBucketFields(t, a, 0, RunsField)
		wantRunSpans(t, a, 0, "40..59")
	}
	wantRecords(t, a, "svc-payments", ids(40, 60))
}

// A transition of a run member writes that counter's field over the run,
// and the run stays as it was: Get of the member is its new state while its
// neighbours stay pending; a later transition of it compares against its
// field; a replay writes nothing; a transition with From finds the
// field's state. ScanCounters yields every counter of the bucket exactly
// once, in its field's state when it has one, else its run's, and the maps
// agree.
func TestRunsTransitionOverlay(t *testing.T) {
	a := runsStore(t, nil)
	other := runsStore(t, a) // commits across Stores compare against the same values
	ctx := context.Background()
	runsRegister(t, a, pending(ids(1, 21)...))
	run, err := a.client.HGet(ctx, a.bucketKey(0), RunsField).Result()
	if err != nil {
		t.Fatal(err)
	}
	step := func(s *Store, c uint64, to registry.State, want registry.Outcome) {
		t.Helper()
		ch := registry.Change{To: to, Actor: "svc-payments", NowMS: testMS + 1}
		if to == registry.Compensated {
			ch.Reason = "declined"
		}
		if _, out, err := s.Transition(ctx, id(c), ch); err != nil || out != want {
			t.Fatalf("counter %d to %s: %v, %v; want %v", c, to, out, err, want)
		}
	}
	step(a, 5, registry.Committed, registry.Applied)
	step(a, 6, registry.Compensated, registry.Applied)
	step(a, 7, registry.Committed, registry.Applied)
	step(other, 7, registry.Compensated, registry.Applied) // over the field
	step(other, 1, registry.Committed, registry.Applied)   // the run's first
	step(a, 20, registry.Compensated, registry.Applied)    // the run's last
	wantBucketFields(t, a, 0, RunsField, "1", "5", "6", "7", "20")
	if got := a.client.HGet(ctx, a.bucketKey(0), RunsField).Val(); got != run {
		t.Fatalf("transitions changed the run: %s, was %s", runsSpansOf([]byte(got)), runsSpansOf([]byte(run)))
	}

	want := map[uint64]registry.State{1: registry.Committed, 5: registry.Committed, 6: registry.Compensated, 7: registry.Compensated, 20: registry.Compensated}
	for c := uint64(1); c <= 20; c++ {
		if _, ok := want[c]; !ok {
			want[c] = registry.Pending
		}
	}
	for c, st := range want {
		wantRunState(t, a, id(c), st)
	}
	wantRunState(t, a, id(0), 0)
	wantRunState(t, a, id(21), 0)

	before := runsSnapshot(t, a, 0, 1)
	step(other, 5, registry.Committed, registry.Replayed)
	step(a, 6, registry.Compensated, registry.Replayed)
	if _, _, err := a.Transition(ctx, id(5), registry.Change{To: registry.Compensated, From: registry.Pending, Reason: "timeout", Actor: registry.ActorSystem, NowMS: testMS + 2}); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("deadline compensation of a committed run member: %v", err)
	}
	if _, _, err := a.Transition(ctx, id(6), registry.Change{To: registry.Committed, NowMS: testMS + 2}); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("commit of a compensated run member: %v", err)
	}
	runsSame(t, "replays and refused transitions", before, runsSnapshot(t, a, 0, 1))

	for _, r := range [][2]uint64{{0, 128}, {5, 8}, {0, 1 << 12}} {
		seen := map[uint64]int{}
		err := a.ScanCounters(ctx, r[0], r[1], func(rec registry.Record) error {
			c := rec.ID.Decompose().Counter
			seen[c]++
			if rec.ID != id(c) {
				t.Errorf("scan: counter %d as %s, want %s", c, rec.ID, id(c))
			}
			if rec.State != want[c] {
				t.Errorf("scan: counter %d %s, want %s", c, rec.State, want[c])
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for c := range want {
			if n := seen[c]; (c >= r[0] && c < r[1]) != (n == 1) || n > 1 {
				t.Errorf("scan [%d, %d): counter %d seen %d times", r[0], r[1], c, n)
			}
		}
		for c := range seen {
			if _, ok := want[c]; !ok {
				t.Errorf("scan [%d, %d): counter %d, which holds no record", r[0], r[1], c)
			}
		}
	}
	checkStateMaps(t, a, 0, 1)
}

// A compare-and-set delete of a run member (what a Cluster rollback does)
// takes the counter out of its run: the run splits (or shrinks, at its
// first or last counter, or goes, at its only one), the member's overlay
// field goes with it, Get of it is ErrNotFound, its neighbours are intact
// and its map byte is free. The freed counter is free for any ID; its
// neighbours still collide. A delete that finds another value deletes
// nothing; one that empties the bucket removes the bucket and its map.
func TestRunsDelete(t *testing.T) {
	a, b := runsStores(t)
	ctx := context.Background()
	runsRegister(t, a, pending(ids(5, 16)...))
	wantRunSpans(t, a, 0, "5..15")

	if runsDelete(t, a, id(10), runsValue(t, a, id(10))) {
		t.Fatal("delete of counter 10: mismatch")
	}
	wantRunSpans(t, a, 0, "5..9 11..15")
	wantBucketFields(t, a, 0, RunsField)
	wantRunState(t, a, id(10), 0)
	wantRecords(t, a, "svc-payments", append(ids(5, 10), ids(11, 16)...))
	if row := checkStateMaps(t, a, 0, 1)[0]; row[10] != registry.CounterFree || row[9] != registry.CounterPending || row[11] != registry.CounterPending {
		t.Fatalf("map bytes 9..11: %v", row[9:12])
	}

	for _, c := range []uint64{5, 15} {
		if runsDelete(t, a, id(c), runsValue(t, a, id(c))) {
			t.Fatalf("delete of counter %d: mismatch", c)
		}
	}
	wantRunSpans(t, a, 0, "6..9 11..14")

	// A delete of a member with a field over its run (a commit) removes both.
	if _, _, err := a.Transition(ctx, id(8), registry.Change{To: registry.Committed, NowMS: testMS + 1}); err != nil {
		t.Fatal(err)
	}
	before := runsSnapshot(t, a, 0, 1)
	if !runsDelete(t, a, id(8), []byte("not the value")) {
		t.Fatal("delete with the wrong old value: no mismatch")
	}
	if !runsDelete(t, a, id(9), runsValue(t, a, id(8))) {
		t.Fatal("delete of counter 9 with counter 8's value: no mismatch")
	}
	if !runsDelete(t, a, id(8), runsValue(t, a, id(7))) {
		t.Fatal("delete of a committed member with its run's value: no mismatch")
	}
	runsSame(t, "mismatched deletes", before, runsSnapshot(t, a, 0, 1))
	if runsDelete(t, a, id(8), runsValue(t, a, id(8))) {
		t.Fatal("delete of the committed counter 8: mismatch")
	}
	wantBucketFields(t, a, 0, RunsField)
	wantRunSpans(t, a, 0, "6..7 9..9 11..14")
	wantRunState(t, a, id(8), 0)
	if runsDelete(t, a, id(9), runsValue(t, a, id(9))) {
		t.Fatal("delete of counter 9: mismatch")
	}
	wantRunSpans(t, a, 0, "6..7 11..14")
	wantRecords(t, a, "svc-payments", append(ids(6, 8), ids(11, 15)...))
	wantRecords(t, a, "", append(append(ids(0, 6), ids(8, 11)...), ids(15, 128)...))
	checkStateMaps(t, a, 0, 1)

	// Freed counters take any ID; held ones do not.
	for _, x := range []idcodec.ID{stampedAt(testMS+1, 10), stampedAt(testMS+1, 5)} {
		if _, err := b.Register(ctx, pending(x), 0, testMS); err != nil {
			t.Fatalf("registration of freed counter %d: %v", x.Decompose().Counter, err)
		}
	}
	for _, iss := range []registry.Issue{pending(laterIDs(11, 12)...), pending(laterIDs(7, 8)...), pending(ids(14, 15)...), pending(laterIDs(8, 12)...)} {
		if _, err := b.Register(ctx, iss, 0, testMS); !errors.Is(err, registry.ErrCollision) {
			t.Fatalf("registration of counters %d..%d beside freed ones: %v", iss.Records[0].ID.Decompose().Counter, iss.Records[len(iss.Records)-1].ID.Decompose().Counter, err)
		}
	}
	runsRegister(t, b, pending(laterIDs(8, 10)...)) // free, written as a run
	wantRunSpans(t, a, 0, "6..7 11..14 8..9")
	wantRunState(t, a, stampedAt(testMS+1, 8), registry.Pending)
	wantRunState(t, a, stampedAt(testMS+1, 10), registry.Pending)
	wantRunState(t, a, id(10), 0)
	checkStateMaps(t, a, 0, 1)

	// Emptying the bucket removes it and its map.
	for _, x := range append(append(ids(6, 8), ids(11, 15)...), laterIDs(8, 11)...) {
		if runsDelete(t, a, x, runsValue(t, a, x)) {
			t.Fatalf("delete of counter %d: mismatch", x.Decompose().Counter)
		}
	}
	if runsDelete(t, a, stampedAt(testMS+1, 5), runsValue(t, a, stampedAt(testMS+1, 5))) {
		t.Fatal("delete of counter 5: mismatch")
	}
	if n := a.client.Exists(ctx, a.bucketKey(0), a.stateKey(0)).Val(); n != 0 {
		t.Fatalf("an emptied bucket: %d of its keys remain (%s)", n, runsDescribe(a.client.HGetAll(ctx, a.bucketKey(0)).Val()))
	}
	checkStateMaps(t, a, 0, 1)
}

// A registration that collides after writing runs leaves nothing: each
// bucket's RunsField is again what it was before the registration (absent,
// or the runs of earlier registrations, restored and not deleted), when the
// collision is in a later bucket or in the same bucket, after one group or
// after several; the maps are unchanged, and the counters it wrote are
// free for the next registration.
func TestRunsRollback(t *testing.T) {
	cases := []struct {
		name   string
		setup  []registry.Issue // by a
		commit uint64           // a counter of setup committed after it (0: none)
		iss    registry.Issue   // by b: collides
		after  registry.Issue   // by b: free once iss is undone
	}{
		{
			name:  "a fresh bucket, the collision in the next",
			setup: []registry.Issue{pending(ids(129, 131)...)},
			iss:   pending(ids(100, 131)...),
			after: pending(ids(100, 128)...),
		},
		{
			name:  "a bucket with an earlier run, the collision in the next",
			setup: []registry.Issue{pending(ids(10, 21)...), pending(id(30)), pending(ids(128, 136)...)},
			iss:   pending(ids(100, 131)...),
			after: pending(ids(100, 128)...),
		},
		{
			name:  "two groups in a bucket with an earlier run, the collision in the next",
			setup: []registry.Issue{pending(ids(10, 21)...), pending(ids(128, 136)...)},
			iss:   pending(append(append(ids(60, 71), ids(80, 91)...), ids(135, 136)...)...),
			after: pending(append(ids(60, 71), ids(80, 91)...)...),
		},
		{
			name:  "a group, then a collision in the same bucket",
			setup: []registry.Issue{pending(ids(10, 21)...)},
			iss:   pending(append(ids(60, 71), ids(15, 16)...)...),
			after: pending(ids(60, 71)...),
		},
		{
			name:  "groups in two buckets, then a collision in the first",
			setup: []registry.Issue{pending(ids(10, 21)...), pending(ids(200, 210)...)},
			iss:   pending(append(append(ids(60, 71), ids(140, 150)...), laterIDs(20, 22)...)...),
			after: pending(append(ids(60, 71), ids(140, 150)...)...),
		},
		{
			name:   "a counter of a run with a field over it",
			setup:  []registry.Issue{pending(ids(10, 21)...), pending(ids(128, 140)...)},
			commit: 130,
			iss:    pending(append(ids(120, 128), id(130))...),
			after:  pending(ids(120, 128)...),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := runsStores(t)
			ctx := context.Background()
			for _, iss := range tc.setup {
				runsRegister(t, a, iss)
			}
			if tc.commit != 0 {
				if _, _, err := a.Transition(ctx, id(tc.commit), registry.Change{To: registry.Committed, NowMS: testMS + 1}); err != nil {
					t.Fatal(err)
				}
			}
			before := runsSnapshot(t, a, 0, 3)
			runs := map[uint64]string{0: runsSpans(t, a, 0), 1: runsSpans(t, a, 1)}
			if _, err := b.Register(ctx, tc.iss, 60_000, testMS); !errors.Is(err, registry.ErrCollision) {
				t.Fatalf("want ErrCollision, got %v", err)
			}
			runsSame(t, "after the collision", before, runsSnapshot(t, a, 0, 3))
			for bk, want := range runs {
				wantRunSpans(t, a, bk, want)
			}
			checkStateMaps(t, a, 0, 3)
			if _, err := b.Register(ctx, tc.after, 0, testMS); err != nil {
				t.Fatalf("the undone counters: %v", err)
			}
			wantRecords(t, b, "svc-payments", func() []idcodec.ID {
				var out []idcodec.ID
				for _, r := range tc.after.Records {
					out = append(out, r.ID)
				}
				return out
			}())
			checkStateMaps(t, a, 0, 3)
		})
	}
}

// Registrations of one flush that overlap: the first writes its run, the
// second collides wherever it meets it (a group over its head or tail,
// inside it, around it, one record at its first or last counter) and
// writes nothing; a registration after one that collided and was undone
// in the same flush finds its counters free. The maps say what the
// buckets hold.
func TestRunsOverlapInOneFlush(t *testing.T) {
	first := issuedBy("a", ids(10, 30))
	cases := []struct {
		name   string
		second registry.Issue
	}{
		{"over the tail", issuedBy("b", ids(25, 40))},
		{"over the head", issuedBy("b", ids(2, 11))},
		{"inside", issuedBy("b", ids(15, 20))},
		{"around", issuedBy("b", ids(0, 128))},
		{"the first counter", issuedBy("b", ids(10, 11))},
		{"the last counter", issuedBy("b", ids(29, 30))},
		{"another ID of the last counters", pending(laterIDs(28, 32)...)},
		{"across the bucket edge", issuedBy("b", append(ids(120, 140), ids(29, 30)...))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := runsStore(t, nil)
			batch := []*op{edgeOp(s, first), edgeOp(s, tc.second)}
			s.flush(batch)
			if batch[0].err != nil || !errors.Is(batch[1].err, registry.ErrCollision) {
				t.Fatalf("errors %v / %v; want nil / ErrCollision", batch[0].err, batch[1].err)
			}
			wantRecords(t, s, "a", ids(10, 30))
			wantRecords(t, s, "", append(ids(0, 10), ids(30, 256)...))
			wantBucketFields(t, s, 0, RunsField)
			wantRunSpans(t, s, 0, "10..29")
			checkStateMaps(t, s, 0, 2)
		})
	}

	t.Run("after an undone registration", func(t *testing.T) {
		s := runsStore(t, nil)
		runsRegister(t, s, issuedBy("z", ids(130, 131)))
		batch := []*op{edgeOp(s, issuedBy("a", ids(100, 131))), edgeOp(s, issuedBy("b", ids(110, 120))), edgeOp(s, issuedBy("c", ids(100, 110)))}
		s.flush(batch)
		if !errors.Is(batch[0].err, registry.ErrCollision) || batch[1].err != nil || batch[2].err != nil {
			t.Fatalf("errors %v / %v / %v; want ErrCollision / nil / nil", batch[0].err, batch[1].err, batch[2].err)
		}
		wantRecords(t, s, "c", ids(100, 110))
		wantRecords(t, s, "b", ids(110, 120))
		wantRecords(t, s, "", ids(120, 130))
		checkStateMaps(t, s, 0, 2)
	})
}

// Concurrent registrations of overlapping batches through one Store (in
// one flush or in two): exactly one succeeds, its records are all held,
// and the loser's counters outside the winner's are free.
func TestRunsConcurrentOverlap(t *testing.T) {
	s := runsStore(t, nil)
	ctx := context.Background()
	for round := range uint64(24) {
		lo := round * 40 // 40 counters a round; some rounds cross a bucket edge (3: 120..149)
		subj := [2]string{"a", "b"}
		batches := [2][]idcodec.ID{ids(lo, lo+20), ids(lo+10, lo+30)}
		var errs [2]error
		var wg sync.WaitGroup
		for i := range 2 {
			wg.Go(func() { _, errs[i] = s.Register(ctx, issuedBy(subj[i], batches[i]), 0, testMS) })
		}
		wg.Wait()
		won := -1
		for i, err := range errs {
			switch {
			case err == nil && won < 0:
				won = i
			case err == nil:
				t.Fatalf("round %d: both registrations succeeded", round)
			case !errors.Is(err, registry.ErrCollision):
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if won < 0 {
			t.Fatalf("round %d: both collided: %v", round, errs)
		}
		wantRecords(t, s, subj[won], batches[won])
		if won == 0 {
			wantRecords(t, s, "", ids(lo+20, lo+30))
		} else {
			wantRecords(t, s, "", ids(lo, lo+10))
		}
	}
	checkStateMaps(t, s, 0, 24*40>>bucketBits+1)
}

// A bucket that holds records without a map gets no map from a later call
// (one with only that call's bytes would tell the other held counters
// free): after a collision on it, a registration over its run still
// collides.
func TestRunsMaplessBucketCollision(t *testing.T) {
	a, b := runsStores(t)
	ctx := context.Background()
	runsRegister(t, a, pending(ids(40, 60)...))
	if err := a.client.Del(ctx, a.stateKey(0)).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Register(ctx, pending(ids(30, 41)...), 0, testMS); !errors.Is(err, registry.ErrCollision) {
		t.Fatalf("first: %v", err)
	}
	t.Logf("map after the first collision: %s", runsMapBytes(a.client.Get(ctx, a.stateKey(0)).Val()))
	if _, err := b.Register(ctx, pending(ids(45, 50)...), 0, testMS); !errors.Is(err, registry.ErrCollision) {
		t.Fatalf("second registration over a's run: want ErrCollision, got %v; bucket %s", err, runsDescribe(a.client.HGetAll(ctx, a.bucketKey(0)).Val()))
	}
}

// The same with a bucket of fields without a map (written record by record
// by an idgen before state maps) and an unrelated registration into it.
func TestRunsLegacyBucket(t *testing.T) {
	a, b := runsStores(t)
	ctx := context.Background()
	for c := uint64(40); c < 50; c++ {
		runsRegister(t, a, pending(id(c))) // one field each
	}
	if err := a.client.Del(ctx, a.stateKey(0)).Err(); err != nil {
		t.Fatal(err)
	}
	runsRegister(t, b, pending(id(100))) // the bucket gets a map: {100}
	t.Logf("map after an unrelated registration: %s", runsMapBytes(a.client.Get(ctx, a.stateKey(0)).Val()))
	if _, err := b.Register(ctx, pending(ids(40, 50)...), 0, testMS); !errors.Is(err, registry.ErrCollision) {
		t.Fatalf("registration over a's fields: want ErrCollision, got %v; bucket %s", err, runsDescribe(a.client.HGetAll(ctx, a.bucketKey(0)).Val()))
	}
}

// A group whose value is 65536 bytes or more cannot be a run (a run's
// value length is 2 bytes): it is written field by field.
func TestRunsLongValue(t *testing.T) {
	s := runsStore(t, nil)
	ctx := context.Background()
	iss := pending(id(1), id(2))
	for i := range iss.Records {
		iss.Records[i].Metadata = make([]byte, 70_000)
	}
	if _, err := s.Register(ctx, pending(id(3)), 0, testMS); err != nil {
		t.Fatal(err)
	}
	one := pending(id(5))
	one.Records[0].Metadata = make([]byte, 70_000)
	if _, err := s.Register(ctx, one, 0, testMS); err != nil {
		t.Fatalf("one record with 70 kB of metadata: %v", err)
	}
	if _, err := s.Register(ctx, iss, 0, testMS); err != nil {
		t.Fatalf("two records with 70 kB of metadata: %v", err)
	}
}

// A complete map that tells held counters free (all zero bytes: what an
// older idgen left when it padded a map it made for a bucket of older
// records) never lets a group be written over them: a group the map
// passes is checked against the bucket's fields and runs, and collides.
func TestRunsWrongMap(t *testing.T) {
	for _, tc := range []struct {
		name string
		held registry.Issue // a's records, in counters 40..59
	}{
		{"fields", pending(id(40), id(45), id(59))},
		{"run", pending(ids(40, 60)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := runsStores(t)
			ctx := context.Background()
			if tc.name == "run" {
				runsRegister(t, a, tc.held)
			} else {
				for _, r := range tc.held.Records {
					runsRegister(t, a, registry.Issue{Records: []registry.Record{r}})
				}
			}
			if err := a.client.Set(ctx, a.stateKey(0), strings.Repeat("\x00", registry.StateMapSize), 0).Err(); err != nil {
				t.Fatal(err)
			}
			before := a.client.HGetAll(ctx, a.bucketKey(0)).Val()
			for _, batch := range [][2]uint64{{30, 41}, {45, 50}, {55, 70}} {
				if _, err := b.Register(ctx, pending(ids(batch[0], batch[1])...), 0, testMS+1); !errors.Is(err, registry.ErrCollision) {
					t.Fatalf("batch %d..%d over a's records: want ErrCollision, got %v", batch[0], batch[1]-1, err)
				}
			}
			if after := a.client.HGetAll(ctx, a.bucketKey(0)).Val(); !maps.Equal(before, after) {
				t.Fatalf("bucket changed by collisions:\nbefore %q\nafter  %q", before, after)
			}
			for _, r := range tc.held.Records {
				if got, err := a.Get(ctx, r.ID); err != nil || got.State != registry.Pending {
					t.Fatalf("%s: %+v, %v", r.ID, got, err)
				}
			}
		})
	}
}
