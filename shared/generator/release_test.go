package generator_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/idgen/idgen/shared/generator"
	"github.com/idgen/idgen/shared/generator/generatortest"
)

// TestEveryCounterIssuedOrReleased: under concurrent single IDs and
// batches that do not fit the ranges' tails, and a Drain in the middle of
// the load, every counter of every claimed range is either issued exactly
// once or released exactly once, never both, and nothing is issued after
// Drain returns.
func TestEveryCounterIssuedOrReleased(t *testing.T) {
	var (
		src      generatortest.Source
		mu       sync.Mutex
		released = map[uint64]string{}
		claimed  uint64
	)
	counting := sourceFunc(func(ctx context.Context, n uint64) (generator.Range, error) {
		r, err := src.ClaimRange(ctx, n)
		mu.Lock()
		claimed = max(claimed, r.End)
		mu.Unlock()
		return r, err
	})
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
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range len(issued) - 1 {
		wg.Go(func() {
			<-start
			for i := 0; ; i++ {
				n := 1 + (i*37+w*101)%700
				ids, err := g.NextN(ctx, n, nil)
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
	for {
		mu.Lock()
		c := claimed
		mu.Unlock()
		if c >= 50_000 {
			break
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
	if reasons[generator.ReleaseBatchTail] == 0 || reasons[generator.ReleaseShutdown]+reasons[generator.ReleasePrefetch] == 0 {
		t.Fatalf("reasons %v: want batch tails and a shutdown release", reasons)
	}
	var drainedN uint64
	for _, r := range drained {
		drainedN += r.Len()
	}
	if got := uint64(reasons[generator.ReleaseShutdown] + reasons[generator.ReleasePrefetch]); got != drainedN {
		t.Fatalf("Drain returned %d counters, Released was told %d", drainedN, got)
	}
	t.Logf("claimed %d: issued %d, released %v", claimed, len(seen), reasons)
}

type sourceFunc func(ctx context.Context, n uint64) (generator.Range, error)

func (f sourceFunc) ClaimRange(ctx context.Context, n uint64) (generator.Range, error) {
	return f(ctx, n)
}
