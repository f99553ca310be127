package registry

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Committer is the front of a group commit, the one every backend uses:
// callers queue operations with Do and wait for their answers; one flusher
// goroutine (Run) commits what is queued in batches that its Gatherer
// closes; Close stops taking operations, lets the flusher commit what is
// queued and waits for it.
//
// Invariant: every operation Do has queued is committed and answered, also
// when Close comes right after. Do holds the read lock from its check of
// the closed flag until its operation is in the queue, and Close sets the
// flag under the write lock before it tells the flusher to stop: no
// operation enters the queue after the flusher's final drain has begun.
type Committer[T any] struct {
	g       Gatherer[T]
	ops     chan T
	quit    chan struct{}
	flushed chan struct{} // closed when Run has returned
	admit   func() error

	closeOnce sync.Once
	// mu is held for reading by Do from its check to its send and by
	// WhileOpen, for writing by Close while it sets closed.
	mu     sync.RWMutex
	closed atomic.Bool
}

// NewCommitter returns a Committer whose queue holds g.MaxBatch operations
// and whose flusher closes batches as g says; g.Ops and g.Quit are the
// Committer's own (leave them nil). admit, when set, is asked before each
// operation is queued; its error is Do's (a backend that refuses writes
// for now: a full disk, a Redis that forgot).
func NewCommitter[T any](g Gatherer[T], admit func() error) *Committer[T] {
	c := &Committer[T]{
		ops:     make(chan T, max(g.MaxBatch, 0)),
		quit:    make(chan struct{}),
		flushed: make(chan struct{}),
		admit:   admit,
	}
	g.Ops, g.Quit = c.ops, c.quit
	c.g = g
	return c
}

// Run is the flusher: it commits batches until Close, then commits what is
// still queued, and returns. commit gets a batch that it must not keep,
// and answers every operation of it (closes its done, see Do). Call Run
// once, in a goroutine of its own.
func (c *Committer[T]) Run(commit func(batch []T)) {
	defer close(c.flushed)
	c.g.Loop(commit)
}

// Do queues o and waits until done is ready, which the commit makes it
// once it has put o's answer in o (closing it, or sending one value on a
// buffered channel that the backend reuses), or until ctx ends; after ctx
// ends, o may still be committed. It returns nil once it has received from
// done (the answer is then o's to read). Errors: ErrClosed after Close;
// admit's; ErrUnavailable wrapping ctx's error.
//
// done carries no value: the answer is in o, so a channel of struct{}
// does (one allocation, or none when reused), where a channel of error
// would be two.
func (c *Committer[T]) Do(ctx context.Context, o T, done <-chan struct{}) error {
	c.mu.RLock()
	if c.closed.Load() {
		c.mu.RUnlock()
		return ErrClosed
	}
	if c.admit != nil {
		if err := c.admit(); err != nil {
			c.mu.RUnlock()
			return err
		}
	}
	select {
	case c.ops <- o:
		c.mu.RUnlock()
	case <-ctx.Done():
		c.mu.RUnlock()
		return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

// WhileOpen runs fn unless the Committer is closed (ErrClosed). Close waits
// for fn to return before it reports closed, so a backend that closes its
// storage after Close never closes it under fn.
func (c *Committer[T]) WhileOpen(fn func() error) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed.Load() {
		return ErrClosed
	}
	return fn()
}

// Closed reports whether Close was called; it takes no lock.
func (c *Committer[T]) Closed() bool { return c.closed.Load() }

// Close stops taking operations (Do and WhileOpen return ErrClosed from now
// on), lets Run commit what is queued and waits for it to return, for at
// most timeout (0: no bound). It fails, wrapping ErrUnavailable, when Run
// did not return in time (a commit that does not return: a stalled disk);
// Run is then left running. Later calls return nil at once.
func (c *Committer[T]) Close(timeout time.Duration) error {
	first := false
	c.closeOnce.Do(func() {
		first = true
		c.mu.Lock()
		c.closed.Store(true)
		c.mu.Unlock()
		close(c.quit)
	})
	if !first {
		return nil
	}
	if timeout <= 0 {
		<-c.flushed
		return nil
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	select {
	case <-c.flushed:
		return nil
	case <-deadline.C:
		return fmt.Errorf("%w: the flusher did not return within %s", ErrUnavailable, timeout)
	}
}
