// Package registrytest is the conformance suite of the registry backends:
// one copy of every behavioural test that bbolt, Pebble and Redis share
// (registration with SETNX semantics, idempotency, transitions, the
// deadline index, the high-water mark, data keys, close and reopen), run
// by each backend's tests with Run, and the disk-guard tests of the
// embedded backends (RunDisk). It is a non-test package so that the
// backends' test binaries can import it.
//
// Invariants: every test opens stores of its own on a directory of its own
// (t.TempDir(), also the key space of a Redis store), so tests never see
// each other's records; every ID the suite registers is of shard Shard and
// worker Worker, with a counter of its own within a test; what a backend
// may do differently is declared by a Difference, and the suite asserts
// the different behaviour instead, never nothing.
package registrytest

import (
	"context"
	"slices"
	"testing"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// Store is what the suite needs of a registry backend: the methods every
// backend has (the registry of the request path, the sweeper's reads and
// purges, the high-water mark, the data keys of the sealer, health, close).
type Store interface {
	Register(ctx context.Context, iss registry.Issue, idemTTLMS, nowMS int64) (*registry.IdemEntry, error)
	Get(ctx context.Context, id idcodec.ID) (registry.Record, error)
	Transition(ctx context.Context, id idcodec.ID, ch registry.Change) (registry.Record, registry.Outcome, error)
	Expired(ctx context.Context, nowMS int64, limit int) ([]idcodec.ID, error)
	PurgeIdempotency(ctx context.Context, cutoffMS int64, limit int) (int, error)
	RaiseHighWater(ctx context.Context, v uint64) error
	HighWater(ctx context.Context) (uint64, error)
	GetKey(ctx context.Context, name string) ([]byte, error)
	PutKeyIfAbsent(ctx context.Context, name string, v []byte) ([]byte, error)
	DeleteKey(ctx context.Context, name string) error
	Ping(ctx context.Context) error
	Close() error
	registry.ClaimLedger
	registry.StateMapper
}

// Opener opens a store on the records kept under dir, a directory the
// suite made for the test, or returns the open's error: two stores opened
// on one dir (one after the other) reach the same records. The store
// serves shard Shard (its deadline index, counter and claim ledger). A backend passes its Open as it
// is, wrapped only to fill in its configuration.
type Opener[S Store] func(t *testing.T, dir string) (S, error)

// opener is what the tests use: it fails t when the store does not open,
// and closes it at the end of the test (a second Close returns nil).
type opener func(t *testing.T, dir string) Store

// Difference names a documented way in which a backend departs from what
// the suite otherwise asserts; the suite then asserts the different
// behaviour.
type Difference uint8

const (
	// IdempotencyExpiresByItself: the backend expires idempotency entries
	// by itself (Redis: PX), so PurgeIdempotency removes nothing and
	// returns 0; the suite asserts that, and that live entries still
	// answer, instead of the purge's counts.
	IdempotencyExpiresByItself Difference = iota + 1
)

// The IDs of the suite.
const (
	// NowMS is the clock of the suite's calls and the timestamp of its IDs.
	NowMS = 1_764_000_000_000
	// Shard and Worker of every ID the suite registers.
	Shard  = 3
	Worker = 7
	// Subject of the records the suite registers.
	Subject = "svc-payments"
	// idemTTL is the idempotency TTL of registrations that do not test
	// expiry: long enough that no entry expires in real time (Redis PX)
	// while a test runs.
	idemTTL = 60_000
)

// ID returns the suite's ID with counter.
func ID(counter uint64) idcodec.ID {
	return idcodec.MustCompose(idcodec.Fields{TimestampMS: NowMS, Worker: Worker, Shard: Shard, Counter: counter})
}

// Pending is an issue of pending records of ids as the HTTP layer builds
// them.
func Pending(ids ...idcodec.ID) registry.Issue {
	var iss registry.Issue
	for _, x := range ids {
		ms := int64(x.Decompose().TimestampMS)
		iss.Records = append(iss.Records, registry.Record{
			ID: x, State: registry.Pending, IssuedAtMS: ms, Subject: Subject,
			History: []registry.Step{{State: registry.Pending, AtMS: ms, Actor: Subject}},
		})
	}
	return iss
}

// withIdem returns iss with an idempotency entry of key for its IDs.
func withIdem(iss registry.Issue, key string, createdMS int64) registry.Issue {
	ids := make([]idcodec.ID, len(iss.Records))
	for i := range iss.Records {
		ids[i] = iss.Records[i].ID
	}
	iss.Idem = &registry.IdemEntry{KeyHash: registry.IdemKeyHash(Subject, key), IDs: ids, Batch: len(ids) > 1, CreatedMS: createdMS}
	return iss
}

// Run runs every test of the suite against stores of open, each as a
// subtest of its own name; diffs declares how the backend departs from
// the default assertions.
func Run[S Store](t *testing.T, openS Opener[S], diffs ...Difference) {
	open := func(t *testing.T, dir string) Store {
		t.Helper()
		s, err := openS(t, dir)
		if err != nil {
			t.Fatalf("open %s: %v", dir, err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	selfExpiring := slices.Contains(diffs, IdempotencyExpiresByItself)
	fresh := func(t *testing.T) Store { return open(t, t.TempDir()) }
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"RegisterGet", func(t *testing.T) { registerGet(t, fresh(t)) }},
		{"RegisterCollisionWritesNothing", func(t *testing.T) { registerCollisionWritesNothing(t, fresh(t)) }},
		{"RegisterBatch", func(t *testing.T) { registerBatch(t, fresh(t)) }},
		{"IdempotencyReplay", func(t *testing.T) { idempotencyReplay(t, fresh(t)) }},
		{"IdempotencyOneWinner", func(t *testing.T) { IdempotencyOneWinner(t, fresh(t)) }},
		{"TransitionOutcomes", func(t *testing.T) { transitionOutcomes(t, fresh(t)) }},
		{"ConcurrentTransitions", func(t *testing.T) { ConcurrentTransitions(t, fresh(t)) }},
		{"DeadlineIndex", func(t *testing.T) { deadlineIndex(t, fresh(t)) }},
		{"PurgeIdempotency", func(t *testing.T) { purgeIdempotency(t, fresh(t), selfExpiring) }},
		{"PurgeKeepsReusedKey", func(t *testing.T) { purgeKeepsReusedKey(t, fresh(t), selfExpiring) }},
		{"HighWater", func(t *testing.T) { highWater(t, fresh(t)) }},
		{"ClaimLedger", func(t *testing.T) { claimLedger(t, fresh(t)) }},
		{"StateMaps", func(t *testing.T) { stateMaps(t, fresh(t)) }},
		{"KeyStore", func(t *testing.T) { KeyStore(t, fresh(t)) }},
		{"CloseFlushesAndRefuses", func(t *testing.T) { closeFlushesAndRefuses(t, open) }},
		{"RangesSurviveReopen", func(t *testing.T) { rangesSurviveReopen(t, open) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
}
