package idcodec

import (
	"sync/atomic"
	"time"
)

// Clock hands out issue timestamps that never go back: each call returns
// max(now_ms, last returned). The wall clock may step backwards (NTP, VM
// migration); IDs keep their order and uniqueness does not depend on time.
// The zero value uses time.Now. Clock is safe for concurrent use.
type Clock struct {
	// Now is the time source; nil means time.Now. Injected by tests to step
	// the clock backwards.
	Now  func() time.Time
	last atomic.Uint64
}

// Millis returns the next issue timestamp in unix milliseconds.
func (c *Clock) Millis() uint64 {
	return c.Observe(c.Read())
}

// Observe is Millis for a time the caller already read, so that one clock
// read can serve several checks on the hot path.
func (c *Clock) Observe(now time.Time) uint64 {
	ms := uint64(now.UnixMilli())
	for {
		last := c.last.Load()
		if ms <= last {
			return last
		}
		if c.last.CompareAndSwap(last, ms) {
			return ms
		}
	}
}

// Read returns the current time of the injected source (time.Now when nil).
func (c *Clock) Read() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Last returns the highest timestamp handed out so far (0 before the first).
func (c *Clock) Last() uint64 { return c.last.Load() }
