// Package saga voids the IDs of failed transactions: the
// compensation core that every transport shares (the Redis Stream worker of
// `idgen compensate` in functions/failurestream, the SQS and EventBridge Lambda,
// and POST /compensate in functions/httpapi). It holds the failure envelope
// (Event), the barrier cases of one compensation (Core.Compensate), and
// the exactly-once writing of an effect's audit entry (Once) with the
// audited marks it elects and remembers by (RedisMarks, StoreMarks), which
// the commits of functions/httpapi and the deadline sweeper use too.
//
// Invariants:
//   - A compensation is one registry transition to compensated, stored by
//     the registry's compare-and-set: whatever the number of deliveries,
//     workers and interleaved commits, an ID is compensated at most once in
//     effect, and every delivery gets the same Answer (it is built from the
//     stored record, never from the event).
//   - One audit entry per effective transition (applied, or a null
//     compensation's tombstone); a replay writes none. A Marker remembers
//     which effects were audited, so a redelivery after a crash between the
//     stored effect and its audit entry writes the missing entry (see Once
//     for the proof and the exact windows).
//   - A malformed event fails with ErrMalformed and registry refusals
//     (collision, corrupt record) fail permanently (Permanent); every other
//     failure is transient: the event must be delivered again.
//   - Errors keep the "compensate:" prefix of the function they came from
//     (dead-letter entries and logs carry their text).
package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/registry"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrMalformed means the event cannot be applied as it is (bad or
	// missing ID, missing reason, bad field): retrying cannot help.
	ErrMalformed = errors.New("compensate: malformed event")
	// ErrAudit means the effect is stored but its audit entry could not be
	// written: the event must be delivered again (Redelivered) so that the
	// entry is written then.
	ErrAudit = errors.New("compensate: audit entry not written")
	// ErrAuditBusy means another attempt holds the claim on writing the
	// effect's audit entry (it is writing it, or died holding the lease):
	// transient, the event must be delivered again; once the claim is done
	// or expired, the redelivery knows whether to write the entry.
	// It wraps ErrAudit.
	ErrAuditBusy = fmt.Errorf("%w: claimed by another attempt", ErrAudit)
)

// Permanent reports whether err can never succeed on a retry of the same
// event: malformed events and registry refusals (a collision or a corrupt
// record, both alarms). Every other error is transient.
func Permanent(err error) bool {
	return errors.Is(err, ErrMalformed) || errors.Is(err, registry.ErrCollision) ||
		errors.Is(err, registry.ErrCorrupt) || errors.Is(err, registry.ErrConflict) ||
		errors.Is(err, registry.ErrNotFound)
}

// Transitioner is the registry as the core needs it
// (*redisstore.Store and the embedded stores provide it).
type Transitioner interface {
	Transition(ctx context.Context, id idcodec.ID, ch registry.Change) (registry.Record, registry.Outcome, error)
}

// Recorder is the audit log (*audit.Log provides it).
type Recorder interface {
	Record(e audit.Event) error
}

// Marker elects the one attempt that writes an effect's audit entry and
// remembers that it was written (*RedisMarks provides it). An attempt
// identifies itself by a token of its own (NewToken). Marks must live
// longer than Once.RecoverWithin.
type Marker interface {
	// Claim takes a lease on writing id's entry for token: true when token
	// holds it (also when asked again), false when the entry is written
	// (marked), ErrAuditBusy while another token holds an unexpired lease.
	Claim(ctx context.Context, id idcodec.ID, token string) (bool, error)
	// Mark records that id's entry is written (and ends the lease).
	Mark(ctx context.Context, id idcodec.ID, token string) error
	// Release gives up token's lease (its entry could not be written); a
	// done mark or another token's lease stays.
	Release(ctx context.Context, id idcodec.ID, token string) error
}

// Answer is the stored state after a compensation; every delivery of the
// same event gets an equal Answer. Same fields as the HTTP answer of
// POST /compensate.
type Answer struct {
	ID            string `json:"id"`
	State         string `json:"state"`
	CommittedAt   string `json:"committed_at,omitempty"`
	CompensatedAt string `json:"compensated_at,omitempty"`
	Reason        string `json:"reason,omitempty"`
}

// Result of Compensate.
type Result struct {
	// Outcome is the registry's: registry.Applied (pending or committed →
	// compensated: the effect), registry.Tombstoned (unknown ID: a
	// compensated tombstone was written, a null compensation) or
	// registry.Replayed (already compensated: no effect, same Answer).
	// Its String is the audit entry's outcome and POST /compensate's
	// Idgen-Outcome.
	Outcome registry.Outcome
	Answer  Answer
	// AuditRecovered: a replay that wrote the audit entry of an earlier
	// attempt which stored the effect but did not audit it.
	AuditRecovered bool
	// Unmarked: the entry is written but its mark could not be stored
	// (MarkErr says why); a redelivery after the lease runs out would write
	// it again. Worth a warning.
	Unmarked bool
	MarkErr  error
}

// MarshalJSON writes {"outcome", "answer"}: the answer of the EventBridge
// Lambda, in the names of the Idgen-Outcome header.
func (r Result) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Outcome string `json:"outcome"`
		Answer  Answer `json:"answer"`
	}{r.Outcome.String(), r.Answer})
}

// Defaults of Core.
const (
	DefaultRecoverWithin = 24 * time.Hour
	DefaultSource        = "unknown"
	msLayout             = "2006-01-02T15:04:05.000Z07:00"
)

// Core applies failure events to the registry. The zero value is not
// usable: Registry and Audit are required. Safe for concurrent use.
type Core struct {
	Registry Transitioner
	Audit    Recorder
	// Marks, when set, lets a redelivered event write the audit entry of an
	// effect whose first attempt died before auditing it, or whose entry
	// the audit log refused. Without it an effect is audited at most once
	// and such an entry is lost.
	Marks Marker
	// RecoverWithin bounds the age of an effect whose missing audit entry a
	// redelivery may write; it must be shorter than the marks' TTL.
	// Default DefaultRecoverWithin.
	RecoverWithin time.Duration
	// Now is the clock of the history steps. Default time.Now.
	Now func() time.Time
}

// Compensate applies ev with a core without Marks (no recovery of audit
// entries lost in a crash).
func Compensate(ctx context.Context, reg Transitioner, rec Recorder, ev Event) (Result, error) {
	c := Core{Registry: reg, Audit: rec}
	return c.Compensate(ctx, ev)
}

// Compensate voids ev.ID: registry.Change{To: Compensated, Reason, Actor:
// ev.Actor()} ("compensate:<source>", or the Caller). The attempt whose
// transition takes effect (registry.Applied, registry.Tombstoned) writes
// its audit entry (Once.Write); a replay writes none, except that a
// redelivered event (ev.Redelivered) that finds the ID compensated by this
// same event (same actor and reason) less than RecoverWithin ago writes
// the entry its earlier attempt left out (Once.Recover, with Marks only):
// so a death between the effect and its entry, or an entry the audit log
// refused, loses nothing. Once states which windows repeat an entry
// instead (audit.Event.Recovered tells such a repeat).
//
// Errors: ErrMalformed (Permanent); the registry's errors wrapped
// (registry.ErrUnavailable, ErrClosed: transient; ErrCollision,
// ErrCorrupt: Permanent); ErrAudit, also as ErrAuditBusy (transient: the
// effect is stored, deliver again with Redelivered set), with the Result.
func (c *Core) Compensate(ctx context.Context, ev Event) (Result, error) {
	id, err := ev.Validate()
	if err != nil {
		return Result{}, err
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	rec, out, err := c.Registry.Transition(ctx, id, registry.Change{To: registry.Compensated, Reason: ev.Reason, Actor: ev.Actor(), NowMS: now().UnixMilli()})
	if err != nil {
		return Result{}, fmt.Errorf("compensate %s: %w", id, err)
	}
	res := Result{Outcome: out, Answer: AnswerOf(rec)}
	once := Once{Audit: c.Audit, Marks: c.Marks, RecoverWithin: c.RecoverWithin, Now: now}
	e := audit.Event{
		Actor: ev.Actor(), Action: audit.ActionCompensate, Resource: id.String(),
		Outcome: out.String(), Reason: ev.Reason, Source: ev.source(), RequestID: ev.EventID, TraceID: ev.TraceID(),
	}
	var w Written
	switch {
	case out != registry.Replayed:
		w, err = once.Write(ctx, id, e)
	case ev.Redelivered:
		e.Outcome = registry.Applied.String()
		if rec.Tombstone {
			e.Outcome = registry.Tombstoned.String()
		}
		w, err = once.Recover(ctx, rec, registry.Compensated, e)
		res.AuditRecovered = w.Wrote
	}
	res.Unmarked, res.MarkErr = w.MarkErr != nil, w.MarkErr
	return res, err
}

// AnswerOf is the Answer of a stored record: its ID, state, and the time
// (and reason) of its committed and compensated steps. POST /commit
// answers the same shape.
func AnswerOf(rec registry.Record) Answer {
	a := Answer{ID: rec.ID.String(), State: rec.State.String()}
	for _, st := range rec.History {
		switch st.State {
		case registry.Committed:
			a.CommittedAt = msTime(st.AtMS)
		case registry.Compensated:
			a.CompensatedAt, a.Reason = msTime(st.AtMS), st.Reason
		}
	}
	return a
}

func msTime(ms int64) string {
	if ms == 0 {
		return ""
	}
	return time.UnixMilli(ms).UTC().Format(msLayout)
}
