package saga

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/idgen/idgen/shared/platform/backoff"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/registry"
)

// Bounds of Once.
const (
	// claimTimeout bounds the retries of a claim; then the effect's entry
	// is left to a later attempt (ErrAudit).
	claimTimeout = 5 * time.Second
	// markTimeout bounds the retries of a mark, on a context of its own
	// (the entry is written: the caller's deadline must not cut the mark).
	// Well under DefaultLeaseTTL.
	markTimeout = 5 * time.Second
	// releaseTimeout bounds the release of a claim whose entry failed, on
	// a context of its own; a release that fails leaves the lease to run
	// out (DefaultLeaseTTL).
	releaseTimeout = 5 * time.Second
)

// Once writes the audit entry of a stored effect exactly once across every
// attempt that may write it: the attempt that stored the effect (Write),
// and the retries, redeliveries and other processes that find the effect
// stored but maybe not audited (Recover). It is the one way an effect's
// entry is written: Core (compensations), the commits of functions/httpapi
// and the deadline sweeper of functions/sweeper use it, each with marks of
// its own key space. A value is safe for concurrent use; it keeps no state
// between calls (the marks do).
//
// Why one entry per effect. Write is called by the attempt that stored the
// effect only: the registry's compare-and-set lets one attempt store it,
// whatever the number of deliveries. Recover may be called by any number
// of attempts, overlapping one another and that Write. With Marks, every
// call that writes holds a claim first: a lease under a token of that call
// alone (NewToken), won only while no other call's lease lives and no done
// mark is stored (Marker.Claim). So the calls that write run one after
// another, and each either marks the entry done before its lease ends
// (later claims find the mark and write nothing) or wrote nothing and
// releases its lease: audit.Log's Record writes no entry when it fails, so
// the entry is still owed and the next claim writes it. Without Marks,
// Write writes unconditionally and Recover writes nothing (nothing tells
// whether the effect's own attempt wrote its entry): an effect is audited
// at most once.
//
// The windows that repeat an entry, each marked recovered by the repeat
// (Recover sets audit.Event.Recovered): a death between the entry and its
// mark (one round trip to the marks); a mark not stored within 5 s
// (Written.MarkErr); a call that takes longer than the lease from its
// claim to its mark, so another claims meanwhile (the lease, 30 s by
// default, is far above an audit fsync and the mark's 5 s); an entry whose
// Record failed although its line reached the file (shared/platform/audit says
// when). A death holding a lease delays the entry until the lease runs
// out.
type Once struct {
	// Audit is where the entry goes (*audit.Log). Required.
	Audit Recorder
	// Marks elects the call that writes the entry and remembers that it is
	// written; its done marks must outlive RecoverWithin. Default nil: no
	// election (see the type).
	Marks Marker
	// RecoverWithin bounds the age of an effect whose missing entry
	// Recover writes. Default DefaultRecoverWithin.
	RecoverWithin time.Duration
	// Now is the clock of an effect's age. Default time.Now.
	Now func() time.Time
}

// Written says what Once.Write or Once.Recover did.
type Written struct {
	// Wrote: this call wrote the entry. False with no error: another call
	// wrote it (it is marked), or Recover found no effect of e's to audit.
	Wrote bool
	// MarkErr: the entry is written but its mark could not be stored; a
	// Recover after the lease runs out may write it again. Worth a warning.
	MarkErr error
}

// Write writes e, the entry of id's effect that the caller stored, unless
// the marks say it is written. With Marks: claim (retried for up to 5 s),
// entry, mark (retried for up to 5 s on a context of its own); an entry
// that fails releases the claim, so that a later Recover writes it.
//
// Errors wrap ErrAudit: the entry is owed and not written (Recover writes
// it); ErrAuditBusy when another call holds the claim.
func (o Once) Write(ctx context.Context, id idcodec.ID, e audit.Event) (Written, error) {
	if o.Marks == nil {
		if err := o.Audit.Record(e); err != nil {
			return Written{}, fmt.Errorf("%w: %s: %w", ErrAudit, id, err)
		}
		return Written{Wrote: true}, nil
	}
	token := NewToken()
	won, err := o.claim(ctx, id, token)
	if err != nil || !won {
		return Written{}, err
	}
	if err := o.Audit.Record(e); err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
		_ = o.Marks.Release(rctx, id, token)
		return Written{}, fmt.Errorf("%w: %s: %w", ErrAudit, id, err)
	}
	// At once, not batched with the caller's answer: the window in which a
	// death repeats the entry stays one round trip.
	return Written{Wrote: true, MarkErr: o.mark(ctx, id, token)}, nil
}

// Recover writes e, marked recovered, for the effect that rec's last step
// to state to records, when an earlier attempt stored it and may not have
// audited it: that step is e's (same actor and reason), it is at most
// RecoverWithin old, and the marks hold no done mark. Any younger age
// will do: an attempt still running claims before it writes, so the two
// write one entry between them. It writes nothing without Marks. Errors
// as Write's.
func (o Once) Recover(ctx context.Context, rec registry.Record, to registry.State, e audit.Event) (Written, error) {
	if o.Marks == nil {
		return Written{}, nil
	}
	st, ok := LastStep(rec, to)
	if !ok || st.Actor != e.Actor || st.Reason != e.Reason {
		return Written{}, nil
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	age := time.Duration(now().UnixMilli()-st.AtMS) * time.Millisecond
	if age > orDefault(o.RecoverWithin, DefaultRecoverWithin) {
		return Written{}, nil
	}
	e.Recovered = true
	return o.Write(ctx, rec.ID, e)
}

// LastStep returns the last step of rec's history to state.
func LastStep(rec registry.Record, state registry.State) (registry.Step, bool) {
	for i := len(rec.History) - 1; i >= 0; i-- {
		if rec.History[i].State == state {
			return rec.History[i], true
		}
	}
	return registry.Step{}, false
}

// claim takes the lease on id's entry for token, retrying failures to
// reach the marks (not ErrAuditBusy) for up to claimTimeout.
func (o Once) claim(ctx context.Context, id idcodec.ID, token string) (won bool, err error) {
	cctx, cancel := context.WithTimeout(ctx, claimTimeout)
	defer cancel()
	err = retry(cctx, func() (bool, error) {
		var e error
		won, e = o.Marks.Claim(cctx, id, token)
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

// mark stores id's done mark, retrying for up to markTimeout on a context
// of its own: a mark that is never stored lets a Recover after the lease
// runs out write the entry again.
func (o Once) mark(ctx context.Context, id idcodec.ID, token string) error {
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), markTimeout)
	defer cancel()
	return retry(mctx, func() (bool, error) { return true, o.Marks.Mark(mctx, id, token) })
}

// retry runs f until it succeeds, f says its error is final (again false)
// or ctx ends, waiting 10 ms doubling to 1 s between attempts; it returns
// f's last error.
func retry(ctx context.Context, f func() (again bool, err error)) error {
	wait := 10 * time.Millisecond
	for {
		again, err := f()
		if err == nil || !again || !backoff.Sleep(ctx, wait) {
			return err
		}
		wait = min(2*wait, time.Second)
	}
}
