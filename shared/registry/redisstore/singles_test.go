package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// singles is one op per ID of ids, each a one-record registration by
// subject (one value for all: one millisecond, one subject).
func singles(s *Store, subject string, ids []idcodec.ID) []*op {
	var out []*op
	for _, x := range ids {
		out = append(out, edgeOp(s, issuedBy(subject, []idcodec.ID{x})))
	}
	return out
}

// flushWant flushes batch in one call and fails t unless exactly the
// ops of the counters in collide failed, with ErrCollision.
func flushWant(t *testing.T, s *Store, batch []*op, collide ...uint64) {
	t.Helper()
	s.flush(batch)
	for _, o := range batch {
		c := o.iss.Records[0].ID.Decompose().Counter
		want := slices.Contains(collide, c)
		if got := errors.Is(o.err, registry.ErrCollision); got != want || (!got && o.err != nil) {
			t.Fatalf("counter %d: error %v, want collision %v", c, o.err, want)
		}
	}
}

// One-record registrations of one flush with consecutive counters and one
// value are stored as runs ('G'), each answered on its own: a counter
// another writer holds makes its group fields, and collides alone; a
// stretch of them queued out of order is sent in order of counter, while
// other ops keep their place; records of other values, or not
// consecutive, or in two buckets, are fields of their own; a resend of
// the flush finds its own values and changes no byte.
func TestRunsOfSingles(t *testing.T) {
	t.Run("consecutive", func(t *testing.T) {
		s := runsStore(t, nil)
		batch := append(singles(s, "a", ids(10, 41)), singles(s, "a", ids(120, 136))...)
		flushWant(t, s, batch)
		wantBucketFields(t, s, 0, RunsField)
		wantRunSpans(t, s, 0, "10..40 120..127")
		wantBucketFields(t, s, 1, RunsField)
		wantRunSpans(t, s, 1, "0..7")
		wantRecords(t, s, "a", append(ids(10, 41), ids(120, 136)...))
		wantRecords(t, s, "", append(ids(0, 10), ids(41, 120)...))
		checkStateMaps(t, s, 0, 2)

		before := runsSnapshot(t, s, 0, 2)
		flushWant(t, s, append(singles(s, "a", ids(10, 41)), singles(s, "a", ids(120, 136))...))
		runsSame(t, "resend", before, runsSnapshot(t, s, 0, 2))
	})

	for _, tc := range []struct {
		name     string
		held     [2]uint64 // b's counters
		lo, hi   uint64    // a's
		collides []uint64
	}{
		{"a held counter", [2]uint64{20, 21}, 10, 31, []uint64{20}},
		{"a held run", [2]uint64{20, 25}, 18, 27, []uint64{20, 21, 22, 23, 24}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := runsStores(t)
			runsRegister(t, b, issuedBy("b", ids(tc.held[0], tc.held[1])))
			flushWant(t, a, singles(a, "a", ids(tc.lo, tc.hi)), tc.collides...)
			wantRecords(t, a, "a", append(ids(tc.lo, tc.held[0]), ids(tc.held[1], tc.hi)...))
			wantRecords(t, a, "b", ids(tc.held[0], tc.held[1]))
			checkStateMaps(t, a, 0, 1)
		})
	}

	t.Run("queued out of order", func(t *testing.T) {
		a, b := runsStores(t)
		runsRegister(t, b, issuedBy("b", ids(20, 21)))
		batch := singles(a, "a", ids(10, 31))
		batch = append(batch, singles(a, "c", ids(40, 44))...)
		rand.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
		batch = append([]*op{edgeOp(a, issuedBy("d", ids(50, 52)))}, batch...)
		// another kind of op keeps its place: 60 and 61 do not join
		batch = append(batch, singles(a, "e", ids(60, 61))...)
		batch = append(batch, edgeOp(a, issuedBy("f", ids(70, 72))))
		batch = append(batch, singles(a, "e", ids(61, 63))...)
		flushWant(t, a, batch, 20)
		// a's 10..30 meet b's 20: fields, each answered on its own
		wantBucketFields(t, a, 0, append(slices.Clone(fieldNames[10:31]), "60", RunsField)...)
		wantRunSpans(t, a, 0, "50..51 40..43 70..71 61..62")
		wantRecords(t, a, "a", append(ids(10, 20), ids(21, 31)...))
		wantRecords(t, a, "b", ids(20, 21))
		wantRecords(t, a, "c", ids(40, 44))
		wantRecords(t, a, "d", ids(50, 52))
		wantRecords(t, a, "e", ids(60, 63))
		wantRecords(t, a, "f", ids(70, 72))
		checkStateMaps(t, a, 0, 1)
	})

	t.Run("not joined", func(t *testing.T) {
		s := runsStore(t, nil)
		var batch []*op
		for c := uint64(10); c < 16; c++ { // values alternate
			batch = append(batch, singles(s, fmt.Sprint("s", c%2), ids(c, c+1))...)
		}
		batch = append(batch, singles(s, "a", append(ids(20, 21), ids(22, 23)...))...) // not consecutive
		batch = append(batch, singles(s, "a", ids(127, 129))...)                       // across buckets
		flushWant(t, s, batch)
		wantBucketFields(t, s, 0, "10", "11", "12", "13", "14", "15", "20", "22", "127")
		wantBucketFields(t, s, 1, "0")
		for c := uint64(10); c < 16; c++ {
			wantRecords(t, s, fmt.Sprint("s", c%2), ids(c, c+1))
		}
		wantRecords(t, s, "a", append(append(ids(20, 21), ids(22, 23)...), ids(127, 129)...))
		checkStateMaps(t, s, 0, 2)
	})
}

// wantListpack fails t unless bucket b of s's shard is a listpack.
func wantListpack(t *testing.T, s *Store, b uint64) {
	t.Helper()
	if enc := s.client.ObjectEncoding(context.Background(), s.bucketKey(b)).Val(); enc != "listpack" {
		t.Fatalf("bucket %d encoded as %q, want listpack", b, enc)
	}
}

// Single IDs of several milliseconds in one flush are a run for each
// millisecond (the bucket, its runs past 64 bytes, a small hash table).
// Committing every ID then leaves the bucket its 128 fields as a
// listpack, as if written field by field: each run goes once all its
// members have fields of their own, and the bucket is rewritten when the
// last one goes. The same holds for a batch's run, which stays until its
// last member is committed; the bucket keeps its TTL.
func TestRunsOfSinglesCommitted(t *testing.T) {
	ctx := context.Background()
	commitAll := func(t *testing.T, s *Store, xs []idcodec.ID) {
		t.Helper()
		for _, x := range xs {
			if _, out, err := s.Transition(ctx, x, registry.Change{To: registry.Committed, Actor: "svc", NowMS: testMS + 100}); err != nil || out != registry.Applied {
				t.Fatalf("commit of counter %d: %v, %v", x.Decompose().Counter, out, err)
			}
		}
	}
	ttlKept := func(t *testing.T, s *Store, before time.Duration) {
		t.Helper()
		if ttl := s.client.PTTL(ctx, s.bucketKey(0)).Val(); ttl <= 0 || ttl > before {
			t.Fatalf("bucket TTL %v after the commits, %v before", ttl, before)
		}
	}
	t.Run("singles", func(t *testing.T) {
		s := runsStore(t, nil)
		var all []idcodec.ID
		var batch []*op
		for g := range uint64(8) { // 8 milliseconds of 16 IDs each
			for c := g * 16; c < g*16+16; c++ {
				x := stampedAt(testMS+g, c)
				all = append(all, x)
				batch = append(batch, edgeOp(s, pending(x)))
			}
		}
		flushWant(t, s, batch)
		wantBucketFields(t, s, 0, RunsField)
		wantRunSpans(t, s, 0, "0..15 16..31 32..47 48..63 64..79 80..95 96..111 112..127")
		for _, x := range all {
			wantRunState(t, s, x, registry.Pending)
		}
		checkStateMaps(t, s, 0, 1)
		ttl := s.client.PTTL(ctx, s.bucketKey(0)).Val()

		commitAll(t, s, all[:120])
		wantRunSpans(t, s, 0, "112..127")
		commitAll(t, s, all[120:])
		wantBucketFields(t, s, 0, slices.Clone(fieldNames[:])...) // a copy: it sorts them
		wantListpack(t, s, 0)
		ttlKept(t, s, ttl)
		for _, x := range all {
			wantRunState(t, s, x, registry.Committed)
		}
		checkStateMaps(t, s, 0, 1)
	})
	t.Run("a batch", func(t *testing.T) {
		s := runsStore(t, nil)
		all := ids(0, 128)
		runsRegister(t, s, pending(all...))
		wantRunSpans(t, s, 0, "0..127")
		ttl := s.client.PTTL(ctx, s.bucketKey(0)).Val()
		commitAll(t, s, all[:127])
		wantRunSpans(t, s, 0, "0..127")
		commitAll(t, s, all[127:])
		ttlKept(t, s, ttl)
		wantBucketFields(t, s, 0, slices.Clone(fieldNames[:])...) // a copy: it sorts them
		wantListpack(t, s, 0)
		for _, x := range all {
			wantRunState(t, s, x, registry.Committed)
		}
		checkStateMaps(t, s, 0, 1)
	})
}
