// Package ticker runs periodic work until a context ends.
//
// Invariant: Every never starts a call of fn once ctx has ended (a tick and
// the end of ctx can be ready at once; ctx is checked before each call), and
// never returns while fn runs; a call that overruns d delays the next one
// (time.Ticker drops the ticks missed meanwhile), so calls never overlap.
package ticker

import (
	"context"
	"time"
)

// Every calls fn every d, the first time d after the call, until ctx ends.
func Every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if ctx.Err() != nil {
				return
			}
			fn()
		}
	}
}
