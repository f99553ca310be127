package registrytest

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// registerGet: what Register stores, Get returns whole (metadata,
// deadline, idempotency key hash, history); an unknown ID is ErrNotFound.
func registerGet(t *testing.T, s Store) {
	ctx := context.Background()
	iss := Pending(ID(1), ID(2))
	r := &iss.Records[1]
	r.Metadata, r.DeadlineMS, r.IdemKeyHash = []byte("sealed"), NowMS+5000, make([]byte, 32)
	r.IssuedAtMS = NowMS + 3 // not the ID's timestamp
	r.History[0].AtMS = r.IssuedAtMS
	if replay, err := s.Register(ctx, iss, idemTTL, NowMS); err != nil || replay != nil {
		t.Fatalf("Register: replay %v, %v", replay, err)
	}
	for _, want := range iss.Records {
		got, err := s.Get(ctx, want.ID)
		if err != nil {
			t.Fatalf("Get %s: %v", want.ID, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Get %s:\n got %+v\nwant %+v", want.ID, got, want)
		}
	}
	if _, err := s.Get(ctx, ID(3)); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Get of an unknown ID: %v, want ErrNotFound", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// registerCollisionWritesNothing: SETNX semantics. A record that already
// exists (with another value) fails the whole issue with ErrCollision, and
// none of the records, deadlines or idempotency entry is written.
func registerCollisionWritesNothing(t *testing.T, s Store) {
	ctx := context.Background()
	if _, err := s.Register(ctx, Pending(ID(1), ID(2)), idemTTL, NowMS); err != nil {
		t.Fatal(err)
	}
	iss := withIdem(Pending(ID(3), ID(2)), "k", NowMS)
	iss.Records[0].DeadlineMS = NowMS
	iss.Records[1].Subject = "svc-other" // another writer's record of ID(2)
	if _, err := s.Register(ctx, iss, idemTTL, NowMS); !errors.Is(err, registry.ErrCollision) {
		t.Fatalf("err = %v, want ErrCollision", err)
	}
	if _, err := s.Get(ctx, ID(3)); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("half-written issue: ID(3): %v", err)
	}
	if got, err := s.Expired(ctx, NowMS, 10); err != nil || len(got) != 0 {
		t.Fatalf("deadline of the failed issue: %v, %v", got, err)
	}
	if rec, err := s.Get(ctx, ID(2)); err != nil || rec.Subject != Subject {
		t.Fatalf("the first record of ID(2): %+v, %v", rec, err)
	}
	if replay, err := s.Register(ctx, withIdem(Pending(ID(4)), "k", NowMS), idemTTL, NowMS); err != nil || replay != nil {
		t.Fatalf("idempotency entry of the failed issue was written: replay %v, %v", replay, err)
	}
}

// registerBatch: one issue of many records (spanning buckets and key
// ranges) is stored whole, and every record reads back.
func registerBatch(t *testing.T, s Store) {
	ctx := context.Background()
	var ids []idcodec.ID
	for i := range uint64(300) {
		ids = append(ids, ID(1+i*37))
	}
	iss := withIdem(Pending(ids...), "batch", NowMS)
	for i := range iss.Records {
		iss.Records[i].DeadlineMS = NowMS + int64(i)
	}
	if replay, err := s.Register(ctx, iss, idemTTL, NowMS); err != nil || replay != nil {
		t.Fatalf("Register: replay %v, %v", replay, err)
	}
	for _, x := range ids {
		if rec, err := s.Get(ctx, x); err != nil || rec.State != registry.Pending {
			t.Fatalf("%s: %+v, %v", x, rec, err)
		}
	}
	if got, err := s.Expired(ctx, NowMS+1000, 1000); err != nil || len(got) != len(ids) || got[0] != ids[0] || got[len(got)-1] != ids[len(ids)-1] {
		t.Fatalf("Expired: %d IDs, %v; want %d, oldest deadline first", len(got), err, len(ids))
	}
}

// idempotencyReplay: a live entry is answered whole (body hash, IDs, batch
// flag, creation time) and the replaying issue's ID is burnt; the same
// key of another subject is another key; an entry past its TTL by the
// caller's clock is replaced.
func idempotencyReplay(t *testing.T, s Store) {
	ctx := context.Background()
	first := withIdem(Pending(ID(1), ID(2)), "order-1", NowMS)
	first.Idem.BodyHash[0] = 0xb0
	if _, err := s.Register(ctx, first, idemTTL, NowMS); err != nil {
		t.Fatal(err)
	}
	again := withIdem(Pending(ID(3)), "order-1", NowMS+10)
	replay, err := s.Register(ctx, again, idemTTL, NowMS+10)
	if err != nil || replay == nil || !reflect.DeepEqual(*replay, *first.Idem) {
		t.Fatalf("replay %+v, %v; want %+v", replay, err, first.Idem)
	}
	burnt(t, s, ID(3))
	other := Pending(ID(4))
	other.Idem = &registry.IdemEntry{KeyHash: registry.IdemKeyHash("svc-other", "order-1"), IDs: []idcodec.ID{ID(4)}, CreatedMS: NowMS}
	if replay, err := s.Register(ctx, other, idemTTL, NowMS); err != nil || replay != nil {
		t.Fatalf("the same key of another subject: replay %v, %v", replay, err)
	}
	late := withIdem(Pending(ID(5)), "order-1", NowMS+idemTTL)
	if replay, err := s.Register(ctx, late, idemTTL, NowMS+idemTTL); err != nil || replay != nil {
		t.Fatalf("after the TTL: replay %v, %v", replay, err)
	}
	if replay, err := s.Register(ctx, withIdem(Pending(ID(6)), "order-1", NowMS+idemTTL+1), idemTTL, NowMS+idemTTL+1); err != nil || replay == nil || replay.IDs[0] != ID(5) {
		t.Fatalf("the replacing entry: replay %+v, %v", replay, err)
	}
}

// IdempotencyOneWinner: 32 concurrent registrations with one key, spread
// over stores (instances of one registry), store exactly one answer, and
// every caller gets it; the losers' IDs are burnt, and only the winner's
// deadlines are in the index. Backends with several instances per
// registry call it with several.
func IdempotencyOneWinner(t *testing.T, stores ...Store) {
	ctx := context.Background()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []idcodec.ID
		losers  []idcodec.ID
		answers = map[idcodec.ID]int{}
	)
	start := make(chan struct{})
	for g := range 32 {
		wg.Go(func() {
			mine := []idcodec.ID{ID(uint64(1000 + 200*g)), ID(uint64(1001 + 200*g))} // two buckets apart
			iss := withIdem(Pending(mine...), "order-1", NowMS)
			for i := range iss.Records {
				iss.Records[i].DeadlineMS = NowMS + 1
			}
			<-start
			replay, err := stores[g%len(stores)].Register(ctx, iss, idemTTL, NowMS)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if replay == nil {
				winners = append(winners, mine[0])
				answers[mine[0]]++
				return
			}
			if !replay.Batch || len(replay.IDs) != 2 || replay.CreatedMS != NowMS {
				t.Errorf("replay %+v", replay)
			}
			answers[replay.IDs[0]]++
			losers = append(losers, mine...)
		})
	}
	close(start)
	wg.Wait()
	if len(winners) != 1 || len(answers) != 1 || answers[winners[0]] != 32 {
		t.Fatalf("winners %v, answers %v", winners, answers)
	}
	for _, x := range losers {
		burnt(t, stores[0], x)
	}
	if got, err := stores[0].Expired(ctx, NowMS+1, 100); err != nil || len(got) != 2 {
		t.Fatalf("deadline entries: %v, %v; want only the winner's 2", got, err)
	}
}

// burnt fails t unless x, an ID of an issue answered with a replay, is
// burnt: never registered, or voided (compensated; Redis Cluster writes
// the records of every slot before it knows the idempotency winner).
func burnt(t *testing.T, s Store, x idcodec.ID) {
	t.Helper()
	rec, err := s.Get(context.Background(), x)
	if !errors.Is(err, registry.ErrNotFound) && (err != nil || rec.State != registry.Compensated) {
		t.Fatalf("ID %s of a replayed issue: %+v, %v; want not found or voided", x, rec, err)
	}
}

// purgeIdempotency: PurgeIdempotency removes the index entries created
// before the cutoff, at most limit per call, and counts them. A backend
// whose entries expire by themselves removes nothing and returns 0.
func purgeIdempotency(t *testing.T, s Store, selfExpiring bool) {
	ctx := context.Background()
	for i := range 5 {
		iss := withIdem(Pending(ID(uint64(i))), string(rune('a'+i)), int64(100*i))
		if _, err := s.Register(ctx, iss, 1_000_000, 0); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name   string
		cutoff int64
		limit  int
		want   int
	}{
		{"limited", 250, 2, 2},
		{"rest before cutoff", 250, 10, 1},
		{"nothing left before cutoff", 250, 10, 0},
		{"all", 1000, 10, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if selfExpiring {
				tt.want = 0
			}
			if n, err := s.PurgeIdempotency(ctx, tt.cutoff, tt.limit); err != nil || n != tt.want {
				t.Fatalf("purged %d, %v; want %d", n, err, tt.want)
			}
		})
	}
}

// purgeKeepsReusedKey: purging deletes a stale entry, and a key reused
// after its entry went stale keeps its fresh entry. A backend whose
// entries expire by themselves keeps both until they expire.
func purgeKeepsReusedKey(t *testing.T, s Store, selfExpiring bool) {
	ctx := context.Background()
	const ttl = idemTTL
	reg := func(key string, counter uint64, created, ttl int64) *registry.IdemEntry {
		t.Helper()
		replay, err := s.Register(ctx, withIdem(Pending(ID(counter)), key, created), ttl, created)
		if err != nil {
			t.Fatal(err)
		}
		return replay
	}
	reg("stale", 1, 100, ttl)
	reg("reused", 2, 100, ttl)
	if r := reg("reused", 3, 100+ttl+1, ttl); r != nil { // expired: replaced
		t.Fatalf("expired entry replayed: %+v", r)
	}
	want := 2 // the index entries of both keys' first entries
	if selfExpiring {
		want = 0
	}
	if n, err := s.PurgeIdempotency(ctx, 100+ttl, 10); err != nil || n != want {
		t.Fatalf("purged %d, %v; want %d", n, err, want)
	}
	if r := reg("reused", 4, 100+ttl+2, ttl); r == nil || r.IDs[0] != ID(3) {
		t.Fatalf("fresh entry of a reused key lost: %+v", r)
	}
	// A registration long before the stale entry's TTL would end, by a
	// caller with a longer TTL: the purged entry no longer answers.
	r := reg("stale", 5, 101, 1_000_000)
	switch {
	case !selfExpiring && r != nil:
		t.Fatalf("purged entry still answers: %+v", r)
	case selfExpiring && (r == nil || r.IDs[0] != ID(1)):
		t.Fatalf("live entry of a self-expiring backend: %+v", r)
	}
}
