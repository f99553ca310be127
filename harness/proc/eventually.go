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
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(pollInterval)
	}
}
