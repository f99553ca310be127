package main

import (
	"sync/atomic"
	"time"
)

// backlog is what a sender of failure events (eventSender, httpSink) has
// taken and not yet settled. Once closed, the sender takes no new event;
// pending only falls from then on.
type backlog struct {
	pending atomic.Int64 // queued, in flight or waiting for a resend
	closed  atomic.Bool
}

// offer queues ev on q unless the backlog is closed. It never blocks: a
// full queue drops the event (it is not counted as pending).
func (b *backlog) offer(q chan<- failureEvent, ev failureEvent) {
	if b.closed.Load() {
		return
	}
	b.pending.Add(1)
	select {
	case q <- ev:
	default:
		b.pending.Add(-1)
	}
}

// Drain stops taking new events and waits until every pending one is
// settled (confirmed, delivered or given up), or timeout.
func (b *backlog) Drain(timeout time.Duration) bool {
	b.closed.Store(true)
	deadline := time.Now().Add(timeout)
	for b.pending.Load() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}
