package registry

import (
	"testing"
	"time"
)

// gatherer returns a Gatherer on a queue holding queued ops, after a
// previous batch of prev ops whose commit took took.
func gatherer(t *testing.T, queued, prev int, took, maxWait time.Duration) (*Gatherer[int], chan int, chan struct{}) {
	t.Helper()
	ops := make(chan int, 1024)
	quit := make(chan struct{})
	g := &Gatherer[int]{Ops: ops, Quit: quit, MaxBatch: 1000, MaxWait: maxWait}
	for i := range prev {
		ops <- i
	}
	if got := len(g.Gather(nil)); got != prev {
		t.Fatalf("previous batch: %d ops, want %d", got, prev)
	}
	g.Committed(took)
	for i := range queued {
		ops <- i
	}
	return g, ops, quit
}

// gatherAtOnce checks that Gather returns want ops without waiting (a wait
// would last the hour the gatherers of these tests are given).
func gatherAtOnce(t *testing.T, g *Gatherer[int], batch []int, want int, why string) {
	t.Helper()
	start := time.Now()
	if got := len(g.Gather(batch)); got != want {
		t.Fatalf("%s: got %d ops, want %d", why, got, want)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("%s: waited %v", why, d)
	}
}

func TestGatherNoWaitAfterSmallBatch(t *testing.T) {
	g, _, _ := gatherer(t, 1, 7, time.Hour, time.Hour)
	gatherAtOnce(t, g, nil, 1, "after a batch below MinBatch")
}

func TestGatherWaitsForAsManyAsLastBatch(t *testing.T) {
	g, ops, _ := gatherer(t, 3, 10, time.Hour, time.Hour)
	go func() {
		for i := range 9 {
			time.Sleep(time.Millisecond)
			ops <- 100 + i
		}
	}()
	// 3 queued + 7 arriving make 10: the batch closes there, not at 12.
	if got := len(g.Gather(nil)); got < 10 || got > 12 {
		t.Fatalf("got %d ops, want 10 (as many as the last batch)", got)
	}
}

func TestGatherWaitBoundedByLastCommit(t *testing.T) {
	const took = 50 * time.Millisecond
	g, ops, _ := gatherer(t, 3, 10, took, time.Hour)
	start := time.Now()
	if got := len(g.Gather(nil)); got != 3 {
		t.Fatalf("got %d ops, want the 3 queued", got)
	}
	// At least the last commit's duration; at most a loaded machine's
	// lateness past it, far from the hour of MaxWait.
	if d := time.Since(start); d < took-5*time.Millisecond || d > 40*took {
		t.Fatalf("waited %v, want about the last commit's %v", d, took)
	}
	// That batch had 3 ops: the next one does not wait.
	g.Committed(time.Hour)
	ops <- 1
	gatherAtOnce(t, g, nil, 1, "after a small batch")
}

func TestGatherWaitBoundedByMaxWait(t *testing.T) {
	g, _, _ := gatherer(t, 2, 10, time.Hour, 20*time.Millisecond)
	start := time.Now()
	g.Gather(nil)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("waited %v with MaxWait 20ms", d)
	}
}

func TestGatherQuitEndsWait(t *testing.T) {
	g, _, quit := gatherer(t, 2, 10, time.Hour, time.Hour)
	go func() { time.Sleep(10 * time.Millisecond); close(quit) }()
	done := make(chan int)
	go func() { done <- len(g.Gather(nil)) }()
	select {
	case n := <-done:
		if n != 2 {
			t.Fatalf("got %d ops, want 2", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Quit did not end the wait")
	}
}

func TestGatherNegativeMaxWaitNeverWaits(t *testing.T) {
	g, _, _ := gatherer(t, 2, 10, time.Hour, -1)
	gatherAtOnce(t, g, nil, 2, "negative MaxWait")
}

func TestGatherBounds(t *testing.T) {
	ops := make(chan int, 100)
	for i := range 50 {
		ops <- i
	}
	g := &Gatherer[int]{Ops: ops, MaxBatch: 20}
	if got := len(g.Gather(nil)); got != 20 {
		t.Fatalf("got %d ops, want MaxBatch 20", got)
	}
	// MaxWeight closes the batch early (the op that crosses it rides
	// along), and a full batch does not wait.
	g.Committed(time.Hour)
	g.Weigh, g.MaxWeight = func(int) int { return 2 }, 9
	gatherAtOnce(t, g, []int{-1}, 5, "full batch (weight 10 ≥ 9)")
	if len(ops) != 26 {
		t.Fatalf("%d ops left queued, want 26", len(ops))
	}
}

// TestGatherLoop commits every queued op exactly once, in order, and on Quit
// commits what is still queued before returning.
func TestGatherLoop(t *testing.T) {
	ops := make(chan int, 100)
	quit := make(chan struct{})
	g := &Gatherer[int]{Ops: ops, Quit: quit, MaxBatch: 7}
	var got []int
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Loop(func(b []int) {
			if len(b) == 0 || len(b) > 7 {
				t.Errorf("batch of %d ops", len(b))
			}
			got = append(got, b...)
		})
	}()
	for i := range 50 {
		ops <- i
	}
	for i := 50; i < 80; i++ {
		ops <- i
	}
	close(quit)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Loop did not return after Quit")
	}
	if len(got) != 80 {
		t.Fatalf("committed %d ops, want 80", len(got))
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("op %d committed as %d: out of order or repeated", i, v)
		}
	}
}
