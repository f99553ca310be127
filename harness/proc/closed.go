package proc

import "sync"

// MarkClosed sets *closed under mu and reports whether this call set it:
// the guard of an idempotent Close, where the first call closes and later
// ones return at once. Other methods read *closed under the same mu.
func MarkClosed(mu *sync.Mutex, closed *bool) bool {
	mu.Lock()
	defer mu.Unlock()
	if *closed {
		return false
	}
	*closed = true
	return true
}
