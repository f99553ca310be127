package redisstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/registrytest"
)

// TestCluster runs against a Redis Cluster of 3 masters: registrations
// spanning many buckets, slots and shards; collisions across slots roll
// back; the idempotency race and concurrent transitions keep their
// invariants through the multi-phase flush; durable mode WAITs per node.
func TestCluster(t *testing.T) {
	c := redisharness.StartClusterT(t, redisharness.Options{}, 3)
	addrs := c.Addrs()
	ctx := context.Background()

	t.Run("batches span slots", func(t *testing.T) {
		// One seed address: Open detects the cluster.
		s := open(t, Config{Addrs: addrs[:1]})
		if !s.Cluster() {
			t.Fatal("cluster not detected")
		}
		var all []idcodec.ID
		errs := make(chan error, 20)
		for i := range 20 {
			var ids []idcodec.ID
			for j := range 150 {
				ids = append(ids, idcodec.MustCompose(idcodec.Fields{TimestampMS: testMS, Worker: 1, Shard: uint8(j % 5), Counter: uint64(i*100_000 + j*131)}))
			}
			all = append(all, ids...)
			iss := pending(ids...)
			for k := range iss.Records {
				iss.Records[k].DeadlineMS = testMS + int64(k)
			}
			iss.Idem = &registry.IdemEntry{KeyHash: registry.IdemKeyHash("c", string(rune('a'+i))), IDs: ids, Batch: true, CreatedMS: testMS}
			go func() {
				_, err := s.Register(ctx, iss, 60_000, testMS)
				errs <- err
			}()
		}
		for range 20 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		slots := map[int]bool{}
		for _, x := range all {
			rec, err := s.Get(ctx, x)
			if err != nil || rec.State != registry.Pending || rec.Subject != "svc-payments" {
				t.Fatalf("%s: %+v, %v", x, rec, err)
			}
			k, _ := s.bucket(x)
			slots[slot(k)] = true
		}
		n := 0
		for sh := range uint8(5) {
			got, err := s.ExpiredShard(ctx, sh, testMS+1000, 10_000)
			if err != nil {
				t.Fatal(err)
			}
			n += len(got)
		}
		if n != len(all) {
			t.Fatalf("%d deadline entries for %d IDs", n, len(all))
		}
		// A transition removes the entry from its shard's index.
		if _, _, err := s.Transition(ctx, all[1], registry.Change{To: registry.Committed, NowMS: testMS}); err != nil {
			t.Fatal(err)
		}
		got, _ := s.ExpiredShard(ctx, 1, testMS+1000, 10_000)
		for _, x := range got {
			if x == all[1] {
				t.Fatal("committed ID still in the deadline index")
			}
		}
		st := s.Stats()
		t.Logf("%d IDs in %d slots; %d flushes, %d round trips, %d ops", len(all), len(slots), st.Batches, st.RoundTrips, st.Ops)
	})

	t.Run("collision across slots writes nothing", func(t *testing.T) {
		first := open(t, Config{Addrs: addrs})
		s := open(t, Config{Addrs: addrs, Prefix: first.cfg.Prefix})
		if _, err := first.Register(ctx, pending(id(1)), 0, testMS); err != nil {
			t.Fatal(err)
		}
		fresh := []idcodec.ID{id(1 << 20), id(2 << 20), id(3 << 20)} // other buckets, other slots
		iss := pending(append(fresh, id(1))...)
		iss.Idem = &registry.IdemEntry{KeyHash: registry.IdemKeyHash("c", "collide"), IDs: fresh, CreatedMS: testMS}
		if _, err := s.Register(ctx, iss, 60_000, testMS); !errors.Is(err, registry.ErrCollision) {
			t.Fatalf("err = %v, want ErrCollision", err)
		}
		for _, x := range fresh {
			if _, err := s.Get(ctx, x); !errors.Is(err, registry.ErrNotFound) {
				t.Fatalf("%s of the failed issue: %v", x, err)
			}
		}
		iss = pending(id(5))
		iss.Idem = &registry.IdemEntry{KeyHash: registry.IdemKeyHash("c", "collide"), IDs: []idcodec.ID{id(5)}, CreatedMS: testMS}
		if replay, err := s.Register(ctx, iss, 60_000, testMS); err != nil || replay != nil {
			t.Fatalf("idempotency entry of the failed issue: %v, %v", replay, err)
		}
	})

	t.Run("state maps", func(t *testing.T) {
		stateMapScenario(t, open(t, Config{Addrs: addrs, Shard: 3, Retention: time.Hour, TombstoneTTL: 2 * time.Hour}))
	})

	t.Run("conformance", func(t *testing.T) {
		registrytest.Run(t, opener(Config{Addrs: addrs}), registrytest.IdempotencyExpiresByItself)
	})

	t.Run("across stores", func(t *testing.T) { acrossStores(t, Config{Addrs: addrs}) })

	t.Run("high water", func(t *testing.T) {
		s := open(t, Config{Addrs: addrs, Shard: 9})
		if err := s.RaiseHighWater(ctx, 1<<54); err != nil {
			t.Fatal(err)
		}
		if hw, err := s.HighWater(ctx); err != nil || hw != 1<<54 {
			t.Fatalf("%d, %v", hw, err)
		}
		if err := s.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		if err := s.CheckEvictionPolicy(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("durable without replicas fails", func(t *testing.T) {
		// The harness's masters have no replicas: WAIT 1 on each node's
		// connection returns 0, and the batch fails.
		s := open(t, Config{Addrs: addrs, WaitReplicas: 1, WaitTimeout: 50 * time.Millisecond})
		_, err := s.Register(ctx, pending(id(7), id(7<<20)), 0, testMS)
		if !errors.Is(err, registry.ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
		t.Log(err)
	})
}

// TestClusterNodeRestartedEmpty: in Cluster mode every slot holds the epoch
// marker; a master restarted without persistence (empty, its slots kept)
// makes the Store refuse within refusedWithin, and a Store opened later
// refuses too, until ResetEpoch.
func TestClusterNodeRestartedEmpty(t *testing.T) {
	c := redisharness.StartClusterT(t, redisharness.Options{}, 3)
	s := open(t, Config{Addrs: c.Addrs(), CheckInterval: checkEvery})
	ctx := context.Background()
	if s.Epoch() == "" || s.Refusing() != nil {
		t.Fatalf("fresh cluster: epoch %q, Refusing() = %v", s.Epoch(), s.Refusing())
	}
	pipe := s.client.Pipeline()
	gets := make([]*redis.StringCmd, clusterSlots)
	for sl := range clusterSlots {
		if slot(s.markerKey(sl)) != sl {
			t.Fatalf("marker key %s is in slot %d, want %d", s.markerKey(sl), slot(s.markerKey(sl)), sl)
		}
		gets[sl] = pipe.Get(ctx, s.markerKey(sl))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	want := marker{epoch: s.Epoch()}.String()
	for sl, g := range gets {
		if g.Val() != want {
			t.Fatalf("marker of slot %d: %q, want %q", sl, g.Val(), want)
		}
	}
	is := &issuer{s: s}
	is.registerN(t, 50)
	// The last node: redis-cli gives slot 0 (the root) to the first.
	restart(t, c.Nodes()[2])
	waitRefused(t, is)
	wantRefusing(t, s, ReasonEpochMissing)
	later := open(t, Config{Addrs: c.Addrs(), Prefix: s.cfg.Prefix})
	if err := later.Ping(ctx); !errors.Is(err, ErrForgetful) {
		t.Fatalf("a Store opened after the loss: Ping %v", err)
	}
	// The operator resets the epoch: every slot's marker is written again.
	resetServes(t, s, Config{Addrs: c.Addrs()}, 1<<30)
}
