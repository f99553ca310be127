package redisstore

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// TestStateMaps runs stateMapScenario on the shared server.
func TestStateMaps(t *testing.T) {
	stateMapScenario(t, open(t, Config{Shard: 3, Retention: time.Hour, TombstoneTTL: 2 * time.Hour}))
}

// stateMapScenario: after registrations (one record, batches across a
// bucket's edge, counters above 2^53, a bucket past the first pipeline of
// StateMaps), collisions (one record and a batch), resends, an idempotent
// replay (in Cluster mode: a loser whose records are voided) and
// transitions of every kind (commit; compensations by a client, a failure
// event and the deadline; committed to compensated; null compensations in
// a used and in a fresh bucket), every state map is 128 bytes of
// registry.StateOf of its bucket's records, with a TTL no shorter than
// its bucket's, and a bucket no record was written to has none. s serves
// shard 3 (the shard of id).
func stateMapScenario(t *testing.T, s *Store) {
	ctx := context.Background()
	big := uint64(1<<53 + 120)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	reg := func(iss registry.Issue) error {
		t.Helper()
		_, err := s.Register(ctx, iss, 60_000, testMS)
		return err
	}
	ids := func(from, to uint64) []idcodec.ID {
		var out []idcodec.ID
		for c := from; c < to; c++ {
			out = append(out, id(c))
		}
		return out
	}

	must(reg(pending(id(5))))
	batch := pending(ids(120, 140)...) // buckets 0 and 1
	for i := range batch.Records {
		batch.Records[i].DeadlineMS = testMS + 1000
	}
	batch.Idem = &registry.IdemEntry{KeyHash: registry.IdemKeyHash("svc-payments", "k-1"), IDs: ids(120, 140), Batch: true, CreatedMS: testMS}
	must(reg(batch))
	must(reg(pending(ids(big, big+16)...)))     // two buckets above 2^53
	must(reg(pending(id(1500<<7+3), id(1000)))) // past the first 1024 maps; bucket 7
	checkStateMaps(t, s, 0, 2000)

	// Resends of the same writes by the same Store change no map.
	before := readStateMaps(t, s, 0, 2)
	must(reg(pending(id(5))))
	must(reg(batch))
	if after := readStateMaps(t, s, 0, 2); !equalMaps(before, after) {
		t.Fatalf("a resend changed the maps: %v, then %v", before, after)
	}

	// Collisions write nothing: the maps stay as they were (id(6), written
	// then undone, is free again), and bucket 3 (written, then emptied by
	// the undo) has none.
	other := func(c uint64) idcodec.ID {
		return idcodec.MustCompose(idcodec.Fields{TimestampMS: testMS + 1, Worker: 7, Shard: 3, Counter: c})
	}
	if err := reg(pending(id(400), id(401), id(6), other(5))); !errors.Is(err, registry.ErrCollision) {
		t.Fatalf("batch collision: %v", err)
	}
	if err := reg(pending(other(121))); !errors.Is(err, registry.ErrCollision) {
		t.Fatalf("one-record collision: %v", err)
	}
	if after := readStateMaps(t, s, 0, 4); !equalMaps(before, after) {
		t.Fatalf("a collision changed the maps: %v, then %v", before, after)
	}

	// An idempotent replay answers the first entry; its own ID is burnt
	// (never written, or in Cluster mode written, then voided).
	replay := pending(id(300))
	replay.Idem = &registry.IdemEntry{KeyHash: batch.Idem.KeyHash, IDs: []idcodec.ID{id(300)}, CreatedMS: testMS}
	if e, err := s.Register(ctx, replay, 60_000, testMS); err != nil || e == nil {
		t.Fatalf("replay: %v, %v", e, err)
	}

	for _, x := range []struct {
		c  uint64
		ch registry.Change
	}{
		{121, registry.Change{To: registry.Committed, Actor: "svc-payments", NowMS: testMS + 1}},
		{122, registry.Change{To: registry.Compensated, Reason: "declined", Actor: "svc-payments", NowMS: testMS + 1}},
		{123, registry.Change{To: registry.Compensated, Reason: "failed", Actor: registry.ActorEventPrefix + "stream", NowMS: testMS + 1}},
		{128, registry.Change{To: registry.Compensated, From: registry.Pending, Reason: "timeout", Actor: registry.ActorSystem, NowMS: testMS + 1}},
		{129, registry.Change{To: registry.Committed, Actor: "svc-payments", NowMS: testMS + 1}},
		{129, registry.Change{To: registry.Compensated, Reason: "refund", Actor: "svc-payments", NowMS: testMS + 2}},
		{129, registry.Change{To: registry.Compensated, Reason: "refund", Actor: "svc-payments", NowMS: testMS + 3}}, // replayed
		{200, registry.Change{To: registry.Compensated, Reason: "lost", Actor: "svc-payments", NowMS: testMS + 1}},   // null compensation
		{1001, registry.Change{To: registry.Compensated, Reason: "lost", NowMS: testMS + 1}},                         // beside id(1000)
		{9000, registry.Change{To: registry.Compensated, Reason: "lost", NowMS: testMS + 1}},                         // a fresh bucket
		{big + 15, registry.Change{To: registry.Committed, Actor: "svc-payments", NowMS: testMS + 1}},
	} {
		if _, _, err := s.Transition(ctx, id(x.c), x.ch); err != nil {
			t.Fatalf("transition %d %+v: %v", x.c, x.ch, err)
		}
	}
	if _, _, err := s.Transition(ctx, id(200), registry.Change{To: registry.Committed, NowMS: testMS + 2}); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("commit of a tombstone: %v", err)
	}
	if _, _, err := s.Transition(ctx, other(122), registry.Change{To: registry.Compensated, NowMS: testMS + 2}); !errors.Is(err, registry.ErrCollision) {
		t.Fatalf("null compensation of another ID of a used counter: %v", err)
	}
	must(reg(pending(id(9001)))) // a registration beside a tombstone keeps its TTL

	maps := checkStateMaps(t, s, 0, 2000)
	checkStateMaps(t, s, registry.StateMapBucket(big), registry.StateMapBucket(big)+4)
	for c, w := range map[uint64]registry.CounterState{
		5: registry.CounterPending, 121: registry.CounterCommitted, 122: registry.CounterCompensatedClient,
		123: registry.CounterCompensatedEvent, 128: registry.CounterCompensatedDeadline,
		129: registry.CounterCompensatedClient, 200: registry.CounterTombstone, 1000: registry.CounterPending,
		1001: registry.CounterTombstone, 9000: registry.CounterTombstone, 9001: registry.CounterPending,
		1500<<7 + 3: registry.CounterPending,
	} {
		if got := maps[c>>bucketBits][c&(1<<bucketBits-1)]; got != w {
			t.Errorf("counter %d: map says %d, want %d", c, got, w)
		}
	}
	wantBuckets := []uint64{0, 1, 7, 9000 >> bucketBits, 1500}
	if s.cluster {
		wantBuckets = append(wantBuckets, 300>>bucketBits) // the voided loser
		if got := maps[300>>bucketBits][300&(1<<bucketBits-1)]; got != registry.CounterCompensatedDeadline {
			t.Errorf("voided loser: map says %d", got)
		}
	}
	if len(maps) != len(wantBuckets) {
		t.Errorf("maps of buckets %v, want those of %v", keys(maps), wantBuckets)
	}
	for _, b := range wantBuckets {
		if _, ok := maps[b]; !ok {
			t.Errorf("no map of bucket %d", b)
		}
	}
	if ttl := s.client.PTTL(ctx, s.stateKey(9000>>bucketBits)).Val(); ttl < time.Hour+59*time.Minute {
		t.Errorf("map of a tombstone's bucket: TTL %v, want about 2h", ttl)
	}

	stop := errors.New("stop")
	if err := s.StateMaps(ctx, 0, 10, func(*registry.StateMap) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("StateMaps does not return fn's error: %v", err)
	}
	if err := s.StateMaps(ctx, 10, 10, func(*registry.StateMap) error { return stop }); err != nil {
		t.Fatalf("empty range: %v", err)
	}
	// Damaged maps: a short one, a byte that is no state.
	must(s.client.Set(ctx, s.stateKey(50_000), strings.Repeat("\x01", 127), time.Minute).Err())
	must(s.client.Set(ctx, s.stateKey(50_001), strings.Repeat("\x00", 127)+"\x07", time.Minute).Err())
	for _, b := range []uint64{50_000, 50_001} {
		if err := s.StateMaps(ctx, b, b+1, func(*registry.StateMap) error { return nil }); !errors.Is(err, registry.ErrCorrupt) {
			t.Fatalf("damaged map of bucket %d: %v, want ErrCorrupt", b, err)
		}
	}
}

// stateRow is one bucket's states.
type stateRow = [registry.StateMapSize]registry.CounterState

// readStateMaps returns the maps of buckets [from, to) of s's shard.
func readStateMaps(t *testing.T, s *Store, from, to uint64) map[uint64]stateRow {
	t.Helper()
	out := map[uint64]stateRow{}
	last := -1
	err := s.StateMaps(context.Background(), from, to, func(m *registry.StateMap) error {
		if m.Bucket < from || m.Bucket >= to || int(m.Bucket) <= last {
			t.Fatalf("bucket %d out of [%d, %d) or out of order (after %d)", m.Bucket, from, to, last)
		}
		last = int(m.Bucket)
		out[m.Bucket] = m.States
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkStateMaps fails t unless, for buckets [from, to) of s's shard,
// every map is registry.StateOf of each counter's record (read with
// ScanCounters and Get), exactly the buckets holding a record have one,
// each is 128 bytes with a TTL no shorter than its bucket's. It returns
// the maps.
func checkStateMaps(t *testing.T, s *Store, from, to uint64) map[uint64]stateRow {
	t.Helper()
	ctx := context.Background()
	want := map[uint64]stateRow{}
	err := s.ScanCounters(ctx, from<<bucketBits, to<<bucketBits, func(rec registry.Record) error {
		c := rec.ID.Decompose().Counter
		got, err := s.Get(ctx, rec.ID)
		if err != nil {
			return err
		}
		if registry.StateOf(&got) != registry.StateOf(&rec) {
			t.Errorf("%s: Get and ScanCounters disagree: %+v, %+v", rec.ID, got, rec)
		}
		row := want[c>>bucketBits]
		row[c&(1<<bucketBits-1)] = registry.StateOf(&rec)
		want[c>>bucketBits] = row
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := readStateMaps(t, s, from, to)
	for b, w := range want {
		g, ok := got[b]
		switch {
		case !ok:
			t.Errorf("bucket %d holds records and no map", b)
		case g != w:
			t.Errorf("bucket %d: map %v, records %v", b, g, w)
		}
	}
	for b := range got {
		if _, ok := want[b]; !ok {
			t.Errorf("bucket %d has a map and no record", b)
		}
		mk, bk := s.stateKey(b), s.bucketKey(b)
		mttl := s.client.PTTL(ctx, mk).Val() // first: the bucket's is read later
		bttl := s.client.PTTL(ctx, bk).Val()
		if mttl < 0 || mttl < bttl {
			t.Errorf("bucket %d: map TTL %v, bucket TTL %v", b, mttl, bttl)
		}
		if n := s.client.StrLen(ctx, mk).Val(); n != registry.StateMapSize {
			t.Errorf("bucket %d: map of %d bytes", b, n)
		}
	}
	return got
}

func equalMaps(a, b map[uint64]stateRow) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func keys(m map[uint64]stateRow) []uint64 {
	var out []uint64
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestStateMapsAfterErrorReply: a batch whose script fails with an error
// reply (a bucket key of the wrong type) in its second op, a registration
// whose first record was written before the failing one, still writes
// the maps of what it wrote; the resend op by op keeps them.
func TestStateMapsAfterErrorReply(t *testing.T) {
	s := open(t, Config{Shard: 3})
	ctx := context.Background()
	poison := id(1 << 30)
	key, _ := s.bucket(poison)
	if err := raw(t, shared.Addr()).Set(ctx, key, "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	build := func(xs ...idcodec.ID) *op {
		iss := pending(xs...)
		o := &op{kind: opRegister, iss: iss, done: make(chan struct{}, 1)}
		for i := range iss.Records {
			k, f := s.bucket(iss.Records[i].ID)
			o.keys, o.fields = append(o.keys, k), append(o.fields, f)
			o.vals = append(o.vals, appendValue(nil, &iss.Records[i], s.nonce()))
		}
		return o
	}
	batch := []*op{build(id(1)), build(id(2), poison), build(id(3))}
	s.flush(batch)
	if batch[0].err != nil || batch[2].err != nil || !errors.Is(batch[1].err, registry.ErrUnavailable) {
		t.Fatalf("errors %v / %v / %v", batch[0].err, batch[1].err, batch[2].err)
	}
	var rerr redis.Error
	if !errors.As(batch[1].err, &rerr) || !strings.Contains(batch[1].err.Error(), "WRONGTYPE") {
		t.Fatalf("the failing op's error: %v", batch[1].err)
	}
	maps := checkStateMaps(t, s, 0, 1)
	for _, c := range []uint64{1, 2, 3} { // 2: written before the failure
		if maps[0][c] != registry.CounterPending {
			t.Errorf("counter %d: %d", c, maps[0][c])
		}
	}
	if n := raw(t, shared.Addr()).Exists(ctx, stateKeyOf(key)).Val(); n != 0 {
		t.Errorf("the poisoned bucket has a map")
	}
}
