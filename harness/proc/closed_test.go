package proc

import (
	"sync"
	"testing"
)

// TestMarkClosed: of many concurrent calls exactly one sets the flag, and
// none after it does.
func TestMarkClosed(t *testing.T) {
	var mu sync.Mutex
	closed := false
	var wg sync.WaitGroup
	var firsts sync.Map
	for i := range 8 {
		wg.Go(func() {
			if MarkClosed(&mu, &closed) {
				firsts.Store(i, true)
			}
		})
	}
	wg.Wait()
	n := 0
	firsts.Range(func(any, any) bool { n++; return true })
	if n != 1 || !closed {
		t.Fatalf("%d calls set the flag (closed=%v), want exactly one", n, closed)
	}
	if MarkClosed(&mu, &closed) {
		t.Fatal("a call after the first set the flag again")
	}
}
