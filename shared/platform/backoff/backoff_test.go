package backoff

import (
	"context"
	"testing"
	"time"
)

// TestBounds: every delay lies in its band, the band doubles per attempt
// and stops at the ceiling, also for attempts far past it.
func TestBounds(t *testing.T) {
	const base, ceiling = 10 * time.Millisecond, 160 * time.Millisecond
	for attempt := range 40 {
		want := min(base<<min(attempt, 20), ceiling)
		for range 200 {
			if d := Equal(attempt, base, ceiling); d < want/2 || d > want {
				t.Fatalf("Equal(%d) = %v, want in [%v, %v]", attempt, d, want/2, want)
			}
			if d := Full(attempt, base, ceiling); d < 0 || d > want {
				t.Fatalf("Full(%d) = %v, want in [0, %v]", attempt, d, want)
			}
		}
	}
}

// TestSleep: Sleep reports a wait that ran out, and returns false at once
// for a context that ends first.
func TestSleep(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("Sleep(1ms) = false")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	t0 := time.Now()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep on an ended context = true")
	}
	if d := time.Since(t0); d > time.Second {
		t.Fatalf("Sleep on an ended context took %v", d)
	}
}
