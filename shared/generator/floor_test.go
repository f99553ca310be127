package generator

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/shared/platform/clocktest"
)

// memCounter is a CounterStore in memory whose counter can be set back, as
// a restored backup sets it back.
type memCounter struct {
	mu   sync.Mutex
	next uint64
}

var _ CounterStore = (*memCounter)(nil)

func (m *memCounter) ClaimRange(_ context.Context, n uint64) (Range, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := Range{m.next, m.next + n}
	m.next += n
	return r, nil
}

func (m *memCounter) Counter() (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.next, nil
}

// TestClockFloorRestore: a store set back to an earlier counter (a restored
// backup) and opened again never hands out a counter of the earlier runs.
func TestClockFloorRestore(t *testing.T) {
	ctx := context.Background()
	clock := clocktest.New(time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC))
	store := &memCounter{}
	seen := map[uint64]bool{}
	take := func(f *ClockFloor, claims int, n uint64) {
		t.Helper()
		// The first claim raises the store to the floor of now, and a
		// claim above the floor waits for the clock, which stands still
		// here: raise with an empty claim, then move 1 ms per claim.
		if _, err := f.ClaimRange(ctx, 0); err != nil {
			t.Fatal(err)
		}
		for range claims {
			clock.Add(time.Millisecond)
			r, err := f.ClaimRange(ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			if r.End > Floor(clock.Now()) {
				t.Fatalf("range %v ends above the floor %d", r, Floor(clock.Now()))
			}
			for c := r.Start; c < r.End; c++ {
				if seen[c] {
					t.Fatalf("counter %d handed out twice", c)
				}
				seen[c] = true
			}
		}
	}
	take(NewClockFloor(store, clock.Now), 3, 100)
	backup, _ := store.Counter()
	clock.Add(time.Second)
	take(NewClockFloor(store, clock.Now), 50, 1000)
	store.next = backup // the restore
	clock.Add(time.Second)
	take(NewClockFloor(store, clock.Now), 50, 1000)
	if len(seen) != 300+2*50*1000 {
		t.Errorf("%d counters seen", len(seen))
	}
}

// TestClockFloorWaitsForTheClock: a claim that would end above the floor
// waits until the clock reaches it, and gives up with the context.
func TestClockFloorWaitsForTheClock(t *testing.T) {
	clock := clocktest.New(time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC))
	f := NewClockFloor(&memCounter{}, clock.Now)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := f.ClaimRange(ctx, FloorRate*1000); !errors.Is(err, ErrAheadOfClock) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("claim 1 ms ahead of a stopped clock: %v, want ErrAheadOfClock", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := f.ClaimRange(context.Background(), FloorRate*1000)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("claim returned %v before the clock moved", err)
	case <-time.After(20 * time.Millisecond):
	}
	clock.Add(time.Millisecond)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("claim still waiting after the clock reached its end")
	}
}

func TestFloor(t *testing.T) {
	if Floor(FloorEpoch.Add(-time.Hour)) != 0 || Floor(FloorEpoch.Add(time.Second)) != FloorRate*1e6 {
		t.Errorf("Floor: %d %d", Floor(FloorEpoch.Add(-time.Hour)), Floor(FloorEpoch.Add(time.Second)))
	}
	// The 56-bit counter lasts past 2160.
	if Floor(time.Date(2160, 1, 1, 0, 0, 0, 0, time.UTC)) > 1<<56-1 {
		t.Error("the floor overflows the counter before 2160")
	}
}
