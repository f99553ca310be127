package proc

import (
	"testing"
	"time"
)

// pollInterval is how often Eventually checks its condition: short next to
// the bounds tests use (seconds), long enough that a condition which asks a
// server does not load it.
const pollInterval = 10 * time.Millisecond

// Eventually calls cond every pollInterval until it returns true, and fails
// tb ("not within <within>: <what>") when within passes first. cond runs at
// least once, and once more after the deadline passed, so a condition that
// holds by then never fails tb.
func Eventually(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	if _, ok := Poll(within, cond); !ok {
		tb.Fatalf("not within %s: %s", within, what)
	}
}

// Poll is Eventually for a test that decides itself what a timeout means
// (or reports how long a recovery took): it returns how long cond took to
// hold, and false when within passed first. cond runs as in Eventually.
func Poll(within time.Duration, cond func() bool) (took time.Duration, ok bool) {
	t0 := time.Now()
	deadline := t0.Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return time.Since(t0), false
		}
		time.Sleep(pollInterval)
	}
	return time.Since(t0), true
}
