package client

import (
	"sync"
	"time"
)

// endpoint is one base URL and what the client learnt of it.
type endpoint struct {
	base string
	// downUntil: the endpoint failed with a connection error or 503; until
	// then it is chosen only when every endpoint is down.
	downUntil time.Time
	// notBefore: the endpoint asked (Retry-After) not to be sent a request
	// before then.
	notBefore time.Time
}

// endpoints is the client's endpoint list, shared by concurrent calls.
type endpoints struct {
	mu   sync.Mutex
	list []endpoint
}

func newEndpoints(bases []string) *endpoints {
	e := &endpoints{list: make([]endpoint, len(bases))}
	for i, b := range bases {
		e.list[i].base = b
	}
	return e
}

// pick chooses the endpoint of the next attempt: the first (in order of
// preference) that is not down and not already tried by this call; else
// the first that is not down; else the one that comes back first. It
// returns its index and the time before which it must not be sent to.
func (e *endpoints) pick(now time.Time, tried []bool) (int, time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	firstUp, soonest := -1, -1
	for i := range e.list {
		up := !now.Before(e.list[i].downUntil)
		switch {
		case up && !tried[i]:
			return i, e.list[i].notBefore
		case up && firstUp < 0:
			firstUp = i
		case !up && (soonest < 0 || e.list[i].downUntil.Before(e.list[soonest].downUntil)):
			soonest = i
		}
	}
	if firstUp >= 0 {
		return firstUp, e.list[firstUp].notBefore
	}
	return soonest, e.list[soonest].notBefore
}

func (e *endpoints) base(i int) string { return e.list[i].base }

// failed records a connection error or a 503 of endpoint i: it is down for
// cooldown, and not sent to for retryAfter.
func (e *endpoints) failed(i int, now time.Time, cooldown, retryAfter time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list[i].downUntil = now.Add(max(cooldown, retryAfter))
	e.defer_(i, now, retryAfter)
}

// throttled records a 429 of endpoint i: it stays up, and is not sent to
// for retryAfter.
func (e *endpoints) throttled(i int, now time.Time, retryAfter time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.defer_(i, now, retryAfter)
}

func (e *endpoints) defer_(i int, now time.Time, retryAfter time.Duration) {
	if t := now.Add(retryAfter); t.After(e.list[i].notBefore) {
		e.list[i].notBefore = t
	}
}

// succeeded records an answer of endpoint i: it is up.
func (e *endpoints) succeeded(i int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.list[i].downUntil = time.Time{}
}
