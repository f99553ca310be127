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
	if got := len(g.Gather(nil)); got != 2 {
		t.Fatalf("got %d ops, want the 2 queued", got)
	}
	if d := time.Since(start); d < 15*time.Millisecond || d > time.Second {
		t.Fatalf("waited %v with MaxWait 20ms after a big batch", d)
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
	g := &Gatherer[int]{Ops: ops, MaxBatch: 20, MaxWait: time.Hour}
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

// TestGatherLoop commits every op exactly once and in order, in batches
// within MaxBatch, when Quit finds ops still queued and when it closes during
// a wait.
func TestGatherLoop(t *testing.T) {
	// loop runs g.Loop, checks every batch against MaxBatch, and calls after
	// (when set) with the size of each committed batch. finish waits for
	// Loop to return and checks that ops 0..n-1 were committed in order.
	loop := func(t *testing.T, g *Gatherer[int], after func(int)) (finish func(n int)) {
		var got []int
		done := make(chan struct{})
		go func() {
			defer close(done)
			g.Loop(func(b []int) {
				if len(b) == 0 || len(b) > g.MaxBatch {
					t.Errorf("batch of %d ops", len(b))
				}
				got = append(got, b...)
				if after != nil {
					after(len(b))
				}
			})
		}()
		return func(n int) {
			t.Helper()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Loop did not return after Quit")
			}
			if len(got) != n {
				t.Fatalf("committed %d ops, want %d", len(got), n)
			}
			for i, v := range got {
				if v != i {
					t.Fatalf("op %d committed as %d: out of order or repeated", i, v)
				}
			}
		}
	}

	t.Run("queued at Quit", func(t *testing.T) {
		ops := make(chan int, 100)
		quit := make(chan struct{})
		for i := range 80 {
			ops <- i
		}
		close(quit) // before Loop starts: everything is drained by the Quit path
		loop(t, &Gatherer[int]{Ops: ops, Quit: quit, MaxBatch: 7}, nil)(80)
	})

	t.Run("Quit during a wait", func(t *testing.T) {
		ops := make(chan int, 100)
		quit := make(chan struct{})
		commits := make(chan int, 100)
		for i := range 20 { // a burst of 20, queued before Loop: one batch, so the next waits for 20
			ops <- i
		}
		finish := loop(t, &Gatherer[int]{Ops: ops, Quit: quit, MaxBatch: 50, MaxWait: time.Hour}, func(n int) {
			time.Sleep(50 * time.Millisecond) // a slow commit: the next batch may wait this long
			commits <- n
		})
		if n := <-commits; n != 20 {
			t.Fatalf("first batch of %d ops, want the 20 queued", n)
		}
		ops <- 20 // alone: its batch waits (for up to 50 ms) for 19 more
		time.Sleep(10 * time.Millisecond)
		close(quit)
		finish(21)
	})
}
