package client

import (
	"testing"
	"time"
)

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
