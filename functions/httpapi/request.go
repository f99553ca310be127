package httpapi

// The state of one request: its context (deadline and span) and what its
// handlers share (reqLog).

import (
	"context"
	"encoding/hex"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
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
	// access holds the access line's fields and text the bytes of its
	// strings (see accessLine); both are overwritten by each line.
	access [12]zap.Field
	text   [320]byte
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

// accessLine returns the fields of the request's access line (see
// Service.finish) in r.access, trace_id and span_id as tracing.Fields
// writes them. Its strings are cut from one string made for the line (one
// allocation): a field's string must not change after the line is
// written, since a core may keep the fields (zaptest/observer does), so
// r.text, which the next request overwrites, is never lent.
func (r *reqLog) accessLine(c *fasthttp.RequestCtx, route string, status int, latency time.Duration, subject string) []zap.Field {
	b := r.text[:0]
	rid := r.rid
	if rid == "" {
		b = append(b, r.ridBuf[:r.ridLen]...)
	}
	ridEnd := len(b)
	b = appendAddr(b, c.RemoteAddr())
	remoteEnd := len(b)
	var sc trace.SpanContext
	if r.span != nil {
		if sc = r.span.SpanContext(); sc.IsValid() {
			tid, sid := sc.TraceID(), sc.SpanID()
			b = hex.AppendEncode(b, tid[:])
			b = hex.AppendEncode(b, sid[:])
		}
	}
	traceEnd := len(b)
	if r.nIDs > 0 {
		b = r.firstID.AppendText(b)
	}
	if r.nIDs > 1 {
		b = r.lastID.AppendText(b)
	}
	text := string(b)
	if rid == "" {
		rid = text[:ridEnd]
	}
	f := append(r.access[:0], zap.String(logring.RequestIDKey, rid), zap.String("method", method(c.Method())), zap.String("route", route),
		zap.Int("status", status), zap.Duration("latency", latency), zap.String("remote", text[ridEnd:remoteEnd]))
	if subject != "" {
		f = append(f, zap.String("subject", subject))
	}
	if traceEnd > remoteEnd {
		spanStart := remoteEnd + 2*len(sc.TraceID())
		f = append(f, zap.String("trace_id", text[remoteEnd:spanStart]), zap.String("span_id", text[spanStart:traceEnd]))
	}
	switch {
	case r.nIDs == 1:
		f = append(f, zap.String("id", text[traceEnd:]))
	case r.nIDs > 1:
		f = append(f, zap.String("first_id", text[traceEnd:traceEnd+idcodec.TextLen]), zap.String("last_id", text[traceEnd+idcodec.TextLen:]), zap.Int("count", r.nIDs))
	}
	return f
}

// appendAddr appends a.String() to b, without allocating for a TCP
// address: net.IP.String formats with netip, and an IPv4-mapped address
// is written as IPv4 by both.
func appendAddr(b []byte, a net.Addr) []byte {
	if t, ok := a.(*net.TCPAddr); ok && t != nil && t.Zone == "" && t.Port >= 0 && t.Port <= 0xffff {
		if ip, ok := netip.AddrFromSlice(t.IP); ok {
			return netip.AddrPortFrom(ip.Unmap(), uint16(t.Port)).AppendTo(b)
		}
	}
	return append(b, a.String()...)
}

// servedMethods are the methods the API serves, as constant strings.
var servedMethods = [...]string{
	fasthttp.MethodGet, fasthttp.MethodPost, fasthttp.MethodHead,
	fasthttp.MethodPut, fasthttp.MethodDelete, fasthttp.MethodOptions,
}

// method returns m as a string, without allocating for servedMethods:
// the comparison string(m) == k converts nothing.
func method(m []byte) string {
	for _, k := range servedMethods {
		if string(m) == k {
			return k
		}
	}
	return string(m)
}
