// Package backoff holds the waits of the retry loops: exponential delays
// with jitter, so that retrying processes spread out instead of retrying in
// step, and a sleep that ends with its context.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Equal is the delay before retry attempt (0-based): base doubled per
// attempt up to ceiling, then a uniform pick in its upper half, so that a
// retry never comes much sooner than planned ("equal jitter").
func Equal(attempt int, base, ceiling time.Duration) time.Duration {
	d := capped(attempt, base, ceiling)
	return d/2 + rand.N(d/2+1)
}

// Full is the delay before retry attempt (0-based): a uniform pick in
// [0, base doubled per attempt up to ceiling] ("full jitter"), which spreads
// a crowd of retries the most.
func Full(attempt int, base, ceiling time.Duration) time.Duration {
	return rand.N(capped(attempt, base, ceiling) + 1)
}

func capped(attempt int, base, ceiling time.Duration) time.Duration {
	d := base
	for i := 0; i < attempt && d < ceiling; i++ {
		d *= 2
	}
	return max(min(d, ceiling), 0)
}

// Sleep waits d or until ctx ends, and reports whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
