package idledger

import (
	"context"
	"sync"
)

// Parallel calls fn(i) for every i in 0..n-1 from workers goroutines and
// returns once every call handed out has returned. When ctx ends, the
// indexes not yet handed out are skipped.
func Parallel(ctx context.Context, workers, n int, fn func(i int)) {
	var (
		wg   sync.WaitGroup
		next = make(chan int)
	)
	for range max(workers, 1) {
		wg.Go(func() {
			for i := range next {
				fn(i)
			}
		})
	}
feed:
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
}
