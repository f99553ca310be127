package kvregistry

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/idgen/idgen/shared/registry"
)

// Op is one unit of work of a backend's group commit. Its fn checks
// everything before it writes, so that an error leaves the transaction as
// it found it.
type Op struct {
	fn  func(Tx) error
	err error // the answer, set by the commit
	// done receives one value once err is set (Reply). It is buffered:
	// the commit never waits for the caller, and a pooled Op keeps its
	// channel (see Do).
	done chan struct{}
	// lazy: the op is answered once its batch is committed, synced or not.
	lazy bool
}

// Run runs the op in tx and keeps its answer.
func (o *Op) Run(tx Tx) { o.err = o.fn(tx) }

// Lazy reports a write whose loss in a crash costs little (see New).
func (o *Op) Lazy() bool { return o.lazy }

// Committer is the group commit of a backend, with a pool of its Ops.
type Committer struct {
	*registry.Committer[*Op]
	// ops pools the Ops of Do. An Op goes back only once its answer has
	// been received: then no commit holds it any more, and its channel
	// is empty.
	ops sync.Pool
	// maps and staged belong to the commit goroutine (RunBatch,
	// Committed).
	maps   mapCache
	staged map[stateMapKey]*stateMap
}

// NewCommitter returns the group commit of a backend: batches of at most
// maxBatch ops, each admitted by admit (the disk guard's Check).
func NewCommitter(maxBatch int, admit func() error) *Committer {
	return &Committer{
		Committer: registry.NewCommitter(registry.Gatherer[*Op]{MaxBatch: maxBatch}, admit),
		ops:       sync.Pool{New: func() any { return &Op{done: make(chan struct{}, 1)} }},
	}
}

// Do runs fn in the next group commit of c and waits for the commit, or
// for ctx (the op may still commit later in that case). It returns the
// Committer's error or fn's, or the commit's as Answer gave it.
func Do(ctx context.Context, c *Committer, lazy bool, fn func(Tx) error) error {
	o := c.ops.Get().(*Op)
	o.fn, o.err, o.lazy = fn, nil, lazy
	if err := c.Committer.Do(ctx, o, o.done); err != nil {
		// The op may be queued still, or answered later: it is not
		// reused.
		return err
	}
	err := o.err
	o.fn, o.err = nil, nil
	c.ops.Put(o)
	return err
}

// Answer ends the commit of batch, begun at t0: it tells observe (when
// set) the size and duration, and answers every op; a failed commit (err)
// fails them all with ErrUnavailable.
func Answer(batch []*Op, err error, t0 time.Time, observe func(ops int, d time.Duration)) {
	if observe != nil {
		observe(len(batch), time.Since(t0))
	}
	if err != nil {
		err = fmt.Errorf("%w: commit: %w", registry.ErrUnavailable, err)
	}
	Reply(batch, err)
}

// Reply answers every op of batch: with err when it is set, else with
// what the op returned.
func Reply(batch []*Op, err error) {
	for _, o := range batch {
		if err != nil {
			o.err = err
		}
		o.done <- struct{}{}
	}
}
