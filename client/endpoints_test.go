package client

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	p := RetryPolicy{BaseBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}
	top := func(k int64) int64 { return k - 1 } // the largest draw
	for n, want := range map[int]time.Duration{1: 10, 2: 20, 3: 40, 4: 80, 5: 100, 50: 100} {
		if got := backoff(p, n, top) + 1; got != want*time.Millisecond {
			t.Errorf("bound of retry %d = %v, want %v", n, got, want*time.Millisecond)
		}
	}
	for range 1000 {
		if d := backoff(p, 3, jitter); d < 0 || d >= 40*time.Millisecond {
			t.Fatalf("backoff of retry 3 = %v, outside [0, 40ms)", d)
		}
	}
}

func TestPick(t *testing.T) {
	now := time.Now()
	e := newEndpoints([]string{"a", "b", "c"})
	none := []bool{false, false, false}
	if i, _ := e.pick(now, none); i != 0 {
		t.Fatalf("pick = %d, want the first", i)
	}
	e.failed(0, now, time.Minute, 0)
	if i, _ := e.pick(now, none); i != 1 {
		t.Fatalf("pick = %d, want the second while the first cools down", i)
	}
	if i, _ := e.pick(now, []bool{false, true, false}); i != 2 {
		t.Fatalf("pick = %d, want the third: the second was tried", i)
	}
	if i, _ := e.pick(now, []bool{false, true, true}); i != 1 {
		t.Fatalf("pick = %d, want the second again (up, tried) before the first (down)", i)
	}
	e.failed(1, now, time.Minute, 0)
	e.failed(2, now, time.Minute, 5*time.Minute)
	if i, _ := e.pick(now, none); i != 0 {
		t.Fatalf("pick = %d, want the first: all are down, it comes back first", i)
	}
	e.throttled(0, now, 2*time.Second)
	if _, notBefore := e.pick(now, none); !notBefore.Equal(now.Add(2 * time.Second)) {
		t.Fatalf("notBefore = %v, want the Retry-After", notBefore)
	}
	if i, _ := e.pick(now.Add(time.Hour), none); i != 0 {
		t.Fatalf("pick = %d an hour later, want the first", i)
	}
	e.succeeded(1)
	if i, _ := e.pick(now, none); i != 1 {
		t.Fatalf("pick = %d, want the second, up again", i)
	}
}
