// Package generatortest holds test helpers for users of the generator.
//
// Source is an in-memory range source: consecutive ranges from 0, never
// one twice, with no claim cost, for tests and benchmarks that measure the
// hot path without a store (in service, one claim serves up to 4M IDs).
package generatortest

import (
	"context"
	"sync"

	"github.com/idgen/idgen/shared/generator"
)

// Source hands out consecutive ranges from memory. The zero value is ready
// to use; safe for concurrent use.
type Source struct {
	mu   sync.Mutex
	next uint64
}

var _ generator.RangeSource = (*Source)(nil)

// ClaimRange returns the next n counters.
func (s *Source) ClaimRange(_ context.Context, n uint64) (generator.Range, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := generator.Range{Start: s.next, End: s.next + n}
	s.next += n
	return r, nil
}
