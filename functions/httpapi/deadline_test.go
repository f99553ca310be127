package httpapi

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Requests that start within the same millisecond share one context; every
// request's deadline is its timeout after its start, late by at most 1 ms,
// never early; the shared context does expire.
func TestSharedRequestDeadlines(t *testing.T) {
	d := deadlines{timeout: 50 * time.Millisecond}
	base := time.Now().Truncate(time.Millisecond)
	seen := map[context.Context]bool{}
	for _, off := range []time.Duration{0, 100 * time.Microsecond, 999 * time.Microsecond, time.Millisecond, 1500 * time.Microsecond, 7 * time.Millisecond, 3 * time.Millisecond} {
		now := base.Add(off)
		ctx := d.get(now)
		dl, ok := ctx.Deadline()
		if !ok {
			t.Fatalf("+%v: no deadline", off)
		}
		want := now.Add(d.timeout)
		if late := dl.Sub(want); late < 0 || late > time.Millisecond {
			t.Errorf("+%v: deadline %v after the wanted one (want 0..1ms)", off, late)
		}
		seen[ctx] = true
	}
	if len(seen) < 3 || len(seen) > 5 {
		t.Errorf("%d distinct contexts for starts over 7 ms; want them shared per millisecond", len(seen))
	}
	ctx := d.get(time.Now())
	select {
	case <-ctx.Done():
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("ctx.Err() = %v", ctx.Err())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the shared context never expired")
	}
}
