package failurestream_test

import (
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/idgen/idgen/functions/failurestream"
	"github.com/idgen/idgen/shared/platform/tracing"
	"github.com/idgen/idgen/shared/saga/sagatest"
)

// A failure event that carries a W3C traceparent is compensated in a span
// of that trace (the publisher's span is its parent), and the audit entry
// of the compensation carries the trace ID; an event without one starts a
// trace of its own and its entry has no trace ID.
func TestCompensationContinuesTheEventsTrace(t *testing.T) {
	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		spanID  = "00f067aa0ba902b7"
	)
	e := newEnv(t)
	store := e.Store()
	aud, path := e.AuditLog("w1")
	rec := tracetest.NewSpanRecorder()
	tp := tracing.NewProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	w := e.worker("w1", failurestream.Config{Tracer: tp.Tracer("compensate")}, e.Core(store, aud, e.RDB), aud, e.RDB)

	ids := sagatest.PendingIDs(t, store, 2)
	traced := failure(ids[0], "payment declined")
	traced["traceparent"] = "00-" + traceID + "-" + spanID + "-01"
	e.add(traced, failure(ids[1], "payment declined"))
	run(t, w)
	drained(t, w, 20*time.Second)

	spans := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		for _, a := range s.Attributes() {
			if a.Key == "idgen.id" {
				spans[a.Value.AsString()] = s
			}
		}
	}
	s, ok := spans[ids[0].String()]
	if !ok || s.Name() != "compensate" || s.SpanKind() != trace.SpanKindConsumer {
		t.Fatalf("no compensate span of %s: %v", ids[0], spans)
	}
	if s.SpanContext().TraceID().String() != traceID || s.Parent().SpanID().String() != spanID {
		t.Errorf("span in trace %s under %s, want trace %s under the publisher's span %s", s.SpanContext().TraceID(), s.Parent().SpanID(), traceID, spanID)
	}
	other, ok := spans[ids[1].String()]
	if !ok || other.Parent().IsValid() || other.SpanContext().TraceID().String() == traceID {
		t.Errorf("span of the untraced event %v: want a root span of another trace", other)
	}

	byID := map[string]string{}
	for _, ev := range sagatest.AuditLines(t, "id.compensate", path) {
		byID[ev.Resource] = ev.TraceID
	}
	if byID[ids[0].String()] != traceID || byID[ids[1].String()] != "" {
		t.Errorf("audit trace IDs %v, want %s for %s and none for %s", byID, traceID, ids[0], ids[1])
	}
}
