package httpapi

import (
	"context"
	"errors"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/idgen/idgen/api"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/saga"
)

// The names of the deadline compensations (saga.ReasonDeadline),
// for the users of this package.
const (
	ReasonDeadline = saga.ReasonDeadline
	ReasonTimeout  = saga.ReasonTimeout
	ActorSystem    = saga.ActorSystem
)

// expireLate compensates id, whose deadline has passed, for a commit that
// came too late, and returns the error that answers that commit: expired
// (409) once the ID is compensated for its deadline (now or before, by the
// sweeper or an earlier late commit); conflict (409) when a client
// compensated it; unavailable (503) when the compensation is stored but its
// audit entry is not (the retry writes it, see saga.Core). It
// returns nil when the ID turns out committed: that commit was in time, and
// the caller answers this one as its replay.
//
// The compensation is a deadline compensation (saga.ReasonDeadline,
// by saga.ActorSystem; the sweeper makes the others): it audits
// only the one it applied or, with CompensationMarks, the one an earlier
// attempt of it applied and did not audit.
func (s *Service) expireLate(ctx context.Context, c *fasthttp.RequestCtx, log *reqLog, id idcodec.ID) error {
	core := s.comp
	core.Registry = pendingOnly{reg: s.d.Registry}
	core.Audit = s.requestAudit(c, log, "", "")
	// Redelivered: this request may be the retry of a late commit whose
	// compensation was stored but not audited.
	res, err := core.Compensate(ctx, saga.Event{ID: id.String(), Reason: saga.ReasonDeadline, Caller: saga.ActorSystem, Redelivered: true})
	to := registry.Compensated.String()
	switch {
	case errors.Is(err, registry.ErrConflict):
		return nil // committed in time
	case err != nil && !errors.Is(err, saga.ErrAudit):
		s.d.Metrics.transitions.WithLabelValues(to, "refused").Inc()
		return err
	}
	s.d.Metrics.transitions.WithLabelValues(to, res.Outcome.String()).Inc()
	s.d.Metrics.transitions.WithLabelValues(registry.Committed.String(), "refused").Inc()
	if res.Outcome == registry.Applied {
		log.L().Info("saga transition", zap.Stringer("id", id), zap.String("state", to), zap.Stringer("outcome", res.Outcome), zap.String("reason", saga.ReasonDeadline))
	}
	logAudit(log, "commit: deadline compensation", id, res.AuditRecovered, res.MarkErr, err)
	if err != nil && !s.cfg.AuditFailOpen {
		return Errorf(api.CodeUnavailable, "the ID's deadline passed before the commit; it is compensated but the audit entry is not written yet: retry")
	}
	if r := res.Answer.Reason; r != saga.ReasonDeadline && r != saga.ReasonTimeout {
		return Errorf(api.CodeConflict, "the ID was compensated; it cannot be committed")
	}
	return Errorf(api.CodeExpired, "the ID's deadline passed before the commit; it is compensated (reason %s)", res.Answer.Reason)
}

// deadlineCompensated reports whether rec is compensated for its deadline
// (by the sweeper or a late commit).
func deadlineCompensated(rec registry.Record) bool {
	if rec.State != registry.Compensated {
		return false
	}
	st := rec.Last()
	return st.Actor == saga.ActorSystem && (st.Reason == saga.ReasonDeadline || st.Reason == saga.ReasonTimeout)
}

// pendingOnly is the registry as a deadline compensation needs it: it
// compensates a pending ID only (a committed one was committed in time:
// ErrConflict), and answers an ID already compensated as a replay of its
// stored record, so that the core answers it like a duplicate and may
// recover its audit entry. The transition itself is the registry's
// compare-and-set from pending: the sweeper and every late commit race on
// it and one wins.
type pendingOnly struct{ reg Registry }

var _ saga.Transitioner = pendingOnly{}

func (p pendingOnly) Transition(ctx context.Context, id idcodec.ID, ch registry.Change) (registry.Record, registry.Outcome, error) {
	ch.From = registry.Pending
	rec, out, err := p.reg.Transition(ctx, id, ch)
	if !errors.Is(err, registry.ErrConflict) {
		return rec, out, err
	}
	// Not pending: compensated and committed are final for this purpose
	// (a committed ID may yet be compensated by a client, never expired),
	// so this read sees the state that refused the change or a later one.
	cur, gerr := p.reg.Get(ctx, id)
	switch {
	case gerr != nil:
		return registry.Record{}, 0, gerr
	case cur.State == registry.Compensated:
		return cur, registry.Replayed, nil
	}
	return registry.Record{}, 0, err
}
