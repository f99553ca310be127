package kvregistry

import (
	"context"
	"fmt"
	"time"

	"github.com/idgen/idgen/shared/registry"
)

// Op is one unit of work of a backend's group commit. Its fn checks
// everything before it writes, so that an error leaves the transaction as
// it found it.
type Op struct {
	fn   func(Tx) error
	err  error         // the answer, set by the commit
	done chan struct{} // closed by the commit once err is set
	// lazy: the op is answered once its batch is committed, synced or not.
	lazy bool
}

// Run runs the op in tx and keeps its answer.
func (o *Op) Run(tx Tx) { o.err = o.fn(tx) }

// Lazy reports a write whose loss in a crash costs little (see New).
func (o *Op) Lazy() bool { return o.lazy }

// NewCommitter returns the group commit of a backend: batches of at most
// maxBatch ops, each admitted by admit (the disk guard's Check).
func NewCommitter(maxBatch int, admit func() error) *registry.Committer[*Op] {
	return registry.NewCommitter(registry.Gatherer[*Op]{MaxBatch: maxBatch}, admit)
}

// Do runs fn in the next group commit of c and waits for the commit, or
// for ctx (the op may still commit later in that case). It returns the
// Committer's error or fn's, or the commit's as Answer gave it.
func Do(ctx context.Context, c *registry.Committer[*Op], lazy bool, fn func(Tx) error) error {
	o := &Op{fn: fn, done: make(chan struct{}), lazy: lazy}
	if err := c.Do(ctx, o, o.done); err != nil {
		return err
	}
	return o.err
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
		close(o.done)
	}
}
