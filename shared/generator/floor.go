package generator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// FloorEpoch is the zero of the clock floor: counter value 0 is this instant.
var FloorEpoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// FloorRate is how many counters the clock floor advances per microsecond:
// one shard of the embedded store issues at most 16M IDs per second
// sustained, and the 56-bit counter lasts 142 years from FloorEpoch.
const FloorRate = 16

// ErrAheadOfClock means a claim would take counters the clock floor has not
// reached and the caller's context ended before it did.
var ErrAheadOfClock = errors.New("generator: counter ahead of the clock floor")

// CounterStore is a RangeSource owned by one process whose next unclaimed
// counter can be read: the embedded stores under their data directory lock.
type CounterStore interface {
	RangeSource
	// Counter returns the next unclaimed counter.
	Counter() (uint64, error)
}

// ClockFloor is a RangeSource that makes a restored backup of its store
// harmless: no counter handed out before the backup's restore is handed
// out again, whatever counter the restored store holds.
//
// Why (the proof): let U(t) be the floor at wall time t, FloorRate counters
// per microsecond since FloorEpoch. ClockFloor hands out a range only when
// its end is at most U(now), now read before the claim, so every counter c
// handed out at time t satisfies c < U(t). The first claim of a process
// raises the store's counter to at least U(t0), t0 its start. A backup
// restored and started at t0 ≥ t (the wall clock does not step back across
// the restore) therefore begins at U(t0) ≥ U(t) > c for every c handed out
// before, by any earlier process, whether or not the backup knew of it.
// The price: a claim that outruns the floor waits until the clock catches
// up (16M counters per second per shard), and a wall clock set back by d
// across a restore leaves the last d of issuance unprotected.
type ClockFloor struct {
	src CounterStore
	now func() time.Time

	mu     sync.Mutex
	next   uint64 // next counter to hand out, valid once raised
	raised bool
}

var _ RangeSource = (*ClockFloor)(nil)

// NewClockFloor wraps src, which must have no other claimer. now is the
// wall clock (nil: time.Now).
func NewClockFloor(src CounterStore, now func() time.Time) *ClockFloor {
	if now == nil {
		now = time.Now
	}
	return &ClockFloor{src: src, now: now}
}

// Floor returns U(t): the clock floor at t (0 before FloorEpoch).
func Floor(t time.Time) uint64 {
	us := t.Sub(FloorEpoch).Microseconds()
	if us <= 0 {
		return 0
	}
	return uint64(us) * FloorRate
}

// ClaimRange claims n counters at or above the floor of the process's start,
// waiting while the range would end above the current floor.
func (f *ClockFloor) ClaimRange(ctx context.Context, n uint64) (Range, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.raised {
		if err := f.raise(ctx); err != nil {
			return Range{}, err
		}
	}
	for {
		floor := Floor(f.now())
		if f.next+n <= floor {
			break
		}
		wait := time.Duration((f.next+n-floor)/FloorRate+1) * time.Microsecond
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return Range{}, fmt.Errorf("%w: %w", ErrAheadOfClock, ctx.Err())
		case <-t.C:
		}
	}
	r, err := f.src.ClaimRange(ctx, n)
	if err != nil {
		return r, err
	}
	f.next = r.End
	return r, nil
}

// raise moves the store's counter up to the floor of now, with one claim
// of the gap whose counters are never handed out.
func (f *ClockFloor) raise(ctx context.Context) error {
	next, err := f.src.Counter()
	if err != nil {
		return fmt.Errorf("clock floor: read counter: %w", err)
	}
	if floor := Floor(f.now()); next < floor {
		r, err := f.src.ClaimRange(ctx, floor-next)
		if err != nil {
			return fmt.Errorf("clock floor: raise counter to %d: %w", floor, err)
		}
		next = r.End
	}
	f.next, f.raised = next, true
	return nil
}
