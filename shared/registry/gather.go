package registry

import (
	"runtime"
	"time"
)

// Gatherer closes the batches of a group commit and runs the flusher loop
// of a backend (one goroutine; not safe for concurrent use).
//
// It takes what is queued without waiting and, under load, waits a little
// for more: when the previous batch carried at least MinBatch operations,
// the next one waits until as many are queued, for no longer than the
// previous commit took (and never longer than MaxWait). Under load the
// operations a commit answers come back about one commit later, so they
// ride in the next batch instead of splitting into small ones: fewer
// commits (WAL syncs, Redis round trips) for the same work, and less CPU
// per operation. An idle or lightly loaded backend does not wait: its batches
// are smaller than MinBatch (after a burst, the first batch may wait once,
// for at most the burst's last commit time).
type Gatherer[T any] struct {
	// Ops is the queue of the flusher.
	Ops <-chan T
	// Quit ends a wait at once; Loop drains the queue and returns.
	Quit <-chan struct{}
	// MaxBatch bounds the operations of one batch (0: no bound).
	MaxBatch int
	// Weigh, when set, gives the weight of an operation (records, say);
	// a batch closes once it weighs MaxWeight or more (the operation that
	// crosses the bound rides along).
	Weigh     func(T) int
	MaxWeight int
	// MinBatch is the size of the previous batch from which the next one
	// waits. Default 8.
	MinBatch int
	// MaxWait bounds a wait. Default 1ms; negative: never wait.
	MaxWait time.Duration

	last    int           // operations of the previous batch
	lastDur time.Duration // duration of the previous commit
	weight  int           // of the batch being gathered
	timer   *time.Timer
}

// Loop commits batches until Quit is closed, then commits what is still
// queued and returns. commit gets a batch that it must not keep.
func (g *Gatherer[T]) Loop(commit func([]T)) {
	batch := make([]T, 0, max(g.MaxBatch, 0))
	for {
		select {
		case first := <-g.Ops:
			// Let the request goroutines that are already runnable
			// enqueue their work before the batch closes.
			runtime.Gosched()
			batch = g.Gather(append(batch[:0], first))
			t0 := time.Now()
			commit(batch)
			g.Committed(time.Since(t0))
		case <-g.Quit:
			// The backend stopped accepting work: drain the queue.
			for {
				if batch = g.Gather(batch[:0]); len(batch) == 0 {
					return
				}
				commit(batch)
			}
		}
	}
}

// Gather appends what is queued to batch until MaxBatch or MaxWeight,
// waiting as described on Gatherer, and returns the batch.
func (g *Gatherer[T]) Gather(batch []T) []T {
	g.weight = 0
	if g.Weigh != nil {
		for _, o := range batch {
			g.weight += g.Weigh(o)
		}
	}
	batch = g.drain(batch)
	if wait := g.wait(); wait > 0 && len(batch) < g.last && !g.full(batch) {
		if g.timer == nil {
			g.timer = time.NewTimer(wait)
		} else {
			g.timer.Reset(wait)
		}
	collect:
		for len(batch) < g.last && !g.full(batch) {
			select {
			case o := <-g.Ops:
				batch = g.add(batch, o)
			case <-g.timer.C:
				break collect
			case <-g.Quit:
				break collect
			}
		}
		g.timer.Stop()
		batch = g.drain(batch)
	}
	g.last = len(batch)
	return batch
}

// Committed tells how long the commit of the last gathered batch took.
func (g *Gatherer[T]) Committed(d time.Duration) { g.lastDur = d }

// wait is how long the next batch may wait for more operations: 0 when the
// previous one was small.
func (g *Gatherer[T]) wait() time.Duration {
	minBatch, maxWait := g.MinBatch, g.MaxWait
	if minBatch <= 0 {
		minBatch = 8
	}
	if maxWait == 0 {
		maxWait = time.Millisecond
	}
	if maxWait < 0 || g.last < minBatch {
		return 0
	}
	return min(g.lastDur, maxWait)
}

// full reports that batch may take no more operations. An empty batch is
// never full, whatever the bounds, so that no queued operation is stranded.
func (g *Gatherer[T]) full(batch []T) bool {
	if len(batch) == 0 {
		return false
	}
	return (g.MaxBatch > 0 && len(batch) >= g.MaxBatch) || (g.Weigh != nil && g.weight >= g.MaxWeight)
}

func (g *Gatherer[T]) add(batch []T, o T) []T {
	if g.Weigh != nil {
		g.weight += g.Weigh(o)
	}
	return append(batch, o)
}

// drain appends what is queued, without waiting.
func (g *Gatherer[T]) drain(batch []T) []T {
	for !g.full(batch) {
		select {
		case o := <-g.Ops:
			batch = g.add(batch, o)
		default:
			return batch
		}
	}
	return batch
}
