// Package registry defines the records of issued IDs and the saga state
// machine shared by every registry backend (embedded bbolt, Redis) and every
// transport that changes state (HTTP, stream, SQS).
//
// Invariants: a record starts pending; pending → committed; pending or
// committed → compensated; compensated is final. Repeating a transition
// changes nothing and yields the same record (Outcome Replayed). A
// compensation of an unknown ID leaves a compensated tombstone (null
// compensation), so a late commit or registration of it is refused
// (hanging). Apply is the only place these rules live.
package registry

import (
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/idgen/idgen/shared/idcodec"
)

// Sentinel errors of registry backends; test with errors.Is.
var (
	ErrNotFound = errors.New("registry: id not found")
	// ErrConflict means the transition is not allowed from the current state
	// (commit after compensation, registration over a tombstone).
	ErrConflict = errors.New("registry: transition not allowed")
	// ErrCollision means an ID to register is already held by another
	// writer. Never expected: uniqueness comes from the ranges.
	ErrCollision = errors.New("registry: id already registered")
	// ErrUnavailable means the backend cannot store right now.
	ErrUnavailable = errors.New("registry: unavailable")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("registry: closed")
)

// State of a saga step.
type State uint8

// States; the zero value is invalid.
const (
	Pending State = iota + 1
	Committed
	Compensated
)

func (s State) String() string {
	switch s {
	case Pending:
		return "pending"
	case Committed:
		return "committed"
	case Compensated:
		return "compensated"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// MarshalText implements encoding.TextMarshaler.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Outcome says what a transition did.
type Outcome uint8

// Outcomes of Apply.
const (
	Applied    Outcome = iota + 1 // the state changed
	Replayed                      // it was already in the target state: no effect
	Tombstoned                    // null compensation: the ID was unknown, a tombstone was written
)

func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case Replayed:
		return "replayed"
	case Tombstoned:
		return "null_compensation"
	}
	return "unknown"
}

// Step is one entry of a record's state history.
type Step struct {
	State  State
	AtMS   int64  // unix ms
	Reason string // why (compensations); empty for others
	Actor  string // subject that asked, "system" for the sweeper
}

// Record is what the registry holds for one issued ID.
type Record struct {
	ID          idcodec.ID
	State       State
	IssuedAtMS  int64 // unix ms; 0 for a tombstone of an ID never registered here
	Subject     string
	IdemKeyHash []byte // sha256 of subject+key, empty without Idempotency-Key
	DeadlineMS  int64  // auto-compensate after this unix ms; 0 = none
	Metadata    []byte // sealed metadata, opaque to the registry
	Tombstone   bool   // written by a null compensation
	History     []Step
}

// Last returns the newest history step (the one that set State).
func (r *Record) Last() Step {
	if len(r.History) == 0 {
		return Step{State: r.State}
	}
	return r.History[len(r.History)-1]
}

// Change asks for a transition.
type Change struct {
	To     State // Committed or Compensated
	From   State // when set, the record must be in this state (the sweeper: Pending)
	Reason string
	Actor  string
	NowMS  int64
}

// Apply computes the transition of rec (exists = the backend holds it) to
// ch.To. It changes rec in place only when it returns Applied or Tombstoned;
// the caller then stores rec. Errors: ErrNotFound (commit of an unknown ID),
// ErrConflict (commit after compensation, or not in ch.From).
func Apply(rec *Record, exists bool, ch Change) (Outcome, error) {
	if ch.From != 0 && (!exists || rec.State != ch.From) {
		return 0, fmt.Errorf("%w: %s is not %s", ErrConflict, rec.ID, ch.From)
	}
	switch ch.To {
	case Committed:
		if !exists {
			return 0, ErrNotFound
		}
		switch rec.State {
		case Committed:
			return Replayed, nil
		case Compensated:
			return 0, fmt.Errorf("%w: %s is compensated", ErrConflict, rec.ID)
		}
	case Compensated:
		if !exists {
			id := rec.ID
			*rec = Record{ID: id, State: Compensated, Tombstone: true}
			rec.History = append(rec.History, Step{State: Compensated, AtMS: ch.NowMS, Reason: ch.Reason, Actor: ch.Actor})
			return Tombstoned, nil
		}
		if rec.State == Compensated {
			return Replayed, nil
		}
	default:
		return 0, fmt.Errorf("registry: no transition to %s", ch.To)
	}
	rec.State = ch.To
	rec.History = append(rec.History, Step{State: ch.To, AtMS: ch.NowMS, Reason: ch.Reason, Actor: ch.Actor})
	return Applied, nil
}

// Issue is one registration: the pending records of one /generate answer,
// and optionally its idempotency entry, stored all together or not at all.
type Issue struct {
	Records []Record
	Idem    *IdemEntry
}

// IdemEntry remembers the answer to an Idempotency-Key.
type IdemEntry struct {
	KeyHash   [32]byte // sha256(subject, key)
	BodyHash  [32]byte // sha256 of the request body, to refuse a different body
	IDs       []idcodec.ID
	Batch     bool // the answer was {"ids": [...]} rather than {"id": ...}
	CreatedMS int64
}

// IdemKeyHash hashes subject and key so that keys of different subjects never
// meet and raw keys are not stored.
func IdemKeyHash(subject, key string) [32]byte {
	h := sha256.New()
	h.Write([]byte(subject))
	h.Write([]byte{0})
	h.Write([]byte(key))
	var out [32]byte
	h.Sum(out[:0])
	return out
}
