package saga_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/idgen/idgen/shared/saga"
	"github.com/idgen/idgen/shared/saga/sagatest"
)

// The trace context fields of the envelope are bounded and printable; an
// invalid but well-bounded traceparent is ignored (no trace ID), as W3C
// Trace Context asks of a receiver.
func TestEventTraceContext(t *testing.T) {
	id := sagatest.NewIDs(1)[0].String()
	for _, tc := range []struct {
		name        string
		traceparent string
		tracestate  string
		malformed   bool
		traceID     string
	}{
		{"none", "", "", false, ""},
		{"valid", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "vendor=x", false, "4bf92f3577b34da6a3ce929d0e0e4736"},
		{"invalid ignored", "00-zz-00f067aa0ba902b7-01", "", false, ""},
		{"all-zero trace ID ignored", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "", false, ""},
		{"traceparent too long", strings.Repeat("a", saga.MaxTraceparent+1), "", true, ""},
		{"traceparent not printable", "00-\n", "", true, ""},
		{"tracestate too long", "", strings.Repeat("a", saga.MaxTracestate+1), true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fields := map[string]any{saga.FieldID: id, saga.FieldReason: "declined", saga.FieldTraceparent: tc.traceparent, saga.FieldTracestate: tc.tracestate}
			ev, err := saga.EventFromFields(fields, "test")
			if err != nil {
				t.Fatal(err)
			}
			_, err = ev.Validate()
			if got := errors.Is(err, saga.ErrMalformed); got != tc.malformed {
				t.Fatalf("Validate: %v, want malformed %v", err, tc.malformed)
			}
			if !tc.malformed && ev.TraceID() != tc.traceID {
				t.Errorf("TraceID %q, want %q", ev.TraceID(), tc.traceID)
			}
		})
	}
}
