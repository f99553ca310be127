package idcodec

import (
	"sync/atomic"
	"time"
)

// resyncEvery is how often Clock re-reads the wall clock. Between reads it
// advances the last wall reading by the monotonic clock, which costs one
// vDSO call instead of two on the hot path.
const resyncEvery = 250 * time.Millisecond

// Clock hands out issue timestamps that never go back: each call returns
// max(now_ms, last returned). The wall clock may step backwards (NTP, VM
// migration); IDs keep their order and uniqueness does not depend on time.
// The zero value uses the system clock. Clock is safe for concurrent use.
type Clock struct {
	// Now is the time source; nil means the system clock. Injected by tests
	// to step the clock backwards.
	Now  func() time.Time
	last atomic.Uint64
	base atomic.Pointer[clockBase] // last wall reading, with its monotonic reading
}

type clockBase struct {
	t  time.Time // carries the monotonic reading
	ms uint64    // t in unix ms, precomputed
}

// Millis returns the next issue timestamp in unix milliseconds. It is the
// cheapest read: one monotonic clock read, no time.Time built.
func (c *Clock) Millis() uint64 {
	if c.Now == nil {
		if b := c.base.Load(); b != nil {
			if d := time.Since(b.t); d >= 0 && d < resyncEvery {
				return c.observe(b.ms + uint64(d/time.Millisecond))
			}
		}
	}
	return c.Observe(c.Read())
}

// Observe is Millis for a time the caller already read, so that one clock
// read can serve several checks on the hot path.
func (c *Clock) Observe(now time.Time) uint64 {
	return c.observe(uint64(now.UnixMilli()))
}

// ObserveMillis is Observe for a unix ms reading the caller already has (a
// cached one): it returns max(ms, last returned) and raises last.
func (c *Clock) ObserveMillis(ms uint64) uint64 { return c.observe(ms) }

func (c *Clock) observe(ms uint64) uint64 {
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

// Read returns the current time: the injected source's, or the system
// clock's (wall time re-read every 250ms, advanced by the monotonic clock in
// between). The result carries a monotonic reading for lease checks.
func (c *Clock) Read() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	b := c.base.Load()
	if b != nil {
		if d := time.Since(b.t); d >= 0 && d < resyncEvery {
			return b.t.Add(d)
		}
	}
	now := time.Now()
	c.base.Store(&clockBase{t: now, ms: uint64(now.UnixMilli())})
	return now
}

// Last returns the highest timestamp handed out so far (0 before the first).
func (c *Clock) Last() uint64 { return c.last.Load() }
