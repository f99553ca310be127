package generator

import (
	"context"
	"time"
)

// Range is a half-open run [Start, End) of counter values of one shard.
type Range struct {
	Start, End uint64
}

// Len returns the number of counters in r.
func (r Range) Len() uint64 { return r.End - r.Start }

// RangeSource hands out counter ranges of one shard. Implementations must
// never return overlapping ranges, across processes and restarts, and must
// make a range durable (fsync, quorum commit) before returning it.
type RangeSource interface {
	// ClaimRange claims a fresh range of n counters (the source may round n
	// up, never down). It blocks until the claim is durable or ctx ends.
	ClaimRange(ctx context.Context, n uint64) (Range, error)
}

// IntentSource is a RangeSource whose claims can be announced before they
// are committed: ClaimRangeIntent calls intent with each range it is about
// to write (again for each retry, each time with the range of that
// attempt), and writes it only when intent returned nil. A process that
// dies between the commit and its own record of the claim has thus left
// the announcement behind (the claim ledger's unconfirmed claim).
type IntentSource interface {
	RangeSource
	ClaimRangeIntent(ctx context.Context, n uint64, intent func(context.Context, Range) error) (Range, error)
}

// WorkerSource tells the generator which worker slot to stamp into IDs.
type WorkerSource interface {
	// Worker returns the slot to stamp at time now, or an error when the
	// instance must not issue at all (slot lost with its session, local
	// lease past its deadline). now is the caller's single clock read.
	Worker(now time.Time) (uint16, error)
}

// FixedWorker is a WorkerSource that always answers the same slot: the
// embedded mode, where one process owns the data directory.
type FixedWorker uint16

// Worker implements WorkerSource.
func (w FixedWorker) Worker(time.Time) (uint16, error) { return uint16(w), nil }

var _ WorkerSource = FixedWorker(0)
