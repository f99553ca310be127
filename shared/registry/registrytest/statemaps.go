package registrytest

import (
	"context"
	"errors"
	"testing"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// stateMaps: after registrations (one record, batches across a bucket's
// edge, counters above 2^53), a refused collision, an idempotent replay,
// and transitions of every kind (commit, compensations by a client, a
// failure event and the deadline, a null compensation), every state map
// says registry.StateOf of each counter's record, and a bucket no record
// was written to has none. A second ID of a counter (another time) is
// either refused as a collision, leaving the map as it was, or stored and
// marked CounterRepeated: never silent.
func stateMaps(t *testing.T, s Store) {
	ctx := context.Background()
	big := uint64(1<<53 + 120)
	reg := func(iss registry.Issue) error {
		t.Helper()
		_, err := s.Register(ctx, iss, idemTTL, NowMS)
		return err
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(reg(Pending(ID(5))))
	var batch []idcodec.ID
	for c := uint64(120); c < 140; c++ { // buckets 0 and 1
		batch = append(batch, ID(c))
	}
	must(reg(withIdem(Pending(batch...), "k-1", NowMS)))
	if e, err := s.Register(ctx, withIdem(Pending(ID(300)), "k-1", NowMS), idemTTL, NowMS); err != nil || e == nil {
		t.Fatalf("replay: %v, %v; want the first call's entry", e, err)
	}
	var high []idcodec.ID
	for c := big; c < big+16; c++ { // two buckets above 2^53
		high = append(high, ID(c))
	}
	must(reg(Pending(high...)))
	// A batch whose last record collides (ID 5 held by another value: a
	// byte-identical record is a resend) writes nothing.
	coll := Pending(ID(400), ID(401), ID(5))
	coll.Records[2].Subject = "svc-other"
	if err := reg(coll); !errors.Is(err, registry.ErrCollision) {
		t.Fatalf("collision: %v, want ErrCollision", err)
	}
	changes := []struct {
		c  uint64
		ch registry.Change
	}{
		{121, registry.Change{To: registry.Committed, Actor: Subject, NowMS: NowMS + 1}},
		{122, registry.Change{To: registry.Compensated, Reason: "declined", Actor: Subject, NowMS: NowMS + 1}},
		{123, registry.Change{To: registry.Compensated, Reason: "failed", Actor: registry.ActorEventPrefix + "stream", NowMS: NowMS + 1}},
		{128, registry.Change{To: registry.Compensated, From: registry.Pending, Reason: "timeout", Actor: registry.ActorSystem, NowMS: NowMS + 1}},
		{129, registry.Change{To: registry.Committed, Actor: Subject, NowMS: NowMS + 1}},
		{129, registry.Change{To: registry.Compensated, Reason: "refund", Actor: Subject, NowMS: NowMS + 2}},
		{129, registry.Change{To: registry.Compensated, Reason: "refund", Actor: Subject, NowMS: NowMS + 3}}, // replayed
		{200, registry.Change{To: registry.Compensated, Reason: "lost", Actor: Subject, NowMS: NowMS + 1}},   // null compensation
		{big + 15, registry.Change{To: registry.Committed, Actor: Subject, NowMS: NowMS + 1}},
	}
	for _, x := range changes {
		if _, _, err := s.Transition(ctx, ID(x.c), x.ch); err != nil {
			t.Fatalf("transition %d %+v: %v", x.c, x.ch, err)
		}
	}
	// A commit refused (a tombstone) changes nothing.
	if _, _, err := s.Transition(ctx, ID(200), registry.Change{To: registry.Committed, NowMS: NowMS + 2}); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("commit of a tombstone: %v", err)
	}
	// A second ID of counter 130, a millisecond later.
	other := idcodec.MustCompose(idcodec.Fields{TimestampMS: NowMS + 1, Worker: Worker, Shard: Shard, Counter: 130})
	repeatErr := reg(Pending(other))
	if repeatErr != nil && !errors.Is(repeatErr, registry.ErrCollision) {
		t.Fatalf("second ID of a counter: %v", repeatErr)
	}

	want := map[uint64]registry.CounterState{}
	for _, c := range []uint64{5, 200} {
		want[c] = 0
	}
	for c := uint64(120); c < 140; c++ {
		want[c] = 0
	}
	for c := big; c < big+16; c++ {
		want[c] = 0
	}
	for c := range want {
		rec, err := s.Get(ctx, ID(c))
		if err != nil {
			t.Fatalf("get %d: %v", c, err)
		}
		want[c] = registry.StateOf(&rec)
	}
	// The replay's own ID: not written, or written and voided (a backend
	// that writes records before it sees the idempotency entry of another
	// call, as Redis Cluster does); either way the map says what is.
	burnt(t, s, ID(300))
	if rec, err := s.Get(ctx, ID(300)); err == nil {
		want[300] = registry.StateOf(&rec)
	}
	if repeatErr == nil {
		want[130] |= registry.CounterRepeated
	}
	for c, w := range map[uint64]registry.CounterState{
		5: registry.CounterPending, 121: registry.CounterCommitted, 122: registry.CounterCompensatedClient,
		123: registry.CounterCompensatedEvent, 128: registry.CounterCompensatedDeadline,
		129: registry.CounterCompensatedClient, 200: registry.CounterTombstone, big + 15: registry.CounterCommitted,
	} {
		if want[c] != w {
			t.Fatalf("StateOf the record of %d: %d, want %d", c, want[c], w)
		}
	}

	got := map[uint64]registry.CounterState{}
	buckets := map[uint64]bool{}
	read := func(from, to uint64) {
		t.Helper()
		last, first := uint64(0), true
		must(s.StateMaps(ctx, from, to, func(m *registry.StateMap) error {
			if m.Bucket < from || m.Bucket >= to || (!first && m.Bucket <= last) {
				t.Fatalf("bucket %d out of [%d, %d) or out of order (after %d)", m.Bucket, from, to, last)
			}
			first, last = false, m.Bucket
			buckets[m.Bucket] = true
			for i, st := range m.States {
				if st != 0 {
					got[m.Bucket<<registry.StateMapBits+uint64(i)] = st
				}
			}
			return nil
		}))
	}
	read(0, 10)
	read(registry.StateMapBucket(big), registry.StateMapBucket(big)+5)
	for c, w := range want {
		if got[c] != w {
			t.Errorf("counter %d: map says %d, the record %d", c, got[c], w)
		}
	}
	for c, g := range got {
		if _, ok := want[c]; !ok {
			t.Errorf("counter %d: map says %d, no record holds it", c, g)
		}
	}
	wantBuckets := map[uint64]bool{0: true, 1: true, registry.StateMapBucket(big): true, registry.StateMapBucket(big + 15): true}
	if _, ok := want[300]; ok {
		wantBuckets[registry.StateMapBucket(300)] = true
	}
	if len(buckets) != len(wantBuckets) {
		t.Errorf("maps of buckets %v, want %v", buckets, wantBuckets)
	}
	for b := range wantBuckets {
		if !buckets[b] {
			t.Errorf("no map of bucket %d", b)
		}
	}
	stop := errors.New("stop")
	if err := s.StateMaps(ctx, 0, 10, func(*registry.StateMap) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("StateMaps does not return fn's error: %v", err)
	}
}
