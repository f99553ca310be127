package generator_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idgen/idgen/shared/generator"
	"github.com/idgen/idgen/shared/generator/generatortest"
	"github.com/idgen/idgen/shared/registry"
)

// TestEveryCounterIssuedOrReleased: under concurrent single IDs and
// batches that do not fit the ranges' tails, and a Drain in the middle of
// the load, every counter of every claimed range is either issued exactly
// once or released exactly once, never both, and nothing is issued after
// Drain returns.
func TestEveryCounterIssuedOrReleased(t *testing.T) {
	var (
		mu       sync.Mutex
		released = map[uint64]string{}
		claimed  uint64
	)
	counting := watched(&mu, func(r generator.Range) { claimed = max(claimed, r.End) })
	g, err := generator.New(counting, generator.FixedWorker(1), generator.Config{
		InitialStep: 1000, MinStep: 1000, MaxStep: 1000, MaxBatch: 700,
		Released: func(r generator.Range, reason string) {
			mu.Lock()
			defer mu.Unlock()
			for c := r.Start; c < r.End; c++ {
				if was, dup := released[c]; dup {
					t.Errorf("counter %d released twice (%s, %s)", c, was, reason)
				}
				released[c] = reason
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	issued := make([][]uint64, 5) // the last is the main goroutine's
	var (
		wg      sync.WaitGroup
		batches atomic.Int64
	)
	start := make(chan struct{})
	for w := range len(issued) - 1 {
		wg.Go(func() {
			<-start
			for i := 0; ; i++ {
				n := 1 + (i*37+w*101)%700
				ids, err := g.NextN(ctx, n, nil)
				batches.Add(1)
				for _, id := range ids {
					issued[w] = append(issued[w], id.Decompose().Counter)
				}
				if errors.Is(err, generator.ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	close(start)
	// The load runs until 50 ranges are claimed and the workers have taken
	// 100 batches: on a fast loop the main goroutine alone could otherwise
	// use the 50 ranges up before a worker is scheduled.
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		c := claimed
		mu.Unlock()
		if c >= 50_000 && batches.Load() >= 100 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %d counters claimed, %d batches taken", c, batches.Load())
		}
		id, err := g.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		issued[len(issued)-1] = append(issued[len(issued)-1], id.Decompose().Counter)
	}
	drained := g.Drain()
	wg.Wait()
	if _, err := g.Next(ctx); !errors.Is(err, generator.ErrClosed) {
		t.Fatalf("Next after Drain: %v, want ErrClosed", err)
	}
	seen := map[uint64]bool{}
	for _, w := range issued {
		for _, c := range w {
			if seen[c] {
				t.Fatalf("counter %d issued twice", c)
			}
			seen[c] = true
		}
	}
	mu.Lock()
	defer mu.Unlock()
	reasons := map[string]int{}
	for c, why := range released {
		if seen[c] {
			t.Fatalf("counter %d both issued and released (%s)", c, why)
		}
		reasons[why]++
	}
	for c := range claimed {
		if !seen[c] && released[c] == "" {
			t.Fatalf("counter %d of a claimed range neither issued nor released", c)
		}
	}
	// Whether a range is left at Drain depends on where the load stood
	// (the last batch may have used the range up with no prefetch back
	// yet); TestDrainReleasesTheRest covers that release deterministically.
	if reasons[registry.ReleasedBatchTail] == 0 {
		t.Fatalf("claimed %d, issued %d, reasons %v: want batch tails", claimed, len(seen), reasons)
	}
	var drainedN uint64
	for _, r := range drained {
		drainedN += r.Len()
	}
	if got := uint64(reasons[registry.ReleasedAtShutdown] + reasons[registry.ReleasedPrefetch]); got != drainedN {
		t.Fatalf("Drain returned %d counters, Released was told %d", drainedN, got)
	}
	t.Logf("claimed %d: issued %d, released %v", claimed, len(seen), reasons)
}

// TestDrainReleasesTheRest: Drain hands back, and tells Released of, the
// unissued tail of the range in use (registry.ReleasedAtShutdown) and the whole
// prefetched range (registry.ReleasedPrefetch), and nothing else.
func TestDrainReleasesTheRest(t *testing.T) {
	var (
		mu     sync.Mutex
		claims []generator.Range
		told   = map[string][]generator.Range{}
	)
	counting := watched(&mu, func(r generator.Range) { claims = append(claims, r) })
	g, err := generator.New(counting, generator.FixedWorker(1), generator.Config{
		InitialStep: 1000, MinStep: 1000, MaxStep: 1000, PrefetchRatio: 0.5,
		Released: func(r generator.Range, reason string) {
			mu.Lock()
			defer mu.Unlock()
			told[reason] = append(told[reason], r)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 501 { // past the prefetch mark of the first range
		if _, err := g.Next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(claims)
		mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d claims after the prefetch mark, want 2", n)
		}
		time.Sleep(time.Millisecond)
	}
	drained := g.Drain()
	mu.Lock()
	defer mu.Unlock()
	cur, pre := claims[0], claims[1]
	want := []generator.Range{{Start: cur.Start + 501, End: cur.End}, pre}
	if !slices.Equal(drained, want) {
		t.Fatalf("Drain returned %v, want %v", drained, want)
	}
	if got := told[registry.ReleasedAtShutdown]; !slices.Equal(got, want[:1]) {
		t.Errorf("released at shutdown %v, want %v", got, want[:1])
	}
	if got := told[registry.ReleasedPrefetch]; !slices.Equal(got, want[1:]) {
		t.Errorf("released as prefetch %v, want %v", got, want[1:])
	}
	if len(told) != 2 {
		t.Errorf("released %v, want only the shutdown and prefetch releases", told)
	}
}

// watched is a source of consecutive ranges from memory that calls seen,
// holding mu, with each range it hands out.
func watched(mu *sync.Mutex, seen func(generator.Range)) sourceFunc {
	var src generatortest.Source
	return func(ctx context.Context, n uint64) (generator.Range, error) {
		r, err := src.ClaimRange(ctx, n)
		mu.Lock()
		seen(r)
		mu.Unlock()
		return r, err
	}
}

type sourceFunc func(ctx context.Context, n uint64) (generator.Range, error)

func (f sourceFunc) ClaimRange(ctx context.Context, n uint64) (generator.Range, error) {
	return f(ctx, n)
}
