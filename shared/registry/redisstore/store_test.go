package redisstore

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/functions/generate"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// TestRegisterCollisionWritesNothing: a collision on any record of an issue
// stores none of its records, deadlines or idempotency entry.
func TestRegisterCollisionWritesNothing(t *testing.T) {
	first := open(t, Config{})
	var collided []idcodec.ID
	// Another instance: the same Store resending the same issue would be a
	// retry (TestRetriedWriteIsNotACollision).
	s := open(t, Config{Prefix: first.cfg.Prefix, Collision: func(x idcodec.ID) { collided = append(collided, x) }})
	ctx := context.Background()
	if _, err := first.Register(ctx, pending(id(1), id(2)), 60_000, testMS); err != nil {
		t.Fatal(err)
	}
	kh := registry.IdemKeyHash("alice", "k")
	// id(2) again, and another ID with the same (shard, counter) as id(1).
	other := idcodec.MustCompose(idcodec.Fields{TimestampMS: testMS + 5, Worker: 9, Shard: 3, Counter: 1})
	for _, dup := range []idcodec.ID{id(2), other} {
		iss := pending(id(3), dup)
		iss.Records[0].DeadlineMS = testMS
		iss.Idem = &registry.IdemEntry{KeyHash: kh, IDs: []idcodec.ID{id(3), dup}, CreatedMS: testMS}
		_, err := s.Register(ctx, iss, 60_000, testMS)
		if !errors.Is(err, registry.ErrCollision) {
			t.Fatalf("%s: err = %v, want ErrCollision", dup, err)
		}
		if _, err := s.Get(ctx, id(3)); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("half-written issue: id 3 err = %v", err)
		}
		if got, _ := s.Expired(ctx, testMS, 10); len(got) != 0 {
			t.Fatalf("deadline of the failed issue was written: %v", got)
		}
	}
	if _, err := s.Get(ctx, other); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Get of another ID on an occupied field: %v", err)
	}
	iss := pending(id(4))
	iss.Idem = &registry.IdemEntry{KeyHash: kh, IDs: []idcodec.ID{id(4)}, CreatedMS: testMS}
	if replay, err := s.Register(ctx, iss, 60_000, testMS); err != nil || replay != nil {
		t.Fatalf("idempotency entry of the failed issue was written: replay %v err %v", replay, err)
	}
	if st := s.Stats(); st.Collisions != 2 || len(collided) != 2 {
		t.Fatalf("collisions: stats %d, hook %v", st.Collisions, collided)
	}
}

// TestRetriedWriteIsNotACollision: resending the very same write (what
// go-redis does after a broken connection, the flusher after NOSCRIPT, or a
// caller after ErrUnavailable) finds its own value and succeeds; the same ID
// from another writer (another nonce) is a collision, and so is a
// registration over a tombstone written by the same Store.
func TestRetriedWriteIsNotACollision(t *testing.T) {
	s := open(t, Config{})
	ctx := context.Background()
	iss := pending(id(10), id(11))
	iss.Idem = &registry.IdemEntry{KeyHash: registry.IdemKeyHash("a", "retry"), IDs: []idcodec.ID{id(10), id(11)}, CreatedMS: testMS}
	build := func(nonce uint32) *op {
		o := &op{kind: opRegister, iss: iss, idemTTL: 60_000, nowMS: testMS,
			idemKey: s.idemKey(iss.Idem.KeyHash), idemVal: appendIdemValue(iss.Idem, 60_000)}
		for i := range iss.Records {
			k, f := s.bucket(iss.Records[i].ID)
			o.keys, o.fields = append(o.keys, k), append(o.fields, f)
			o.vals = append(o.vals, appendValue(nil, &iss.Records[i], nonce))
		}
		return o
	}
	first := build(42)
	if err := s.do(ctx, first); err != nil {
		t.Fatal(err)
	}
	again := build(42) // byte-identical resend
	if err := s.do(ctx, again); err != nil || again.replay != nil {
		t.Fatalf("resent write: err %v, replay %v", err, again.replay != nil)
	}
	if err := s.do(ctx, build(43)); !errors.Is(err, registry.ErrCollision) {
		t.Fatalf("same IDs, another nonce: %v", err)
	}
	// Through the API: the same issue again from the same Store (a caller
	// retrying after ErrUnavailable) succeeds; from another Store it is a
	// collision.
	if _, err := s.Register(ctx, pending(id(20), id(21)), 0, testMS); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Register(ctx, pending(id(20), id(21)), 0, testMS); err != nil {
		t.Fatalf("same issue, same Store: %v", err)
	}
	other := open(t, Config{Prefix: s.cfg.Prefix})
	if _, err := other.Register(ctx, pending(id(20), id(21)), 0, testMS); !errors.Is(err, registry.ErrCollision) {
		t.Fatalf("same issue, another Store: %v", err)
	}
	// The same for a single record without idempotency key or deadline
	// (the script's one-record op).
	if _, err := s.Register(ctx, pending(id(30)), 0, testMS); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Register(ctx, pending(id(30)), 0, testMS); err != nil {
		t.Fatalf("one record, same Store: %v", err)
	}
	if _, err := other.Register(ctx, pending(id(30)), 0, testMS); !errors.Is(err, registry.ErrCollision) {
		t.Fatalf("one record, another Store: %v", err)
	}
	if rec, err := s.Get(ctx, id(30)); err != nil || rec.State != registry.Pending {
		t.Fatalf("one record: %+v, %v", rec, err)
	}
	if _, out, err := s.Transition(ctx, id(12), registry.Change{To: registry.Compensated, NowMS: testMS}); err != nil || out != registry.Tombstoned {
		t.Fatalf("null compensation: %v %v", out, err)
	}
	if _, err := s.Register(ctx, pending(id(12)), 0, testMS); !errors.Is(err, registry.ErrCollision) {
		t.Fatalf("registration over a tombstone: %v", err)
	}
}

// TestIdempotencyOneWinner: 32 concurrent registrations with one key from two
// Store instances (16 each) on the same Redis store exactly one answer; all
// get it; the losers' IDs are not registered.
func TestIdempotencyOneWinner(t *testing.T) {
	idempotencyOneWinner(t, Config{Prefix: prefix()})
}

func idempotencyOneWinner(t *testing.T, cfg Config) {
	var (
		mu      sync.Mutex
		batches []int
	)
	cfg.Observe = func(ops int, _ time.Duration) {
		mu.Lock()
		batches = append(batches, ops)
		mu.Unlock()
	}
	stores := []*Store{open(t, cfg), open(t, cfg)}
	ctx := context.Background()
	kh := registry.IdemKeyHash("alice", "order-1")
	var (
		wg      sync.WaitGroup
		winners []idcodec.ID
		losers  []idcodec.ID
		answers = map[idcodec.ID]int{}
	)
	start := make(chan struct{})
	for g := 0; g < 32; g++ {
		wg.Go(func() {
			mine := []idcodec.ID{id(uint64(1000 + 200*g)), id(uint64(1001 + 200*g))} // two buckets apart
			iss := pending(mine...)
			for i := range iss.Records {
				iss.Records[i].DeadlineMS = testMS + 1
			}
			iss.Idem = &registry.IdemEntry{KeyHash: kh, IDs: mine, Batch: true, CreatedMS: testMS}
			<-start
			replay, err := stores[g%2].Register(ctx, iss, 60_000, testMS)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if replay == nil {
				winners = append(winners, mine[0])
				answers[mine[0]]++
			} else {
				if !replay.Batch || len(replay.IDs) != 2 || replay.CreatedMS != testMS {
					t.Errorf("replay %+v", replay)
				}
				answers[replay.IDs[0]]++
				losers = append(losers, mine...)
			}
		})
	}
	close(start)
	wg.Wait()
	if len(winners) != 1 || len(answers) != 1 || answers[winners[0]] != 32 {
		t.Fatalf("winners %v answers %v", winners, answers)
	}
	for _, x := range losers {
		rec, err := stores[0].Get(ctx, x)
		switch {
		case errors.Is(err, registry.ErrNotFound): // never written (one script)
		case err == nil && rec.State == registry.Compensated && rec.Last().Reason == ReasonIdempotencyReplay: // voided (Cluster)
		default:
			t.Fatalf("loser's ID %s: %+v, %v", x, rec, err)
		}
	}
	if got, err := stores[0].ExpiredShard(ctx, 3, testMS+1, 100); err != nil || len(got) != 2 {
		t.Fatalf("deadline entries: %v, %v; want only the winner's 2", got, err)
	}
	mu.Lock()
	t.Logf("batch sizes %v; replays %d, voided records %d", batches,
		stores[0].Stats().Replays+stores[1].Stats().Replays, stores[0].Stats().Voided+stores[1].Stats().Voided)
	mu.Unlock()
	// An entry past its TTL by the caller's clock is replaced.
	iss := pending(id(50))
	iss.Idem = &registry.IdemEntry{KeyHash: kh, IDs: []idcodec.ID{id(50)}, CreatedMS: testMS + 60_000}
	if replay, err := stores[1].Register(ctx, iss, 60_000, testMS+60_000); err != nil || replay != nil {
		t.Fatalf("after ttl: replay %v err %v", replay, err)
	}
}

// TestConcurrentTransitions: commit and compensate racing on the same IDs
// from two Store instances serialize: every ID ends compensated with one
// compensated step, at most one committed step, and exactly one caller
// was told Applied for its compensation.
func TestConcurrentTransitions(t *testing.T) {
	concurrentTransitions(t, Config{Prefix: prefix()})
}

func concurrentTransitions(t *testing.T, cfg Config) {
	stores := []*Store{open(t, cfg), open(t, cfg)}
	ctx := context.Background()
	var ids []idcodec.ID
	for i := uint64(0); i < 40; i++ {
		ids = append(ids, id(i*37))
	}
	iss := pending(ids...)
	for i := range iss.Records {
		iss.Records[i].DeadlineMS = testMS + 10
	}
	if _, err := stores[0].Register(ctx, iss, 0, testMS); err != nil {
		t.Fatal(err)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		applied = map[idcodec.ID]map[registry.State]int{}
	)
	for _, x := range ids {
		applied[x] = map[registry.State]int{}
	}
	for _, x := range ids {
		for g := 0; g < 8; g++ {
			wg.Go(func() {
				to := registry.Committed
				if g%2 == 1 {
					to = registry.Compensated
				}
				_, out, err := stores[g%2^(g/2)%2].Transition(ctx, x, registry.Change{To: to, NowMS: testMS + int64(g), Actor: "t"})
				if err != nil {
					if !(to == registry.Committed && errors.Is(err, registry.ErrConflict)) {
						t.Error(err)
					}
					return
				}
				if out == registry.Applied {
					mu.Lock()
					applied[x][to]++
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	for _, x := range ids {
		rec, err := stores[1].Get(ctx, x)
		if err != nil {
			t.Fatal(err)
		}
		counts := map[registry.State]int{}
		for _, st := range rec.History {
			counts[st.State]++
		}
		if rec.State != registry.Compensated || counts[registry.Compensated] != 1 || counts[registry.Committed] > 1 || counts[registry.Pending] != 1 {
			t.Fatalf("%s: %s, history %+v", x, rec.State, rec.History)
		}
		if applied[x][registry.Compensated] != 1 || applied[x][registry.Committed] != counts[registry.Committed] {
			t.Fatalf("%s: applied %v, history %+v", x, applied[x], rec.History)
		}
	}
	if got, _ := stores[0].ExpiredShard(ctx, 3, testMS+10, 100); len(got) != 0 {
		t.Fatalf("deadline entries left after compensation: %d", len(got))
	}
	t.Logf("CAS retries: %d + %d", stores[0].Stats().CASRetries, stores[1].Stats().CASRetries)
}

func TestTransitionOutcomes(t *testing.T) {
	s := open(t, Config{Retention: time.Hour, TombstoneTTL: 2 * time.Hour})
	ctx := context.Background()
	if _, err := s.Register(ctx, pending(id(1)), 0, testMS); err != nil {
		t.Fatal(err)
	}
	sweep := registry.Change{To: registry.Compensated, From: registry.Pending, Reason: "timeout", Actor: "system", NowMS: 9}
	tests := []struct {
		name    string
		id      idcodec.ID
		ch      registry.Change
		want    registry.Outcome
		wantErr error
	}{
		{"commit pending", id(1), registry.Change{To: registry.Committed, NowMS: 2}, registry.Applied, nil},
		{"commit again", id(1), registry.Change{To: registry.Committed, NowMS: 3}, registry.Replayed, nil},
		{"sweep committed", id(1), sweep, 0, registry.ErrConflict},
		{"compensate committed", id(1), registry.Change{To: registry.Compensated, Reason: "r", NowMS: 4}, registry.Applied, nil},
		{"compensate again", id(1), registry.Change{To: registry.Compensated, Reason: "r", NowMS: 5}, registry.Replayed, nil},
		{"commit compensated", id(1), registry.Change{To: registry.Committed, NowMS: 6}, 0, registry.ErrConflict},
		{"commit unknown", id(2), registry.Change{To: registry.Committed, NowMS: 3}, 0, registry.ErrNotFound},
		{"sweep unknown", id(2), sweep, 0, registry.ErrConflict},
		{"null compensation", id(2), registry.Change{To: registry.Compensated, NowMS: 4}, registry.Tombstoned, nil},
		{"null compensation again", id(2), registry.Change{To: registry.Compensated, NowMS: 5}, registry.Replayed, nil},
		{"commit tombstone", id(2), registry.Change{To: registry.Committed, NowMS: 5}, 0, registry.ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, out, err := s.Transition(ctx, tt.id, tt.ch)
			if !errors.Is(err, tt.wantErr) || out != tt.want {
				t.Fatalf("got %v, %v; want %v, %v", out, err, tt.want, tt.wantErr)
			}
		})
	}
	rec, err := s.Get(ctx, id(1))
	if err != nil || len(rec.History) != 3 || rec.IssuedAtMS != testMS || rec.Subject != "svc-payments" {
		t.Fatalf("record %+v, %v", rec, err)
	}
	tomb, err := s.Get(ctx, id(2))
	if err != nil || !tomb.Tombstone || tomb.State != registry.Compensated {
		t.Fatalf("tombstone %+v, %v", tomb, err)
	}
	// The tombstone's bucket keeps TombstoneTTL, even after a later write.
	if _, err := s.Register(ctx, pending(id(3)), 0, testMS); err != nil {
		t.Fatal(err)
	}
	key, _ := s.bucket(id(2))
	if ttl := raw(t, shared.Addr()).PTTL(ctx, key).Val(); ttl <= time.Hour+59*time.Minute {
		t.Fatalf("tombstone bucket TTL %v, want about 2h", ttl)
	}
	if _, err := s.Register(ctx, pending(id(2)), 0, testMS); !errors.Is(err, registry.ErrCollision) {
		t.Fatalf("registration over a tombstone: %v", err)
	}
}

func TestDeadlineIndex(t *testing.T) {
	s := open(t, Config{Shard: 3})
	ctx := context.Background()
	iss := pending(id(1), id(2), id(3))
	for i := range iss.Records {
		iss.Records[i].DeadlineMS = int64(100 * (i + 1))
	}
	if _, err := s.Register(ctx, iss, 0, testMS); err != nil {
		t.Fatal(err)
	}
	got, err := s.Expired(ctx, 250, 10)
	if err != nil || len(got) != 2 || got[0] != id(1) || got[1] != id(2) {
		t.Fatalf("Expired = %v, %v", got, err)
	}
	if got, _ := s.Expired(ctx, 200, 10); len(got) != 2 {
		t.Fatalf("deadline equal to now not expired: %v", got)
	}
	if got, _ := s.Expired(ctx, 1000, 1); len(got) != 1 || got[0] != id(1) {
		t.Fatalf("limit 1: %v", got)
	}
	if got, _ := s.ExpiredShard(ctx, 4, 1000, 10); len(got) != 0 {
		t.Fatalf("another shard: %v", got)
	}
	if _, _, err := s.Transition(ctx, id(1), registry.Change{To: registry.Committed, NowMS: 5}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Transition(ctx, id(3), registry.Change{To: registry.Compensated, From: registry.Pending, Reason: "timeout", NowMS: 5}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Expired(ctx, 1000, 10)
	if len(got) != 1 || got[0] != id(2) {
		t.Fatalf("after commit and sweep: %v", got)
	}
}

func TestHighWater(t *testing.T) {
	s := open(t, Config{Shard: 5})
	ctx := context.Background()
	if hw, err := s.HighWater(ctx); err != nil || hw != 0 {
		t.Fatalf("fresh: %d, %v", hw, err)
	}
	for _, tt := range []struct{ raise, want uint64 }{
		{1 << 40, 1 << 40},
		{1<<53 + 1, 1<<53 + 1}, // above what a Lua number holds exactly
		{1<<53 + 3, 1<<53 + 3},
		{1 << 41, 1<<53 + 3}, // never lowered
		{idcodec.MaxCounter, idcodec.MaxCounter},
	} {
		if err := s.RaiseHighWater(ctx, tt.raise); err != nil {
			t.Fatal(err)
		}
		if hw, err := s.HighWater(ctx); err != nil || hw != tt.want {
			t.Fatalf("after raise %d: %d, %v; want %d", tt.raise, hw, err, tt.want)
		}
	}
	other := open(t, Config{Shard: 6, Prefix: s.cfg.Prefix})
	if hw, _ := other.HighWater(ctx); hw != 0 {
		t.Fatalf("shard 6 sees shard 5's mark %d", hw)
	}
}

func TestCloseFlushesAndRefuses(t *testing.T) {
	cfg := Config{Prefix: prefix()}
	s := open(t, cfg)
	ctx := context.Background()
	var wg sync.WaitGroup
	acked := make(chan idcodec.ID, 200)
	for i := 0; i < 200; i++ {
		wg.Go(func() {
			if _, err := s.Register(ctx, pending(id(uint64(i))), 0, testMS); err == nil {
				acked <- id(uint64(i))
			} else if !errors.Is(err, registry.ErrClosed) {
				t.Error(err)
			}
		})
	}
	time.Sleep(time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(acked)
	if _, err := s.Register(ctx, pending(id(9999)), 0, testMS); !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
	if _, _, err := s.Transition(ctx, id(0), registry.Change{To: registry.Committed}); !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("Transition after close: %v", err)
	}
	if _, err := s.Get(ctx, id(0)); !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("Get after close: %v", err)
	}
	if _, err := s.Expired(ctx, 0, 1); !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("Expired after close: %v", err)
	}
	if err := s.Ping(ctx); !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("Ping after close: %v", err)
	}
	if err := s.RaiseHighWater(ctx, 1); !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("RaiseHighWater after close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	s2 := open(t, cfg)
	if err := s2.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	n := 0
	for x := range acked {
		n++
		if _, err := s2.Get(ctx, x); err != nil {
			t.Fatalf("acknowledged %s lost: %v", x, err)
		}
	}
	t.Logf("%d of 200 registrations acknowledged before close", n)
}

func TestCheckEvictionPolicy(t *testing.T) {
	ctx := context.Background()
	if err := open(t, Config{}).CheckEvictionPolicy(ctx); err != nil {
		t.Fatalf("noeviction server: %v", err)
	}
	lru := redisharnessStandalone(t, "allkeys-lru")
	if err := open(t, Config{Addrs: []string{lru}}).CheckEvictionPolicy(ctx); !errors.Is(err, ErrEvictionPolicy) {
		t.Fatalf("allkeys-lru server: %v", err)
	} else {
		t.Log(err)
	}
	// A user that may do everything but CONFIG.
	admin := raw(t, shared.Addr())
	if err := admin.Do(ctx, "ACL", "SETUSER", "noconfig", "on", ">pw", "~*", "&*", "+@all", "-config").Err(); err != nil {
		t.Fatal(err)
	}
	s := open(t, Config{Username: "noconfig", Password: "pw"})
	if err := s.CheckEvictionPolicy(ctx); !errors.Is(err, ErrPolicyUnknown) {
		t.Fatalf("without CONFIG permission: %v", err)
	} else {
		t.Log(err)
	}
	if _, err := s.Register(ctx, pending(id(1)), 0, testMS); err != nil {
		t.Fatalf("the restricted user cannot register: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero", Config{}, true},
		{"max shard", Config{Shard: idcodec.MaxShard}, true},
		{"shard too big", Config{Shard: idcodec.MaxShard + 1}, false},
		{"negative batch", Config{MaxBatch: -1}, false},
		{"negative replicas", Config{WaitReplicas: -1}, false},
		{"negative timeout", Config{WaitTimeout: -1}, false},
		{"negative retention", Config{Retention: -1}, false},
		{"brace in prefix", Config{Prefix: "a{b"}, false},
		{"sentinel and cluster", Config{MasterName: "m", Cluster: true, Addrs: []string{"x:1"}}, false},
		{"sentinel without sentinels", Config{MasterName: "m"}, false},
		{"empty address", Config{Addrs: []string{""}}, false},
		{"durable", Config{WaitReplicas: 1, WaitTimeout: time.Second}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate = %v", err)
			}
		})
	}
}

func TestOpenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := Open(ctx, Config{Addrs: []string{"127.0.0.1:1"}})
	if !errors.Is(err, registry.ErrUnavailable) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open of a closed port: %v", err)
	}
}

// TestPoisonOpFailsAlone: a batch whose script fails on one op (a bucket key
// of the wrong type) is resent op by op: only that op fails.
func TestPoisonOpFailsAlone(t *testing.T) {
	s := open(t, Config{})
	ctx := context.Background()
	poison := id(1 << 30)
	key, _ := s.bucket(poison)
	if err := raw(t, shared.Addr()).Set(ctx, key, "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	var batch []*op
	for _, x := range []idcodec.ID{id(1), poison, id(3)} {
		iss := pending(x)
		k, f := s.bucket(x)
		batch = append(batch, &op{kind: opRegister, iss: iss, keys: []string{k}, fields: []string{f},
			vals: [][]byte{appendValue(nil, &iss.Records[0], s.nonce())}, done: make(chan error, 1)})
	}
	s.flush(batch) // directly: one batch for sure
	if batch[0].err != nil || batch[2].err != nil || !errors.Is(batch[1].err, registry.ErrUnavailable) {
		t.Fatalf("errors %v / %v / %v", batch[0].err, batch[1].err, batch[2].err)
	}
	for _, x := range []idcodec.ID{id(1), id(3)} {
		if _, err := s.Get(ctx, x); err != nil {
			t.Fatalf("%s: %v", x, err)
		}
	}
	t.Log(batch[1].err)
}

// What cmd/idgen needs of a registry in Redis mode (its localStore without
// the range source; HighWater takes a ctx here).
var _ interface {
	generate.Registry
	Ping(ctx context.Context) error
	RaiseHighWater(ctx context.Context, v uint64) error
	HighWater(ctx context.Context) (uint64, error)
	Expired(ctx context.Context, nowMS int64, limit int) ([]idcodec.ID, error)
	PurgeIdempotency(ctx context.Context, cutoffMS int64, limit int) (int, error)
	Close() error
} = (*Store)(nil)
