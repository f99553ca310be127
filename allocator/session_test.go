package allocator

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/harness/zkproxy"
)

// TestSessionExpiry cuts one allocator off ZooKeeper for longer than its
// session timeout. Its lease fences the worker slot before the server can
// expire the session and free the slot; the freed slot goes to a newcomer;
// after reconnecting the allocator gets a new session, claims a new slot and
// stamps again. Another allocator, whose session stayed alive, keeps its
// slot and never stops answering.
func TestSessionExpiry(t *testing.T) {
	const timeout = 2 * time.Second
	root := testRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := zkproxy.StartT(t, zkAddrs(t)[0])
	a := openT(t, Config{Servers: []string{p.ConnectString()}, Root: root, SessionTimeout: timeout})
	b := openT(t, Config{Servers: zkAddrs(t), Root: root, SessionTimeout: timeout})
	conn := rawConn(t, zkAddrs(t), nil)

	r0, err := a.ClaimRange(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	slotA, err := a.Worker(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	slotB, err := b.Worker(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	sidA, sidB := a.Health().SessionID, b.Health().SessionID
	// The lease is local and monotonic: a reading past it is fenced even
	// while connected (a process frozen past its timeout, then thawed).
	if _, err := a.Worker(time.Now().Add(timeout)); !errors.Is(err, ErrFenced) {
		t.Errorf("Worker one session timeout ahead: %v, want ErrFenced", err)
	}

	// Watch both allocators from now on.
	var (
		stop         = make(chan struct{})
		watchers     sync.WaitGroup
		bFailures    atomic.Int32
		aFenced      atomic.Bool
		aStaleIssued atomic.Int32 // old slot stamped after the fence
	)
	watchers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if w, err := b.Worker(time.Now()); err != nil || w != slotB {
				bFailures.Add(1)
			}
			_, err := a.Worker(time.Now())
			switch {
			case errors.Is(err, ErrFenced):
				aFenced.Store(true)
			case err == nil && aFenced.Load() && a.conn.SessionID() == sidA:
				aStaleIssued.Add(1)
			}
			time.Sleep(2 * time.Millisecond)
		}
	})

	p.Cut(timeout + 2*time.Second)
	cut := time.Now()
	if _, err := a.Worker(time.Now()); err != nil {
		t.Errorf("Worker right after the cut: %v; the lease should cover a short disconnection", err)
	}
	proc.Eventually(t, timeout, "the lease to fence a", aFenced.Load)
	fenced := time.Since(cut)
	if fenced > timeout*2/3+100*time.Millisecond {
		t.Errorf("fenced %v after the cut, later than the lease (%v)", fenced, timeout*2/3)
	}
	slotPath := root + "/workers/" + strconv.Itoa(int(slotA))
	proc.Eventually(t, 4*timeout, "the server to expire a's session", func() bool {
		ok, st, err := conn.Exists(slotPath)
		return err == nil && (!ok || st.EphemeralOwner != sidA)
	})
	expired := time.Since(cut)
	if fenced >= expired {
		t.Errorf("fenced after %v, but the slot was freed after %v", fenced, expired)
	}
	// A newcomer takes the lowest free slot: a's old one.
	c := openT(t, Config{Servers: zkAddrs(t), Root: root, SessionTimeout: timeout})
	slotC, err := c.Worker(time.Now())
	if err != nil || slotC != slotA {
		t.Errorf("newcomer got slot %d (%v), want a's freed slot %d", slotC, err, slotA)
	}

	proc.Eventually(t, 20*time.Second, "a to re-claim a slot with a new session", func() bool {
		_, err := a.Worker(time.Now())
		return err == nil
	})
	close(stop)
	watchers.Wait()
	slotA2, _ := a.Worker(time.Now())
	h := a.Health()
	if h.SessionID == sidA || h.SessionID == 0 || !h.Connected || h.Slot != int(slotA2) {
		t.Errorf("after re-claim: %+v (old session %d)", h, sidA)
	}
	if slotA2 == slotC || slotA2 == slotB {
		t.Errorf("a re-claimed slot %d, held by another (b %d, c %d)", slotA2, slotB, slotC)
	}
	ok, st, err := conn.Exists(root + "/workers/" + strconv.Itoa(int(slotA2)))
	if err != nil || !ok || st.EphemeralOwner != h.SessionID {
		t.Errorf("a's new slot znode: exists %v owner %v err %v, want owned by %d", ok, st, err, h.SessionID)
	}
	if s := a.Stats(); s.SlotClaims != 2 {
		t.Errorf("a claimed %d slots, want 2", s.SlotClaims)
	}
	if n := aStaleIssued.Load(); n != 0 {
		t.Errorf("a stamped its old slot %d times after being fenced", n)
	}
	if n := bFailures.Load(); n != 0 || b.Health().SessionID != sidB {
		t.Errorf("b, whose session stayed alive, failed %d times (session %d → %d)", n, sidB, b.Health().SessionID)
	}
	r1, err := a.ClaimRange(ctx, 100)
	if err != nil || r1.Start < r0.End {
		t.Errorf("claim after re-claim: %+v, %v (first range %+v)", r1, err, r0)
	}
	ms, err := b.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 {
		t.Errorf("members %+v, want a (new session), b and c", ms)
	}
	for _, m := range ms {
		if m.SessionID == sidA {
			t.Errorf("a's expired member znode is still listed: %+v", m)
		}
	}
	t.Logf("fenced %v after the cut, slot freed by the server after %v; slot %d → %d", fenced.Round(time.Millisecond),
		expired.Round(time.Millisecond), slotA, slotA2)
}

// TestSlotReuse opens and closes 200 allocators in sequence (serverless cold
// starts) beside a long-lived one: closed sessions free their slots, so the
// slot stays low and no member is left behind, and the counter advances by
// exactly what the instances claimed.
func TestSlotReuse(t *testing.T) {
	root := testRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	obs := openT(t, Config{Servers: zkAddrs(t), Root: root})
	const cycles, step = 200, 10
	hist := map[uint16]int{}
	var top uint16
	t0 := time.Now()
	for i := range cycles {
		a, err := Open(ctx, Config{Servers: zkAddrs(t), Root: root, Logger: testLogger(t)})
		if err != nil {
			t.Fatalf("cycle %d: Open: %v", i, err)
		}
		w, err := a.Worker(time.Now())
		if err != nil {
			t.Fatalf("cycle %d: Worker: %v", i, err)
		}
		if _, err := a.ClaimRange(ctx, step); err != nil {
			t.Fatalf("cycle %d: ClaimRange: %v", i, err)
		}
		if err := a.Close(); err != nil {
			t.Fatalf("cycle %d: Close: %v", i, err)
		}
		if _, err := a.Worker(time.Now()); !errors.Is(err, ErrClosed) {
			t.Fatalf("cycle %d: Worker after Close: %v", i, err)
		}
		hist[w]++
		top = max(top, w)
	}
	elapsed := time.Since(t0)
	if top > 2 {
		t.Errorf("slot reached %d over %d sequential instances (histogram %v), want ≤ 2", top, cycles, hist)
	}
	next := counterNext(t, rawConn(t, zkAddrs(t), nil), root, 0)
	if next != cycles*step {
		t.Errorf("counter advanced by %d for %d instances claiming %d each, want exactly %d", next, cycles, step, cycles*step)
	}
	ms, err := obs.Members(ctx)
	if err != nil || len(ms) != 1 {
		t.Errorf("members after all closed: %+v, %v; want only the long-lived one", ms, err)
	}
	t.Logf("%d open/claim/close cycles in %v (%v each): slots %v, counter advanced by %d (%d per instance, none burnt)",
		cycles, elapsed.Round(time.Millisecond), (elapsed / cycles).Round(time.Microsecond), hist, next, next/cycles)
}
