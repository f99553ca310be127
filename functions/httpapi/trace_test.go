package httpapi_test

import (
	"os"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/idgen/idgen/functions/httpapi"
	"github.com/idgen/idgen/shared/platform/tracing"
)

const (
	callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan  = "00f067aa0ba902b7"
)

// A request that sends a W3C traceparent continues the caller's trace:
// its server span is the caller span's child, the registry write it
// waited for and the range claim it started are the server span's
// children, and its access line and audit entries carry the trace ID.
func TestTraceContinuesTheCallersTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := tracing.NewProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	a := newAccessService(t, httpapi.Config{}, tp)

	// The generator is cold: this request starts the first range claim
	// and waits for it.
	gen := a.do(t, "POST", "/generate", "", "traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
	if gen.StatusCode() != 200 {
		t.Fatalf("generate: %d %s", gen.StatusCode(), gen.Body())
	}
	id := decodeJSON[struct{ ID string }](t, gen.Body()).ID

	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		byName[s.Name()] = s
	}
	server, ok := byName["POST /generate"]
	if !ok {
		t.Fatalf("no server span; spans %v", names(rec.Ended()))
	}
	if server.SpanContext().TraceID().String() != callerTrace || server.Parent().SpanID().String() != callerSpan || !server.Parent().IsRemote() {
		t.Errorf("server span in trace %s under %s, want trace %s under the caller's span %s", server.SpanContext().TraceID(), server.Parent().SpanID(), callerTrace, callerSpan)
	}
	if server.SpanKind() != trace.SpanKindServer {
		t.Errorf("server span kind %v", server.SpanKind())
	}
	for _, name := range []string{"registry.register", "generator.claim_range"} {
		s, ok := byName[name]
		if !ok {
			t.Errorf("no %s span; spans %v", name, names(rec.Ended()))
			continue
		}
		if s.Parent().SpanID() != server.SpanContext().SpanID() || s.SpanContext().TraceID() != server.SpanContext().TraceID() {
			t.Errorf("%s span under %s in trace %s, want under the server span %s", name, s.Parent().SpanID(), s.SpanContext().TraceID(), server.SpanContext().SpanID())
		}
	}
	lines := a.accessLines()
	if len(lines) != 1 || lines[0]["trace_id"] != callerTrace || lines[0]["span_id"] != server.SpanContext().SpanID().String() {
		t.Errorf("access lines %v, want one with trace_id %s and the server span's ID", lines, callerTrace)
	}

	const otherTrace = "0af7651916cd43dd8448eb211c80319c"
	commit := a.do(t, "POST", "/commit", `{"id":"`+id+`"}`, "traceparent", "00-"+otherTrace+"-b7ad6b7169203331-01")
	if commit.StatusCode() != 200 {
		t.Fatalf("commit: %d %s", commit.StatusCode(), commit.Body())
	}
	b, err := os.ReadFile(a.auditLog)
	if err != nil {
		t.Fatal(err)
	}
	var entry string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, `"id.commit"`) {
			entry = l
		}
	}
	if !strings.Contains(entry, `"trace_id":"`+otherTrace+`"`) {
		t.Errorf("commit's audit entry %q, want trace_id %s", entry, otherTrace)
	}
}

// Without a traceparent a request starts a trace of its own; the probes
// (/health, /health/live, /health/ready, /metrics) start none, and join the
// caller's trace when it sends one.
func TestTraceStartsATraceWithoutTraceparent(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := tracing.NewProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	a := newAccessService(t, httpapi.Config{}, tp)
	if r := a.do(t, "GET", "/openapi.json", ""); r.StatusCode() != 200 {
		t.Fatalf("openapi.json: %d", r.StatusCode())
	}
	spans := rec.Ended()
	if len(spans) != 1 || spans[0].Name() != "GET /openapi.json" || spans[0].Parent().IsValid() {
		t.Fatalf("spans %v, want one root span GET /openapi.json", names(spans))
	}
	for _, p := range []string{"/health", "/health/live", "/health/ready"} {
		a.do(t, "GET", p, "")
	}
	if spans := rec.Ended(); len(spans) != 1 {
		t.Fatalf("spans %v after the probes, want none of theirs", names(spans))
	}
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if r := a.do(t, "GET", "/health/live", "", "traceparent", parent); r.StatusCode() != 200 {
		t.Fatalf("health: %d", r.StatusCode())
	}
	if spans := rec.Ended(); len(spans) != 2 || spans[1].Name() != "GET /health/live" || spans[1].Parent().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("spans %v: want the probe's span in the caller's trace", names(spans))
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

// POST /compensate takes the failed transaction's trace context in the
// failure envelope, as every transport does: with tracing off its audit
// entry carries that trace ID.
func TestCompensateEnvelopeTraceID(t *testing.T) {
	a := newAccessService(t, httpapi.Config{}, nil)
	gen := a.do(t, "POST", "/generate", "")
	id := decodeJSON[struct{ ID string }](t, gen.Body()).ID
	r := a.do(t, "POST", "/compensate", `{"id":"`+id+`","reason":"declined","traceparent":"00-`+callerTrace+`-`+callerSpan+`-01"}`)
	if r.StatusCode() != 200 {
		t.Fatalf("compensate: %d %s", r.StatusCode(), r.Body())
	}
	b, err := os.ReadFile(a.auditLog)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"trace_id":"`+callerTrace+`"`) {
		t.Errorf("audit log %s, want the compensation's entry with trace_id %s", b, callerTrace)
	}
	long := a.do(t, "POST", "/compensate", `{"id":"`+id+`","traceparent":"`+strings.Repeat("a", 129)+`"}`)
	if long.StatusCode() != 400 {
		t.Errorf("traceparent of 129 bytes: %d %s, want 400", long.StatusCode(), long.Body())
	}
}
