// Package compensation voids the IDs of failed transactions: the
// compensation core that every transport shares (the Redis Stream worker of
// `idgen compensate` in functions/compensate, the SQS and EventBridge Lambda,
// and POST /compensate in functions/generate). It holds the failure envelope
// (Event), the barrier cases of one compensation (Core.Compensate) and the
// audited marks that let a redelivery write an audit entry a crash left out.
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
//     stored effect and its audit entry writes the missing entry (see
//     Core.Compensate for the exact windows).
//   - A malformed event fails with ErrMalformed and registry refusals
//     (collision, corrupt record) fail permanently (Permanent); every other
//     failure is transient: the event must be delivered again.
//   - Errors keep the "compensate:" prefix of the function they came from
//     (dead-letter entries and logs carry their text).
package compensation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/idgen/idgen/shared/audit"
	"github.com/idgen/idgen/shared/idcodec"
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
// longer than Core.RecoverWithin.
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

// Case says which barrier case a compensation met.
type Case string

// Cases of a Result.
const (
	CaseApplied          Case = "applied"           // pending or committed → compensated: the effect
	CaseDuplicate        Case = "duplicate"         // already compensated: no effect, same answer
	CaseNullCompensation Case = "null_compensation" // unknown ID: a compensated tombstone was written
)

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
	Case   Case   `json:"case"`
	Answer Answer `json:"answer"`
	// AuditRecovered: a duplicate that wrote the audit entry of an earlier
	// attempt which stored the effect but died before auditing it.
	AuditRecovered bool `json:"-"`
	// Unmarked: the entry is written but its mark could not be stored
	// (MarkErr says why); a redelivery after the lease expires would write
	// it again. Worth a warning.
	Unmarked bool  `json:"-"`
	MarkErr  error `json:"-"`
}

// Defaults of Core.
const (
	DefaultRecoverWithin = 24 * time.Hour
	DefaultSource        = "unknown"
	msLayout             = "2006-01-02T15:04:05.000Z07:00"
	// claimTimeout bounds the retries of a claim; then the effect's entry
	// is left to a redelivery (ErrAudit).
	claimTimeout = 5 * time.Second
	// markTimeout bounds the retries of a mark, on a context of its own
	// (the entry is written: the caller's deadline must not cut the mark).
	// Well under DefaultLeaseTTL.
	markTimeout = 5 * time.Second
)

// Core applies failure events to the registry. The zero value is not
// usable: Registry and Audit are required. Safe for concurrent use.
type Core struct {
	Registry Transitioner
	Audit    Recorder
	// Marks, when set, lets a redelivered event write the audit entry of an
	// effect whose first attempt died before auditing it. Without it an
	// effect is audited at most once and such an entry is lost.
	Marks Marker
	// RecoverWithin bounds the age of an effect whose missing audit entry a
	// redelivery may write; it must be shorter than the marks' TTL.
	// Default DefaultRecoverWithin.
	RecoverWithin time.Duration
	// RecoverAfter is the least age of an effect whose missing audit entry a
	// redelivery may write: a younger effect's own attempt may still be
	// writing its entry, and recovering it then would write a second one.
	// Set it above an attempt's time bound when deliveries can overlap
	// (HTTP: a client retrying while its first request still runs).
	// Default 0: any age (a redelivery follows the end of the attempt).
	RecoverAfter time.Duration
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
// ev.Actor()} ("compensate:<source>", or the Caller). It writes one audit
// entry when the transition took effect (CaseApplied,
// CaseNullCompensation), none for a duplicate, except in the recovery case
// below.
//
// With Marks, the order is: effect, claim (a lease on writing the entry),
// audit entry, mark (done). Every attempt that writes an entry, first or
// recovering, claims first, so attempts that overlap (a redelivery taken
// over from a worker that is slow, not dead) write one entry between them.
// The claim is retried for up to 5 s (then ErrAudit: a redelivery writes
// the entry), the mark for up to 5 s on a context of its own (then
// Result.Unmarked).
//
// Crash windows. The effect (Redis) and the audit entry (a file) cannot be
// stored atomically. A redelivered event (ev.Redelivered) that finds the ID
// compensated by this same event (same actor and reason) less than
// RecoverWithin ago (and at least RecoverAfter ago) and not marked claims
// and writes the entry: so a death between the effect and the entry loses
// nothing (a death holding the lease delays the redelivery's entry until
// the lease expires). A death after the entry is written and before the
// mark is stored (one Redis round trip) repeats the entry, on a redelivery
// after the lease expired; so does a live attempt that takes longer than
// the lease (DefaultLeaseTTL) from its claim to its mark, or whose mark
// cannot be stored (Result.Unmarked). audit.Event.Recovered tells such a
// repeat.
//
// Errors: ErrMalformed (Permanent); the registry's errors wrapped
// (registry.ErrUnavailable, ErrClosed: transient; ErrCollision,
// ErrCorrupt: Permanent); ErrAudit, also as ErrAuditBusy (transient: the
// effect is stored, deliver again with Redelivered set).
func (c *Core) Compensate(ctx context.Context, ev Event) (Result, error) {
	id, err := ev.Validate()
	if err != nil {
		return Result{}, err
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	t := now()
	actor := ev.Actor()
	rec, out, err := c.Registry.Transition(ctx, id, registry.Change{To: registry.Compensated, Reason: ev.Reason, Actor: actor, NowMS: t.UnixMilli()})
	if err != nil {
		return Result{}, fmt.Errorf("compensate %s: %w", id, err)
	}
	res := Result{Answer: AnswerOf(rec)}
	switch out {
	case registry.Applied, registry.Tombstoned:
		res.Case = CaseApplied
		if out == registry.Tombstoned {
			res.Case = CaseNullCompensation
		}
		if c.Marks == nil {
			return res, c.audit(ev, id, res.Case, false)
		}
		token := NewToken()
		won, err := c.claim(ctx, id, token)
		if err != nil || !won {
			// Not won, no error: the entry is written and marked (an
			// overlapping recovery of this event wrote it).
			return res, err
		}
		if err := c.auditClaimed(ctx, ev, id, token, res.Case, false, &res); err != nil {
			return res, err
		}
	default:
		res.Case = CaseDuplicate
		if ev.Redelivered && c.Marks != nil {
			if res.AuditRecovered, err = c.recover(ctx, ev, rec, t, &res); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// audit writes the entry of an effective compensation; recovered marks
// one written by a redelivery for an earlier attempt.
func (c *Core) audit(ev Event, id idcodec.ID, cs Case, recovered bool) error {
	err := c.Audit.Record(audit.Event{
		Actor: ev.Actor(), Action: audit.ActionCompensate, Resource: id.String(),
		Outcome: string(cs), Reason: ev.Reason, Source: ev.source(), RequestID: ev.EventID, Recovered: recovered,
	})
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrAudit, id, err)
	}
	return nil
}

// auditClaimed writes the entry under a claim won by token, then marks
// it done (res.Unmarked when that fails); a failed entry releases the
// claim.
func (c *Core) auditClaimed(ctx context.Context, ev Event, id idcodec.ID, token string, cs Case, recovered bool, res *Result) error {
	if err := c.audit(ev, id, cs, recovered); err != nil {
		_ = c.Marks.Release(context.WithoutCancel(ctx), id, token)
		return err
	}
	// At once, not batched with the acknowledgement: the window in which
	// a death repeats the entry stays one round trip.
	if err := MarkDone(ctx, c.Marks, id, token); err != nil {
		res.Unmarked, res.MarkErr = true, err
	}
	return nil
}

// MarkDone stores id's done mark once its entry is written under token's
// claim, retrying for up to 5 s on a context of its own: the caller's
// deadline must not cut it (a mark that is never stored lets a redelivery
// after the lease expires write the entry again).
func MarkDone(ctx context.Context, m Marker, id idcodec.ID, token string) error {
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), markTimeout)
	defer cancel()
	return retry(mctx, func() (bool, error) { return true, m.Mark(mctx, id, token) })
}

// claim takes the lease on id's entry for token, retrying failures to
// reach the marks (not ErrAuditBusy) for up to claimTimeout.
func (c *Core) claim(ctx context.Context, id idcodec.ID, token string) (won bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, claimTimeout)
	defer cancel()
	err = retry(cctx, func() (bool, error) {
		var e error
		won, e = c.Marks.Claim(cctx, id, token)
		return !errors.Is(e, ErrAuditBusy), e
	})
	if err != nil {
		if errors.Is(err, ErrAudit) {
			return false, err
		}
		return false, fmt.Errorf("%w: %s: claim: %w", ErrAudit, id, err)
	}
	return won, nil
}

// retry runs f until it succeeds, f says its error is final (again false)
// or ctx ends, waiting 10 ms doubling to 1 s between attempts; it returns
// f's last error.
func retry(ctx context.Context, f func() (again bool, err error)) error {
	wait := 10 * time.Millisecond
	for {
		again, err := f()
		if err == nil || !again || !sleep(ctx, wait) {
			return err
		}
		wait = min(2*wait, time.Second)
	}
}

// recover writes the audit entry of an effect stored by an earlier attempt
// of this event that died before auditing it.
func (c *Core) recover(ctx context.Context, ev Event, rec registry.Record, now time.Time, res *Result) (bool, error) {
	within := c.RecoverWithin
	if within <= 0 {
		within = DefaultRecoverWithin
	}
	st, ok := compensatedStep(rec)
	if !ok || st.Actor != ev.Actor() || st.Reason != ev.Reason {
		return false, nil
	}
	if age := now.UnixMilli() - st.AtMS; age > within.Milliseconds() || (c.RecoverAfter > 0 && age < c.RecoverAfter.Milliseconds()) {
		return false, nil
	}
	token := NewToken()
	won, err := c.claim(ctx, rec.ID, token)
	if err != nil || !won {
		return false, err
	}
	cs := CaseApplied
	if rec.Tombstone {
		cs = CaseNullCompensation
	}
	if err := c.auditClaimed(ctx, ev, rec.ID, token, cs, true, res); err != nil {
		return false, err
	}
	return true, nil
}

func compensatedStep(rec registry.Record) (registry.Step, bool) {
	for i := len(rec.History) - 1; i >= 0; i-- {
		if rec.History[i].State == registry.Compensated {
			return rec.History[i], true
		}
	}
	return registry.Step{}, false
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

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
