package redisstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// TestDurableWait: with WaitReplicas 1 a registration returns after the
// replica has it; with the replica frozen (SIGSTOP) it fails with
// ErrUnavailable within about WaitTimeout, with no replay; after the replica
// thaws, registrations succeed again.
func TestDurableWait(t *testing.T) {
	g := redisharness.StartReplicatedT(t, redisharness.Options{AppendFsyncAlways: true}, 1, 0)
	const wait = 300 * time.Millisecond
	s := open(t, Config{Addrs: []string{g.Primary().Addr()}, WaitReplicas: 1, WaitTimeout: wait})
	ctx := context.Background()
	// Right after start the replica may not acknowledge yet: the first
	// flushes may fail, as they should.
	for attempt := 1; ; attempt++ {
		_, err := s.Register(ctx, pending(id(1)), 0, testMS)
		if err == nil {
			t.Logf("first durable registration after %d attempt(s)", attempt)
			break
		}
		if !errors.Is(err, registry.ErrUnavailable) || attempt == 20 {
			t.Fatal(err)
		}
	}
	if n := s.Stats().ReplicasAcked; n != 1 {
		t.Fatalf("replicas acknowledged after a durable registration: %d, want 1", n)
	}
	replica := g.Replicas()[0]
	key, field := s.bucket(id(1))
	if v, err := raw(t, replica.Addr()).HGet(ctx, key, field).Result(); err != nil || v == "" {
		t.Fatalf("acknowledged record not on the replica: %q, %v", v, err)
	}
	if err := replica.Stop(); err != nil {
		t.Fatal(err)
	}
	thawed := false
	defer func() {
		if !thawed {
			_ = replica.Cont()
		}
	}()
	iss := pending(id(2))
	iss.Idem = &registry.IdemEntry{KeyHash: registry.IdemKeyHash("a", "durable"), IDs: []idcodec.ID{id(2)}, CreatedMS: testMS}
	t0 := time.Now()
	replay, err := s.Register(ctx, iss, 60_000, testMS)
	took := time.Since(t0)
	if !errors.Is(err, registry.ErrUnavailable) || replay != nil {
		t.Fatalf("with the replica frozen: replay %v, err %v", replay, err)
	}
	if took < wait || took > wait+time.Second {
		t.Fatalf("failed after %v, want about %v", took, wait)
	}
	t.Logf("frozen replica: failed after %v: %v", took.Round(time.Millisecond), err)
	if _, _, err := s.Transition(ctx, id(1), registry.Change{To: registry.Committed, NowMS: testMS}); !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("transition with the replica frozen: %v", err)
	}
	if st := s.Stats(); st.WaitFailures < 2 || st.ReplicasAcked != 0 {
		t.Fatalf("wait failures %d, replicas acknowledged %d; want ≥ 2 and 0", st.WaitFailures, st.ReplicasAcked)
	}
	if err := replica.Cont(); err != nil {
		t.Fatal(err)
	}
	thawed = true
	// The same request again: it answers with the entry written (on the
	// primary) by the failed attempt; the WAIT of this flush covers it.
	iss2 := pending(id(3))
	iss2.Idem = &registry.IdemEntry{KeyHash: iss.Idem.KeyHash, IDs: []idcodec.ID{id(3)}, CreatedMS: testMS}
	replay, err = s.Register(ctx, iss2, 60_000, testMS)
	if err != nil || replay == nil || replay.IDs[0] != id(2) {
		t.Fatalf("after thaw: replay %+v, err %v", replay, err)
	}
	if _, err := s.Get(ctx, id(3)); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("the replaying call's own ID was registered: %v", err)
	}
	if _, err := raw(t, replica.Addr()).HGet(ctx, key, "2").Result(); err != nil {
		t.Fatalf("replayed ID not on the replica: %v", err)
	}
}

// TestSentinelFailover: registering from several goroutines in durable mode
// while the primary is SIGKILLed; every registration that returned nil is on
// the promoted replica. The old primary then comes back as a replica and
// registrations succeed again; the Store never refuses (the epoch marker is
// on the promoted replica).
func TestSentinelFailover(t *testing.T) {
	g := redisharness.StartReplicatedT(t, redisharness.Options{AppendFsyncAlways: true}, 1, 3)
	cfg := Config{
		Addrs: g.SentinelAddrs(), MasterName: g.MasterName(), Prefix: prefix(),
		WaitReplicas: 1, WaitTimeout: 500 * time.Millisecond,
	}
	s := open(t, cfg)
	ctx := context.Background()
	var (
		next          atomic.Uint64
		acked, failed atomic.Int64
		mu            sync.Mutex
		ackedIDs      []idcodec.ID
		stop          = make(chan struct{})
		wg            sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c := next.Add(4) - 4
				ids := []idcodec.ID{id(c), id(c + 1), id(c + 2), id(c + 3)}
				rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := s.Register(rctx, pending(ids...), 0, testMS)
				cancel()
				if err != nil {
					if !errors.Is(err, registry.ErrUnavailable) {
						t.Errorf("register: %v", err)
					}
					failed.Add(1)
					time.Sleep(20 * time.Millisecond)
					continue
				}
				acked.Add(1)
				mu.Lock()
				ackedIDs = append(ackedIDs, ids...)
				mu.Unlock()
			}
		})
	}
	// The kill comes once durable registrations are acknowledged (the
	// replica has confirmed writes, the epoch marker among the first): a
	// fixed pause could kill the primary before any, on a loaded machine.
	if _, ok := proc.Poll(20*time.Second, func() bool { return acked.Load() >= 20 }); !ok {
		close(stop)
		wg.Wait()
		t.Fatalf("%d registrations acknowledged within 20 s before the kill, want 20", acked.Load())
	}
	before := acked.Load()
	old, err := g.KillPrimary()
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	newAddr, err := g.WaitFailover(fctx, old.Addr())
	cancel()
	if err != nil {
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	t.Logf("failover %s → %s in %v; %d registrations acknowledged before the kill", old.Addr(), newAddr, time.Since(t0).Round(time.Millisecond), before)
	// The new primary has no replica until the old one is back: durable
	// registrations fail meanwhile. Bring it back and wait for success.
	restart(t, old)
	atFailover := acked.Load()
	deadline := time.Now().Add(20 * time.Second)
	for acked.Load() < atFailover+20 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d acknowledged, %d failed (ErrUnavailable); %d after the old primary rejoined; stats %+v",
		acked.Load(), failed.Load(), acked.Load()-atFailover, s.Stats())
	if acked.Load() < atFailover+20 {
		t.Fatalf("registrations did not resume after the old primary rejoined as a replica")
	}
	// The marker replicated with the data: the promoted replica is the same
	// registry, not a forgotten one.
	if r := s.Refusing(); r != nil {
		t.Fatalf("after a failover to a replica with the data: Refusing() = %v", r)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping after the failover: %v", err)
	}
	check := open(t, Config{Addrs: []string{newAddr}, Prefix: cfg.Prefix})
	if check.Epoch() != s.Epoch() {
		t.Fatalf("epoch on the new primary %q, the Store opened %q", check.Epoch(), s.Epoch())
	}
	mu.Lock()
	defer mu.Unlock()
	for _, x := range ackedIDs {
		if _, err := check.Get(ctx, x); err != nil {
			t.Fatalf("acknowledged %s not on the new primary: %v", x, err)
		}
	}
	t.Logf("all %d acknowledged IDs are on the new primary", len(ackedIDs))
}
