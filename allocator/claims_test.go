package allocator

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/harness/zkharness"
	"github.com/idgen/idgen/shared/generator"
)

// TestConcurrentClaimsDisjoint: 8 allocators on a 3-server ensemble claim
// ranges of random sizes concurrently. No counter is handed out twice, every
// allocator holds a distinct worker slot, and with no lost replies the ranges
// tile the counter exactly (nothing burnt, nothing skipped).
func TestConcurrentClaimsDisjoint(t *testing.T) {
	e := zkharness.StartT(t, zkharness.Options{Servers: 3})
	root := testRoot(t)
	const (
		allocators = 8
		workers    = 3  // goroutines per allocator
		claims     = 40 // per goroutine
	)
	as := make([]*Allocator, allocators)
	for i := range as {
		as[i] = openT(t, Config{Servers: e.Addrs(), Root: root, Shard: 7, Address: "10.0.0.1:8080", Version: "test"})
	}
	slots := map[uint16]int{}
	for i, a := range as {
		w, err := a.Worker(time.Now())
		if err != nil {
			t.Fatalf("allocator %d: Worker: %v", i, err)
		}
		if j, dup := slots[w]; dup {
			t.Fatalf("allocators %d and %d share worker slot %d", j, i, w)
		}
		slots[w] = i
	}

	var l ledger
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, a := range as {
		for range workers {
			wg.Go(func() {
				for range claims {
					n := 1 + rand.Uint64N(5000)
					r, err := a.ClaimRange(ctx, n)
					if err != nil {
						t.Errorf("allocator %d: ClaimRange(%d): %v", i, n, err)
						return
					}
					if r.Len() != n {
						t.Errorf("allocator %d: asked %d, got %+v", i, n, r)
					}
					l.add(i, r)
				}
			})
		}
	}
	wg.Wait()
	total, top := l.check(t)
	if got, want := l.len(), allocators*workers*claims; got != want {
		t.Fatalf("%d ranges claimed, want %d", got, want)
	}
	var conflicts, lost uint64
	for _, a := range as {
		s := a.Stats()
		conflicts += s.CASConflicts
		lost += s.LostReplies
		if s.ClaimErrors != 0 {
			t.Errorf("claim errors: %+v", s)
		}
	}
	next := counterNext(t, rawConn(t, e.Addrs(), nil), root, 7)
	if lost == 0 && (total != next || top != next) {
		t.Errorf("ranges cover %d counters up to %d, counter is at %d: want an exact tiling", total, top, next)
	}
	if next < top {
		t.Errorf("counter %d below the highest range end %d", next, top)
	}
	t.Logf("%d ranges, %d counters, %d CAS conflicts, %d lost replies", l.len(), total, conflicts, lost)

	ms, err := as[0].Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != allocators {
		t.Fatalf("Members: %d, want %d: %+v", len(ms), allocators, ms)
	}
	seen := map[uint16]bool{}
	for _, m := range ms {
		if seen[m.Worker] {
			t.Errorf("member worker %d listed twice", m.Worker)
		}
		seen[m.Worker] = true
		if _, ok := slots[m.Worker]; !ok || m.Address != "10.0.0.1:8080" || m.Version != "test" || m.SessionID == 0 || m.StartedAt.IsZero() {
			t.Errorf("unexpected member %+v", m)
		}
	}
}

// TestLeaderKilledDuringClaims: the ZooKeeper leader is killed while four
// allocators claim; claims fail for a moment at most, then resume on the new
// leader, and no range overlaps another.
func TestLeaderKilledDuringClaims(t *testing.T) {
	e := zkharness.StartT(t, zkharness.Options{Servers: 3})
	root := testRoot(t)
	const allocators = 4
	as := make([]*Allocator, allocators)
	for i := range as {
		as[i] = openT(t, Config{Servers: e.Addrs(), Root: root, SessionTimeout: 8 * time.Second})
	}

	var (
		l        ledger
		mu       sync.Mutex
		after    = make([]int, allocators)           // successful claims after the kill
		resumed  = make([]time.Duration, allocators) // first claim after the kill
		failures int
		killed   = make(chan struct{})
		killedAt time.Time
	)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i, a := range as {
		wg.Go(func() {
			for ctx.Err() == nil {
				cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
				r, err := a.ClaimRange(cctx, 1+rand.Uint64N(1000))
				ccancel()
				if err != nil {
					mu.Lock()
					failures++
					mu.Unlock()
					time.Sleep(50 * time.Millisecond)
					continue
				}
				l.add(i, r)
				select {
				case <-killed:
					mu.Lock()
					if after[i] == 0 {
						resumed[i] = time.Since(killedAt)
					}
					after[i]++
					done := true
					for _, n := range after {
						done = done && n >= 20
					}
					mu.Unlock()
					if done {
						cancel()
					}
				default:
				}
				time.Sleep(2 * time.Millisecond) // a busy instance, not a tight loop
			}
		})
	}
	proc.Eventually(t, 30*time.Second, "claims before the kill", func() bool { return l.len() >= 40 })
	before := l.len()
	lead, err := e.KillLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	killedAt = time.Now()
	mu.Unlock()
	close(killed)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	var slowest time.Duration
	for i, n := range after {
		if n < 20 {
			t.Errorf("allocator %d made only %d claims after the leader was killed", i, n)
		}
		slowest = max(slowest, resumed[i])
	}
	l.check(t)
	var lost, ours uint64
	for _, a := range as {
		s := a.Stats()
		lost += s.LostReplies
		ours += s.LostRepliesOurs
	}
	t.Logf("killed leader %d after %d claims; %d claims in all, %d failed during failover, %d lost replies (%d resolved as ours); every allocator claimed again within %v (%v)",
		lead, before, l.len(), failures, lost, ours, slowest.Round(time.Millisecond), resumed)
}

// TestCheckHighWater: the allocator refuses when the counter is below the
// registry's high-water mark, as after ZooKeeper is restored from an old
// snapshot, and ClaimRange refuses too from then on.
func TestCheckHighWater(t *testing.T) {
	root := testRoot(t)
	a := openT(t, Config{Servers: zkAddrs(t), Root: root, Shard: 3})
	ctx := context.Background()
	r, err := a.ClaimRange(ctx, 1000)
	if err != nil || r.Start != 0 || r.End != 1000 {
		t.Fatalf("first claim: %+v, %v", r, err)
	}
	for _, hw := range []uint64{0, 500, 1000} {
		if err := a.CheckHighWater(ctx, hw); err != nil {
			t.Errorf("CheckHighWater(%d) with counter at 1000: %v", hw, err)
		}
	}
	if err := a.CheckHighWater(ctx, 1001); !errors.Is(err, ErrBehindHighWater) {
		t.Errorf("CheckHighWater(1001) with counter at 1000: %v, want ErrBehindHighWater", err)
	}
	if _, err := a.ClaimRange(ctx, 10); !errors.Is(err, ErrBehindHighWater) {
		t.Errorf("ClaimRange after a failed high-water check: %v, want ErrBehindHighWater", err)
	}
	if h := a.Health(); h.LastError == "" {
		t.Errorf("Health does not report the refusal: %+v", h)
	}

	// A "restored" ZooKeeper: the counter rolled back under a fresh allocator.
	conn := rawConn(t, zkAddrs(t), nil)
	path := root + "/shards/3/counter"
	_, st, err := conn.Get(path)
	if err != nil {
		t.Fatal(err)
	}
	old, _ := encodeCounter(counterData{Next: 10, Token: "restored"})
	if _, err := conn.Set(path, old, st.Version); err != nil {
		t.Fatal(err)
	}
	b := openT(t, Config{Servers: zkAddrs(t), Root: root, Shard: 3})
	if err := b.CheckHighWater(ctx, 1000); !errors.Is(err, ErrBehindHighWater) {
		t.Errorf("CheckHighWater(1000) with counter rolled back to 10: %v", err)
	}
}

// TestCounterMove lowers the version alarm so the counter moves to a fresh
// znode several times while three allocators claim: the claims stay
// disjoint and the ranges still tile the counter across the moves.
func TestCounterMove(t *testing.T) {
	root := testRoot(t)
	as := make([]*Allocator, 3)
	for i := range as {
		as[i] = openT(t, Config{Servers: zkAddrs(t), Root: root})
		as[i].versionAlarmAt = 25
	}
	var l ledger
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, a := range as {
		wg.Go(func() {
			for range 40 {
				r, err := a.ClaimRange(ctx, 100)
				if err != nil {
					t.Errorf("ClaimRange: %v", err)
					return
				}
				l.add(i, r)
			}
		})
	}
	wg.Wait()
	total, top := l.check(t)
	var moves, lost uint64
	for _, a := range as {
		moves += a.Stats().Migrations
		lost += a.Stats().LostReplies
	}
	if moves < 3 {
		t.Errorf("%d counter moves for 120 claims with the alarm at version 25, want ≥ 3", moves)
	}
	next := counterNext(t, rawConn(t, zkAddrs(t), nil), root, 0)
	if lost == 0 && (total != next || top != next) {
		t.Errorf("ranges cover %d up to %d, counter at %d", total, top, next)
	}
	t.Logf("%d moves, counter at %d", moves, next)
}

// TestClaimIntent: the intent hears of each range before its write, the
// range returned is the last one announced, and an intent that fails ends
// the claim with nothing written (the next claim starts where it would
// have); two allocators racing announce ranges that the winners' claims
// tile, with every returned range among the announced ones.
func TestClaimIntent(t *testing.T) {
	root := testRoot(t)
	ctx := context.Background()
	a := openT(t, Config{Servers: zkAddrs(t), Root: root, Shard: 4})
	var announced []generator.Range
	r, err := a.ClaimRangeIntent(ctx, 100, func(_ context.Context, g generator.Range) error {
		announced = append(announced, g)
		return nil
	})
	if err != nil || len(announced) != 1 || announced[0] != r || r != (generator.Range{Start: 0, End: 100}) {
		t.Fatalf("claim: %+v %v, announced %+v", r, err, announced)
	}
	refuse := errors.New("ledger down")
	if _, err := a.ClaimRangeIntent(ctx, 100, func(context.Context, generator.Range) error { return refuse }); !errors.Is(err, refuse) {
		t.Fatalf("claim with a failing intent: %v, want its error", err)
	}
	if r, err := a.ClaimRange(ctx, 100); err != nil || r.Start != 100 {
		t.Fatalf("claim after a refused intent: %+v %v, want a start at 100 (nothing written)", r, err)
	}

	b := openT(t, Config{Servers: zkAddrs(t), Root: root, Shard: 4})
	var (
		mu    sync.Mutex
		seen  = map[generator.Range]bool{}
		l     ledger
		wg    sync.WaitGroup
		fails atomic.Int32
	)
	for who, al := range []*Allocator{a, b} {
		wg.Go(func() {
			for range 50 {
				r, err := al.ClaimRangeIntent(ctx, 10, func(_ context.Context, g generator.Range) error {
					mu.Lock()
					seen[g] = true
					mu.Unlock()
					return nil
				})
				if err != nil {
					fails.Add(1)
					continue
				}
				mu.Lock()
				ok := seen[r]
				mu.Unlock()
				if !ok {
					t.Errorf("range %+v returned without being announced", r)
				}
				l.add(who, r)
			}
		})
	}
	wg.Wait()
	if fails.Load() > 0 {
		t.Fatalf("%d claims failed", fails.Load())
	}
	l.check(t)
}
