package generator

import (
	"context"
	"testing"
	"time"
)

func coarseRunning(g *Generator) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.coarseRunning
}

// With a fixed worker and the system clock, timestamps come from the coarse
// clock: never ahead of the clock, never more than a loose bound behind it
// (the ticker refreshes every millisecond; the bound only catches a ticker
// that stopped refreshing, not scheduling noise under -race), never going
// back; the ticker runs while IDs are issued.
func TestCoarseClockFollowsTheClock(t *testing.T) {
	g := newGen(t, &memSource{}, FixedWorker(7), Config{})
	ctx := context.Background()
	const slack = 100 // ms
	var last uint64
	end := time.Now().Add(300 * time.Millisecond)
	n := 0
	for time.Now().Before(end) {
		before := uint64(time.Now().UnixMilli())
		id, err := g.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		after := uint64(time.Now().UnixMilli())
		ts := id.Decompose().TimestampMS
		if ts > after {
			t.Fatalf("timestamp %d ahead of the clock %d", ts, after)
		}
		if ts+slack < before {
			t.Fatalf("timestamp %d more than %d ms behind the clock %d", ts, slack, before)
		}
		if ts < last {
			t.Fatalf("timestamp went back: %d after %d", ts, last)
		}
		last = ts
		if n++; n%1000 == 0 {
			time.Sleep(50 * time.Microsecond) // let the clock move under the IDs
		}
	}
	if !coarseRunning(g) {
		t.Fatal("the coarse clock's ticker is not running while IDs are issued")
	}
}

// An idle Generator stops its ticker; the next ID reads the clock exactly
// (its timestamp is not behind the clock beyond Clock's own rounding) and restarts the ticker; Close
// stops it (goleak checks no goroutine is left).
func TestCoarseClockStopsWhenIdle(t *testing.T) {
	g, err := New(&memSource{}, FixedWorker(7), Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := g.Next(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for coarseRunning(g) {
		if time.Now().After(deadline) {
			t.Fatal("the ticker still runs 10 s after the last ID")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if g.coarseMS.Load() != 0 {
		t.Fatal("a stopped ticker left its reading behind")
	}
	before := uint64(time.Now().UnixMilli())
	id, err := g.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Clock.Millis adds whole ms of monotonic time to a truncated wall
	// reading, so it may be 1 ms behind time.Now; not more.
	if ts := id.Decompose().TimestampMS; ts+1 < before {
		t.Fatalf("first ID after idle: timestamp %d behind the clock %d", ts, before)
	}
	if !coarseRunning(g) {
		t.Fatal("the first ID after idle did not restart the ticker")
	}
	g.Close()
	if coarseRunning(g) {
		t.Fatal("Close left the ticker running")
	}
}
