package httpapi

import (
	"bytes"
	"context"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/idgen/idgen/shared/platform/tracing"
)

// headerCarrier reads and writes the W3C trace context headers of a
// fasthttp request.
type headerCarrier struct{ h *fasthttp.RequestHeader }

var _ propagation.TextMapCarrier = headerCarrier{}

func (c headerCarrier) Get(key string) string { return string(c.h.Peek(key)) }
func (c headerCarrier) Set(key, value string) { c.h.Set(key, value) }
func (c headerCarrier) Keys() []string {
	var keys []string
	for k := range c.h.All() {
		keys = append(keys, string(k))
	}
	return keys
}

// startSpan starts the request's server span, as a child of the caller's
// traceparent when it sent a valid one. Its name is the method until
// endSpan names the route.
func (s *Service) startSpan(c *fasthttp.RequestCtx, log *reqLog) {
	ctx := tracing.Propagator.Extract(context.Background(), headerCarrier{&c.Request.Header})
	_, log.span = s.d.Tracer.Start(ctx, string(c.Method()), trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("http.request.method", string(c.Method())),
			attribute.String("url.path", string(c.URI().PathOriginal())),
			attribute.String("idgen.request_id", log.requestID()),
		))
}

// untracedProbe reports a request of a load balancer's or a scraper's
// probe (/health, /health/live, /health/ready, /metrics) that carries no
// traceparent: it starts no trace, so that probes several times a second
// per instance do not crowd out the traces of transactions.
func untracedProbe(c *fasthttp.RequestCtx) bool {
	p := c.URI().PathOriginal()
	if !bytes.HasPrefix(p, []byte("/health")) && !bytes.Equal(p, []byte("/metrics")) {
		return false
	}
	return len(c.Request.Header.Peek("traceparent")) == 0
}

// endSpan names the span after its route, records the status (5xx is an
// error, as the HTTP semantic conventions have it for servers) and ends it.
func endSpan(c *fasthttp.RequestCtx, span trace.Span, route string, status int) {
	span.SetName(string(c.Method()) + " " + route)
	span.SetAttributes(attribute.String("http.route", route), attribute.Int("http.response.status_code", status))
	if status >= 500 {
		span.SetStatus(codes.Error, "")
	}
	span.End()
}

// noSpan is the span of a step with tracing off: it records nothing.
var noSpan = trace.SpanFromContext(context.Background())

// traceID is the request's trace ID, "" with tracing off.
func (r *reqLog) traceID() string {
	if r.span == nil {
		return ""
	}
	return r.span.SpanContext().TraceID().String()
}
