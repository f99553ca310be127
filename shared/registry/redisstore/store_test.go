package redisstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/registrytest"
)

// TestRegistry runs the registry conformance suite on the shared server.
// Redis expires idempotency entries by their PX, so PurgeIdempotency does
// nothing.
func TestRegistry(t *testing.T) {
	registrytest.Run(t, opener(Config{}), registrytest.IdempotencyExpiresByItself)
}

// TestAcrossStores: the suite's races, spread over two Store instances of
// one registry: one idempotency winner, serialized transitions (the
// compare-and-set across instances), one data key.
func TestAcrossStores(t *testing.T) {
	acrossStores(t, Config{})
}

func acrossStores(t *testing.T, cfg Config) {
	two := func(t *testing.T) []registrytest.Store {
		c := cfg
		c.Prefix, c.Shard = prefix(), registrytest.Shard
		return []registrytest.Store{open(t, c), open(t, c)}
	}
	t.Run("IdempotencyOneWinner", func(t *testing.T) { registrytest.IdempotencyOneWinner(t, two(t)...) })
	t.Run("ConcurrentTransitions", func(t *testing.T) { registrytest.ConcurrentTransitions(t, two(t)...) })
	t.Run("KeyStore", func(t *testing.T) { registrytest.KeyStore(t, two(t)...) })
}

// TestCollisionOnSharedField: a bucket field is addressed by (shard,
// counter) alone; another ID on an occupied field is a collision (counted,
// told to the hook) that writes nothing, and Get of it is ErrNotFound.
func TestCollisionOnSharedField(t *testing.T) {
	var collided []idcodec.ID
	s := open(t, Config{Collision: func(x idcodec.ID) { collided = append(collided, x) }})
	ctx := context.Background()
	if _, err := s.Register(ctx, pending(id(1)), 60_000, testMS); err != nil {
		t.Fatal(err)
	}
	other := idcodec.MustCompose(idcodec.Fields{TimestampMS: testMS + 5, Worker: 9, Shard: 3, Counter: 1})
	iss := pending(id(3), other)
	iss.Records[0].DeadlineMS = testMS
	if _, err := s.Register(ctx, iss, 60_000, testMS); !errors.Is(err, registry.ErrCollision) {
		t.Fatalf("err = %v, want ErrCollision", err)
	}
	if _, err := s.Get(ctx, id(3)); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("half-written issue: id 3 err = %v", err)
	}
	if got, _ := s.Expired(ctx, testMS, 10); len(got) != 0 {
		t.Fatalf("deadline of the failed issue was written: %v", got)
	}
	if _, err := s.Get(ctx, other); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Get of another ID on an occupied field: %v", err)
	}
	if _, _, err := s.Transition(ctx, other, registry.Change{To: registry.Compensated, NowMS: testMS}); !errors.Is(err, registry.ErrCollision) {
		t.Fatalf("null compensation of another ID on an occupied field: %v", err)
	}
	if st := s.Stats(); st.Collisions != 2 || len(collided) != 2 {
		t.Fatalf("collisions: stats %d, hook %v", st.Collisions, collided)
	}
}

// TestTombstoneTTL: a bucket holding a tombstone keeps TombstoneTTL, even
// after a later write to it (at Retention).
func TestTombstoneTTL(t *testing.T) {
	s := open(t, Config{Retention: time.Hour, TombstoneTTL: 2 * time.Hour})
	ctx := context.Background()
	if _, out, err := s.Transition(ctx, id(2), registry.Change{To: registry.Compensated, NowMS: testMS}); err != nil || out != registry.Tombstoned {
		t.Fatalf("null compensation: %v, %v", out, err)
	}
	if _, err := s.Register(ctx, pending(id(3)), 0, testMS); err != nil {
		t.Fatal(err)
	}
	key, _ := s.bucket(id(2))
	if ttl := raw(t, shared.Addr()).PTTL(ctx, key).Val(); ttl <= time.Hour+59*time.Minute {
		t.Fatalf("tombstone bucket TTL %v, want about 2h", ttl)
	}
}

// TestShardsApart: the deadline index and the high-water mark are per
// shard.
func TestShardsApart(t *testing.T) {
	s := open(t, Config{Shard: 5})
	other := open(t, Config{Shard: 6, Prefix: s.cfg.Prefix})
	ctx := context.Background()
	iss := pending(id(1))
	iss.Records[0].DeadlineMS = testMS
	if _, err := s.Register(ctx, iss, 0, testMS); err != nil {
		t.Fatal(err)
	}
	if got, err := s.ExpiredShard(ctx, 3, testMS, 10); err != nil || len(got) != 1 {
		t.Fatalf("ExpiredShard of the ID's shard: %v, %v", got, err)
	}
	if got, _ := s.Expired(ctx, testMS, 10); len(got) != 0 {
		t.Fatalf("Expired of shard 5 lists an ID of shard 3: %v", got)
	}
	if err := s.RaiseHighWater(ctx, 1<<40); err != nil {
		t.Fatal(err)
	}
	if hw, _ := other.HighWater(ctx); hw != 0 {
		t.Fatalf("shard 6 sees shard 5's mark %d", hw)
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
	registrytest.ValidateConfig(t, func(shard uint8, maxBatch int) Config { return Config{Shard: shard, MaxBatch: maxBatch} },
		[]registrytest.ConfigCase[Config]{
			{Name: "negative replicas", Cfg: Config{WaitReplicas: -1}},
			{Name: "negative timeout", Cfg: Config{WaitTimeout: -1}},
			{Name: "negative retention", Cfg: Config{Retention: -1}},
			{Name: "brace in prefix", Cfg: Config{Prefix: "a{b"}},
			{Name: "sentinel and cluster", Cfg: Config{MasterName: "m", Cluster: true, Addrs: []string{"x:1"}}},
			{Name: "sentinel without sentinels", Cfg: Config{MasterName: "m"}},
			{Name: "empty address", Cfg: Config{Addrs: []string{""}}},
			{Name: "durable", Cfg: Config{WaitReplicas: 1, WaitTimeout: time.Second}, Valid: true},
		}...)
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
			vals: [][]byte{appendValue(nil, &iss.Records[0], s.nonce())}, done: make(chan struct{}, 1)})
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
