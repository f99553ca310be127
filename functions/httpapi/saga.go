package httpapi

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/idgen/idgen/api"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/platform/auth"
	"github.com/idgen/idgen/shared/platform/sealer"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/saga"
)

func msTime(ms int64) string {
	if ms == 0 {
		return ""
	}
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

// commit applies pending → committed. The outcome (applied, replayed) goes
// in the Idgen-Outcome header, not the body, so the body of a repeat is
// byte-for-byte the first answer (saga.AnswerOf: built from the
// stored record only).
//
// The deadline decides at commit time, on this request's clock (the one
// its history step would carry): a commit at or after the ID's deadline
// never commits it; it compensates it if it is still pending and answers
// 409 expired (expireLate). The deadline is fixed at issue, so reading it
// before the transition is not a race; the state is decided by the
// registry's compare-and-set alone.
func (s *Service) commit(c *fasthttp.RequestCtx, log *reqLog) error {
	var b idBody
	id, err := decodeID(c, log, &b)
	if err != nil {
		return err
	}
	if b.Reason != "" {
		return Errorf(api.CodeInvalidRequest, "reason applies to /compensate only")
	}
	if err := s.auditGate(); err != nil {
		return err
	}
	ctx, cancel := s.requestContext(log)
	defer cancel()
	to := registry.Committed
	now := s.cfg.Now().UnixMilli()
	cur, err := s.d.Registry.Get(ctx, id)
	if err != nil {
		s.d.Metrics.transitions.WithLabelValues(to.String(), "refused").Inc()
		return err
	}
	if cur.DeadlineMS != 0 && now >= cur.DeadlineMS && cur.State != registry.Committed {
		if err := s.expireLate(ctx, c, log, id); err != nil {
			return err
		}
	}
	rec, out, err := s.d.Registry.Transition(ctx, id, registry.Change{To: to, Actor: s.subject(c), NowMS: now})
	if err != nil {
		s.d.Metrics.transitions.WithLabelValues(to.String(), "refused").Inc()
		if errors.Is(err, registry.ErrConflict) {
			// Compensated since the read: by the sweeper of an instance
			// whose clock runs ahead, perhaps.
			if cur, gerr := s.d.Registry.Get(ctx, id); gerr == nil && deadlineCompensated(cur) {
				return Errorf(api.CodeExpired, "the ID's deadline passed before the commit; it is compensated (reason %s)", cur.Last().Reason)
			}
		}
		return err
	}
	s.d.Metrics.transitions.WithLabelValues(to.String(), out.String()).Inc()
	// With CommitMarks a replay writes the entry of the stored commit when
	// an earlier attempt of it stored it but did not audit it (its WAIT
	// timed out, the instance died, the audit log refused the entry),
	// unless the marks say it did.
	once := saga.Once{Audit: s.requestAudit(c, log, "", ""), Marks: s.d.CommitMarks, Now: s.cfg.Now}
	e := audit.Event{Actor: s.subject(c), Action: audit.ActionCommit, Resource: id.String(), Outcome: registry.Applied.String()}
	var (
		w    saga.Written
		aerr error
	)
	if out != registry.Replayed {
		log.L().Info("saga transition", zap.Stringer("id", id), zap.Stringer("state", to), zap.Stringer("outcome", out), zap.String("reason", b.Reason))
		w, aerr = once.Write(ctx, id, e)
	} else {
		w, aerr = once.Recover(ctx, rec, to, e)
	}
	logAudit(log, "commit", id, out == registry.Replayed && w.Wrote, w.MarkErr, aerr)
	if aerr != nil && !s.cfg.AuditFailOpen {
		// Stored, not audited: the retry writes the entry.
		return Errorf(api.CodeUnavailable, "the commit is stored but its audit entry is not written yet: retry")
	}
	c.Response.Header.Set("Idgen-Outcome", out.String())
	return writeJSON(c, fasthttp.StatusOK, saga.AnswerOf(rec))
}

// compensate voids an ID through the compensation core that every
// transport shares: the body is the failure envelope (saga.Event,
// reason optional), the actor the caller's subject. The outcome (applied,
// replayed, null_compensation) goes in the Idgen-Outcome header, and the
// body of a repeat is byte-for-byte the first answer.
//
// Audit: one entry per effective compensation, with the envelope's source
// and event_id as its source and request_id, else the caller's address and
// the request ID. Every request counts as a possible retry of one whose
// answer was lost (Redelivered), so with Deps.CompensationMarks a retry
// writes the entry of an attempt that died before auditing it. When the
// entry could not be written (the audit sink failed, the marks could not be
// reached, another attempt holds its claim), the answer is 503 with
// Retry-After although the compensation is stored: the retry writes the
// entry (Config.AuditFailOpen: logged, answered 200).
func (s *Service) compensate(c *fasthttp.RequestCtx, log *reqLog) error {
	var b compensateBody
	id, err := decodeID(c, log, &b)
	if err != nil {
		return err
	}
	ev := saga.Event{
		EventID: b.EventID, ID: id.String(), Reason: b.Reason, OccurredAt: b.OccurredAt, Source: b.Source,
		Traceparent: b.Traceparent, Tracestate: b.Tracestate,
		Caller: s.subject(c), Redelivered: true,
	}
	if _, err := ev.Validate(); err != nil {
		return err
	}
	if err := s.auditGate(); err != nil {
		return err
	}
	ctx, cancel := s.requestContext(log)
	defer cancel()
	core := s.comp
	core.Audit = s.requestAudit(c, log, b.Source, b.EventID)
	res, err := core.Compensate(ctx, ev)
	to := registry.Compensated.String()
	if err != nil && !errors.Is(err, saga.ErrAudit) {
		s.d.Metrics.transitions.WithLabelValues(to, "refused").Inc()
		return err
	}
	s.d.Metrics.transitions.WithLabelValues(to, res.Outcome.String()).Inc()
	if res.Outcome != registry.Replayed {
		fields := []zap.Field{zap.Stringer("id", id), zap.String("state", to), zap.Stringer("outcome", res.Outcome), zap.String("reason", b.Reason)}
		for _, f := range [][2]string{{saga.FieldEventID, b.EventID}, {saga.FieldSource, b.Source}, {saga.FieldOccurredAt, b.OccurredAt}} {
			if f[1] != "" {
				fields = append(fields, zap.String(f[0], f[1]))
			}
		}
		log.L().Info("saga transition", fields...)
	}
	logAudit(log, "compensate", id, res.AuditRecovered, res.MarkErr, err)
	if err != nil && !s.cfg.AuditFailOpen {
		return Errorf(api.CodeUnavailable, "the compensation is stored but its audit entry is not written yet: retry")
	}
	c.Response.Header.Set("Idgen-Outcome", res.Outcome.String())
	return writeJSON(c, fasthttp.StatusOK, res.Answer)
}

// logAudit logs how writing the audit entry of what's effect on id went
// (saga.Once, through the core or not): an entry written for an
// earlier attempt, or written without its mark, is a warning; one not
// written is an error, or news when another attempt holds its claim.
func logAudit(log *reqLog, what string, id idcodec.ID, recovered bool, markErr, err error) {
	switch {
	case errors.Is(err, saga.ErrAuditBusy):
		log.L().Info(what+": another attempt holds the audit claim", zap.Stringer("id", id))
	case err != nil:
		log.L().Error(what+": audit entry not written", zap.Stringer("id", id), zap.Error(err))
	}
	if recovered {
		log.L().Warn(what+": wrote the audit entry an earlier attempt left out", zap.Stringer("id", id))
	}
	if markErr != nil {
		log.L().Warn(what+": audit mark not stored; a retry after the lease may repeat the entry", zap.Stringer("id", id), zap.Error(markErr))
	}
}

// requestAudit is the Recorder of one request's saga entries: source (the
// caller's address when empty) and requestID (the request's ID when empty)
// go in the entry, with this instance.
func (s *Service) requestAudit(c *fasthttp.RequestCtx, log *reqLog, source, requestID string) requestAudit {
	return requestAudit{next: s.d.Audit, source: firstNonEmpty(source, c.RemoteIP().String()),
		requestID: firstNonEmpty(requestID, log.requestID()), traceID: log.traceID(), instance: s.cfg.Instance}
}

// requestAudit gives an entry the request's source, request ID and
// instance.
type requestAudit struct {
	next                                 Auditor
	source, requestID, traceID, instance string
}

var _ saga.Recorder = requestAudit{}

func (r requestAudit) Record(e audit.Event) error {
	e.Source, e.RequestID, e.Instance = r.source, r.requestID, r.instance
	if r.traceID != "" { // else the event's own (saga.Event.TraceID), if any
		e.TraceID = r.traceID
	}
	return r.next.Record(e)
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (s *Service) getID(c *fasthttp.RequestCtx, log *reqLog) error {
	id, err := idcodec.Parse(log.param)
	if err != nil {
		return err
	}
	log.setIDs(id)
	ctx, cancel := s.requestContext(log)
	defer cancel()
	rec, err := s.d.Registry.Get(ctx, id)
	if err != nil {
		return err
	}
	f := id.Decompose()
	v := api.IDRecord{
		ID: id.String(), Timestamp: msTime(int64(f.TimestampMS)), Worker: f.Worker, Shard: f.Shard, Counter: f.Counter,
		State: rec.State.String(), Deadline: msTime(rec.DeadlineMS), Subject: rec.Subject, Tombstone: rec.Tombstone,
		History: make([]api.Step, 0, len(rec.History)),
	}
	if rec.IssuedAtMS != 0 {
		t := msTime(rec.IssuedAtMS)
		v.IssuedAt = &t
	}
	// Metadata goes only to the subject that issued the ID, or an admin.
	if p := principal(c); len(rec.Metadata) > 0 && (rec.Subject == p.Subject || p.Has(auth.ScopeAdmin)) {
		plain, err := s.d.Sealer.Open(ctx, rec.Subject, id[:], rec.Metadata)
		switch {
		case errors.Is(err, sealer.ErrErased):
			v.MetadataErased = true
		case err != nil:
			return fmt.Errorf("open metadata of %s: %w", id, err)
		default:
			v.Metadata = plain
		}
	}
	for _, st := range rec.History {
		v.History = append(v.History, api.Step{State: st.State.String(), At: msTime(st.AtMS), Reason: st.Reason, Actor: st.Actor})
	}
	return writeJSON(c, fasthttp.StatusOK, v)
}

// maxSubject bounds the subject of an erasure request.
const maxSubject = 256

// eraseSubject deletes a subject's data key: every metadata of theirs
// becomes unreadable (GDPR erasure) while the ID records stay for audit.
func (s *Service) eraseSubject(c *fasthttp.RequestCtx, log *reqLog) error {
	// route matched the raw path: the subject is one segment of printable
	// ASCII, neither encoded nor a dot segment (checkPath).
	subject := log.param
	if subject == "" || len(subject) > maxSubject || strings.Contains(subject, "/") {
		return Errorf(api.CodeInvalidRequest, "subject must be 1..%d characters without '/'", maxSubject)
	}
	if err := s.auditGate(); err != nil {
		return err
	}
	ctx, cancel := s.requestContext(log)
	defer cancel()
	if err := s.d.Sealer.Erase(ctx, subject); err != nil {
		return err
	}
	log.L().Info("subject data key erased", zap.String("subject", subject))
	s.audit(c, log, audit.Event{Actor: s.subject(c), Action: audit.ActionEraseSubject, Resource: subject, Outcome: audit.OutcomeSuccess})
	return writeJSON(c, fasthttp.StatusOK, map[string]any{"subject": subject, "erased": true})
}
