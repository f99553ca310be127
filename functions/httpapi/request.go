package httpapi

// The state of one request: its context (deadline and span) and what its
// handlers share (reqLog).

import (
	"context"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/logring"
	"github.com/idgen/idgen/shared/platform/tracing"
	"github.com/idgen/idgen/shared/registry"
)

// requestContext returns the context that bounds a request's work by
// cfg.RequestTimeout, carrying the request's span when tracing is on.
// fasthttp's RequestCtx has none and must not escape into goroutines, so
// work runs on this context. The cancel function is a no-op: the deadline
// context is shared (see deadlines).
func (s *Service) requestContext(log *reqLog) (context.Context, context.CancelFunc) {
	ctx := s.deadlines.get(time.Now())
	if log.span != nil {
		ctx = trace.ContextWithSpan(ctx, log.span)
	}
	return ctx, func() {}
}

// deadlines hands out request contexts: every request that starts within the
// same millisecond shares one context whose deadline is its timeout after
// that millisecond ends, so a request's deadline is late by less than 1 ms.
// One timer a millisecond instead of one per request (with its context,
// timer and channel allocations) under load.
type deadlines struct {
	timeout time.Duration
	cur     atomic.Pointer[sharedDeadline]
}

type sharedDeadline struct {
	ctx      context.Context
	deadline time.Time
	// cancel is never called: the timer cancels the context at its
	// deadline, and it is shared by requests that may still run.
	cancel context.CancelFunc
}

// get returns a context whose deadline is within [now+timeout,
// now+timeout+1ms].
func (d *deadlines) get(now time.Time) context.Context {
	want := now.Add(d.timeout)
	if c := d.cur.Load(); c != nil {
		if late := c.deadline.Sub(want); late >= 0 && late <= time.Millisecond {
			return c.ctx
		}
	}
	dl := want.Truncate(time.Millisecond).Add(time.Millisecond)
	ctx, cancel := context.WithDeadline(context.Background(), dl)
	d.cur.Store(&sharedDeadline{ctx: ctx, deadline: dl, cancel: cancel})
	return ctx
}

// reqLog is what one request's handlers share: its ID, its logger (built
// on first use: most requests log nothing, and cloning the encoders for
// every request costs more than the rest of the hot path), and the path
// route checked and matched. Handle takes it from the Service's pool and
// gives it back when the request ends, unless it is lent (see issue).
type reqLog struct {
	base *zap.Logger
	// ridBuf[:ridLen] is the request ID; rid is it as a string, made on
	// first use (requestID): a request that logs and audits nothing needs
	// none.
	ridBuf [maxRequestID]byte
	ridLen int
	rid    string
	l      *zap.Logger
	// path is the request's path as sent, checked by checkPath; param is
	// its {id} or {subject} segment ("" for routes without one).
	path, param string
	// one holds the ID, record and history step of a single-ID issue.
	// lent says the registry may still read it: a Register that did not
	// answer nil may commit it later (after its context ended), so the
	// reqLog then goes to the garbage collector, never back to the pool.
	one  issueOne
	lent bool
	// firstID, lastID and nIDs are the IDs the request named or was
	// given, for its access line (setIDs).
	firstID, lastID idcodec.ID
	nIDs            int
	// span is the request's server span; nil with tracing off.
	span trace.Span
}

type issueOne struct {
	id   [1]idcodec.ID
	rec  [1]registry.Record
	step [1]registry.Step
}

// reset readies a pooled reqLog for a request (the ID buffer and one are
// overwritten before they are read).
func (r *reqLog) reset(base *zap.Logger) {
	r.base, r.ridLen, r.rid, r.l, r.path, r.param, r.lent, r.nIDs, r.span = base, 0, "", nil, "", "", false, 0, nil
}

// setIDs records the IDs of the request's answer (or the one it names)
// for its access line.
func (r *reqLog) setIDs(ids ...idcodec.ID) {
	if r.nIDs = len(ids); r.nIDs > 0 {
		r.firstID, r.lastID = ids[0], ids[len(ids)-1]
	}
}

// requestID returns the request ID.
func (r *reqLog) requestID() string {
	if r.rid == "" {
		r.rid = string(r.ridBuf[:r.ridLen])
	}
	return r.rid
}

// L returns the logger carrying the request ID.
func (r *reqLog) L() *zap.Logger {
	if r.l == nil {
		r.l = r.base.With(zap.String(logring.RequestIDKey, r.requestID()))
		if r.span != nil {
			r.l = r.l.With(tracing.Fields(r.span.SpanContext())...)
		}
	}
	return r.l
}
