package failurestream_test

import (
	"encoding/json"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap/zaptest"

	"github.com/aws/aws-lambda-go/events"
	"github.com/idgen/idgen/functions/failurestream"
	"github.com/idgen/idgen/shared/platform/tracing"
	"github.com/idgen/idgen/shared/saga/sagatest"
)

// recordingTracer is the tracer "compensate" of a provider whose ended
// spans rec keeps; the provider shuts down when t ends.
func recordingTracer(t *testing.T) (rec *tracetest.SpanRecorder, tracer trace.Tracer) {
	rec = tracetest.NewSpanRecorder()
	tp := tracing.NewProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	return rec, tp.Tracer("compensate")
}

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
	rec, tracer := recordingTracer(t)
	w := e.worker("w1", failurestream.Config{Tracer: tracer}, e.Core(store, aud, e.RDB), aud, e.RDB)

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

// The Lambda handler continues the envelope's trace for SQS records and
// EventBridge events alike.
func TestLambdaCompensationContinuesTheEventsTrace(t *testing.T) {
	const traceID = "0af7651916cd43dd8448eb211c80319c"
	e := newEnv(t)
	store := e.Store()
	aud, _ := e.AuditLog("lambda")
	rec, tracer := recordingTracer(t)
	h := failurestream.LambdaHandler{Core: e.Core(store, aud, e.RDB), Logger: zaptest.NewLogger(t), Tracer: tracer}
	ids := sagatest.PendingIDs(t, store, 2)
	parent := "00-" + traceID + "-b7ad6b7169203331-01"

	body := func(id string) string {
		b, _ := json.Marshal(map[string]string{"id": id, "reason": "declined", "traceparent": parent})
		return string(b)
	}
	sqs, _ := json.Marshal(events.SQSEvent{Records: []events.SQSMessage{{MessageId: "m1", Body: body(ids[0].String())}}})
	out, err := h.Handle(t.Context(), sqs)
	if err != nil || len(out.(events.SQSEventResponse).BatchItemFailures) != 0 {
		t.Fatalf("SQS: %v %+v", err, out)
	}
	eb, _ := json.Marshal(events.EventBridgeEvent{DetailType: "transaction.failed", Detail: json.RawMessage(body(ids[1].String()))})
	if _, err := h.Handle(t.Context(), eb); err != nil {
		t.Fatalf("EventBridge: %v", err)
	}

	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	for i, s := range spans {
		if s.Name() != "compensate" || s.SpanContext().TraceID().String() != traceID || s.Parent().SpanID().String() != "b7ad6b7169203331" {
			t.Errorf("span %d: %s in trace %s under %s, want compensate in %s under the publisher's span", i, s.Name(), s.SpanContext().TraceID(), s.Parent().SpanID(), traceID)
		}
	}
}
