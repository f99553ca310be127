// Package clocktest is a clock for tests: the test sets it and moves it,
// and the code under test reads it through its Now function (a Config.Now,
// a Verifier's now). Safe for concurrent use.
package clocktest

import (
	"sync"
	"time"
)

// Clock is a settable clock. Its zero value reads the zero time.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New is a Clock that reads t until moved.
func New(t time.Time) *Clock { return &Clock{t: t} }

// Now is the time the clock reads.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
