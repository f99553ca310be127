package allocator

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/harness/zkharness"
)

// leaders asks every allocator whether it leads role and returns the
// indexes that do.
func leaders(t *testing.T, as []*Allocator, role string) []int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []int
	for i, a := range as {
		if a == nil {
			continue
		}
		ok, err := a.Leader(ctx, role)
		if err != nil {
			t.Fatalf("allocator %d: Leader: %v", i, err)
		}
		if ok {
			out = append(out, i)
		}
	}
	return out
}

// TestLeaderElection: three instances of one shard elect exactly one
// sweeper, repeatedly; the first to stand leads. When the leader closes,
// exactly one of the others takes over; an instance of another shard leads
// its own shard; roles are independent; a closed instance never leads.
func TestLeaderElection(t *testing.T) {
	e := zkharness.StartT(t, zkharness.Options{Servers: 3})
	root := testRoot(t)
	cfg := func(shard uint8) Config {
		return Config{Servers: e.Addrs(), Root: root, Shard: shard, Address: "10.0.0.1:8080", Version: "test"}
	}
	as := []*Allocator{openT(t, cfg(3)), openT(t, cfg(3)), openT(t, cfg(3))}
	for round := range 5 {
		if got := leaders(t, as, "sweeper"); len(got) != 1 || got[0] != 0 {
			t.Fatalf("round %d: leaders %v, want [0] (the first candidate)", round, got)
		}
	}
	other := openT(t, cfg(4))
	if got := leaders(t, []*Allocator{other}, "sweeper"); len(got) != 1 {
		t.Fatalf("shard 4's only instance does not lead it: %v", got)
	}
	if got := leaders(t, as, "sweeper"); len(got) != 1 {
		t.Fatalf("another shard's leader changed shard 3's: %v", got)
	}
	// Another role is another election: the second instance stands first.
	if ok, err := as[1].Leader(context.Background(), "reconciler"); err != nil || !ok {
		t.Fatalf("first candidate of role reconciler: %v %v", ok, err)
	}
	if ok, err := as[0].Leader(context.Background(), "reconciler"); err != nil || ok {
		t.Fatalf("second candidate of role reconciler leads: %v %v", ok, err)
	}

	if err := as[0].Close(); err != nil {
		t.Fatal(err)
	}
	if ok, err := as[0].Leader(context.Background(), "sweeper"); ok || !errors.Is(err, ErrClosed) {
		t.Fatalf("closed instance: Leader = %v, %v; want false, ErrClosed", ok, err)
	}
	as[0] = nil
	// Close deleted its candidate with its session: the next leads at once.
	if got := leaders(t, as, "sweeper"); len(got) != 1 || got[0] != 1 {
		t.Fatalf("after the leader closed: leaders %v, want [1]", got)
	}

	if _, err := as[1].Leader(context.Background(), "Bad Role"); err == nil {
		t.Fatal("a role with spaces was accepted")
	}
}

// TestFencedInstanceDoesNotLead: an instance whose lease ran out (the
// ensemble stopped answering) answers false with ErrFenced, so a leader cut
// off from ZooKeeper stops acting before its session can expire.
func TestFencedInstanceDoesNotLead(t *testing.T) {
	e := zkharness.StartT(t, zkharness.Options{Servers: 1})
	a := openT(t, Config{Servers: e.Addrs(), Root: testRoot(t), SessionTimeout: 4 * time.Second, Address: "10.0.0.1:8080", Version: "test"})
	if ok, err := a.Leader(context.Background(), "sweeper"); err != nil || !ok {
		t.Fatalf("sole instance: %v %v", ok, err)
	}
	if err := e.Stop(0); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = e.Cont(0) }()
	proc.Eventually(t, 10*time.Second, "the lease to run out", func() bool {
		_, err := a.Worker(time.Now())
		return errors.Is(err, ErrFenced)
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if ok, err := a.Leader(ctx, "sweeper"); ok || !errors.Is(err, ErrFenced) {
		t.Fatalf("fenced instance: Leader = %v, %v; want false, ErrFenced", ok, err)
	}
}
