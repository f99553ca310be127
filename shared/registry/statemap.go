package registry

import (
	"context"
	"strings"
)

// State maps are the registry's tallies: one byte per counter of a shard,
// the state of the record of that counter (a CounterState), in buckets of
// StateMapSize consecutive counters starting at a multiple of it. Every
// backend writes a bucket's map in the same atomic write as the records it
// describes (the group commit of a registration, the compare-and-set of a
// transition), so a map always says what the bucket's records are, and
// reconciliation tallies a range from its maps (one byte a counter)
// instead of reading its records. A counter with a registered record and
// tombstones of other IDs (null compensations of IDs never issued; the
// embedded stores key records by ID, so they hold both) has its registered
// record's state: the tombstones do not change whether it was issued.
const (
	StateMapBits = 7
	StateMapSize = 1 << StateMapBits
)

// StateMapBucket is the bucket of counter.
func StateMapBucket(counter uint64) uint64 { return counter >> StateMapBits }

// CounterState is the state of a counter's record in a state map.
type CounterState uint8

// Counter states; the zero value is a counter no record holds.
const (
	CounterFree CounterState = iota
	CounterPending
	CounterCommitted
	CounterCompensatedClient
	CounterCompensatedEvent
	CounterCompensatedDeadline
	CounterTombstone
	// CounterRepeated is set beside the state when a second record of the
	// counter (another ID: another time or worker) was registered: a
	// counter issued twice. The state is that of the registered record
	// written last.
	CounterRepeated CounterState = 0x80
)

// Base is s without CounterRepeated.
func (s CounterState) Base() CounterState { return s &^ CounterRepeated }

// Issued reports a state of a registered record (not a tombstone).
func (s CounterState) Issued() bool {
	b := s.Base()
	return b >= CounterPending && b <= CounterCompensatedDeadline
}

// Valid reports a state a backend writes.
func (s CounterState) Valid() bool { return s.Base() <= CounterTombstone }

// Actors that name who compensated a record (CompensatedBy).
const (
	// ActorSystem is the actor of the deadline compensations (the
	// sweeper, a commit after the deadline).
	ActorSystem = "system"
	// ActorEventPrefix starts the actor of a compensation made by the
	// compensate worker from a failure event ("compensate:<source>").
	ActorEventPrefix = "compensate:"
)

// Who compensated a record (CompensatedBy).
const (
	ByClient       = "client"        // POST /compensate by a caller
	ByFailureEvent = "failure_event" // the compensate worker (stream, SQS)
	ByDeadline     = "deadline"      // the sweeper, or a commit after the deadline
)

// CompensatedBy names who made the compensation step st.
func CompensatedBy(st Step) string {
	switch {
	case st.Actor == ActorSystem:
		return ByDeadline
	case strings.HasPrefix(st.Actor, ActorEventPrefix):
		return ByFailureEvent
	}
	return ByClient
}

// StateOf is rec's state in its bucket's map; nil (no record) is
// CounterFree.
func StateOf(rec *Record) CounterState {
	switch {
	case rec == nil:
		return CounterFree
	case rec.Tombstone:
		return CounterTombstone
	case rec.State == Committed:
		return CounterCommitted
	case rec.State == Compensated:
		switch CompensatedBy(rec.Last()) {
		case ByDeadline:
			return CounterCompensatedDeadline
		case ByFailureEvent:
			return CounterCompensatedEvent
		}
		return CounterCompensatedClient
	}
	return CounterPending
}

// StateMap is the map of one bucket: States[i] is counter
// Bucket<<StateMapBits + i.
type StateMap struct {
	Bucket uint64
	States [StateMapSize]CounterState
}

// StateMapper reads a shard's state maps. Every backend implements it for
// the shard it serves.
type StateMapper interface {
	// StateMaps calls fn with the map of every bucket in [from, to) that
	// has one (a bucket no record was ever written to has none), in
	// order of Bucket, until fn returns an error, which it returns. The
	// map is valid only during the call.
	StateMaps(ctx context.Context, from, to uint64, fn func(*StateMap) error) error
}
