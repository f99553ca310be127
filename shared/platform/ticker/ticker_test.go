package ticker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/idgen/idgen/shared/platform/ticker"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Every calls fn periodically, never two calls at once, and returns once
// ctx ends, with no call after.
func TestEvery(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var calls, running, overlaps atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		ticker.Every(ctx, time.Millisecond, func() {
			if running.Add(1) > 1 {
				overlaps.Add(1)
			}
			if calls.Add(1) == 5 {
				cancel()
			}
			time.Sleep(2 * time.Millisecond) // overruns d
			running.Add(-1)
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Every did not return 10 s after ctx ended")
	}
	if n := calls.Load(); n != 5 {
		t.Errorf("%d calls, want 5 (none after ctx ended)", n)
	}
	if overlaps.Load() != 0 {
		t.Error("calls overlapped")
	}
}
