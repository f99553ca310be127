package saga

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Event is the failure envelope every transport delivers:
// {event_id, id, reason, occurred_at, source}. ID and Reason are required
// (Reason is optional when Caller is set).
type Event struct {
	// EventID identifies the failure event upstream (optional, ≤ MaxEventID
	// bytes); it is the audit entry's request_id.
	EventID string `json:"event_id,omitempty"`
	// ID is the transaction ID to void (canonical UUID text).
	ID string `json:"id"`
	// Reason why the transaction failed (1..MaxReason bytes of UTF-8).
	Reason string `json:"reason"`
	// OccurredAt is when the failure happened upstream (RFC 3339, optional).
	OccurredAt string `json:"occurred_at,omitempty"`
	// Source names the system that reported the failure (optional, ≤
	// MaxSource bytes of [A-Za-z0-9._:/-]); the actor is
	// "compensate:<source>". Default DefaultSource.
	Source string `json:"source,omitempty"`
	// Traceparent and Tracestate are the W3C trace context of the failed
	// transaction (optional, ≤ MaxTraceparent and MaxTracestate bytes of
	// printable ASCII): the worker's compensation span continues that
	// trace, and the audit entry carries its trace ID. A value that is not
	// a valid trace context is ignored, as W3C Trace Context asks.
	Traceparent string `json:"traceparent,omitempty"`
	Tracestate  string `json:"tracestate,omitempty"`

	// Redelivered: the transport delivered this event before, or this is a
	// retry after a failed attempt. Set by the transport, never from input.
	Redelivered bool `json:"-"`
	// Caller is the authenticated principal a transport applies the event
	// for (POST /compensate: the token's subject). When set it is the actor
	// instead of "compensate:<source>", and Reason may be empty: a caller
	// is accountable by name, and the HTTP API never required a reason.
	// Set by the transport, never from input.
	Caller string `json:"-"`
}

// Limits of the envelope's fields, in bytes.
const (
	MaxReason  = 256
	MaxEventID = 128
	MaxSource  = 64
	// MaxTraceparent and MaxTracestate bound the trace context fields.
	MaxTraceparent = 128
	MaxTracestate  = 512
)

// Validate checks the envelope and returns the parsed ID. Errors wrap
// ErrMalformed and say which field is wrong.
func (e Event) Validate() (idcodec.ID, error) {
	if e.ID == "" {
		return idcodec.ID{}, fmt.Errorf("%w: missing id", ErrMalformed)
	}
	id, err := idcodec.Parse(e.ID)
	if err != nil {
		return idcodec.ID{}, fmt.Errorf("%w: id %q is not an idgen ID", ErrMalformed, truncate(e.ID, 64))
	}
	switch {
	case e.Reason == "" && e.Caller == "":
		return id, fmt.Errorf("%w: missing reason", ErrMalformed)
	case len(e.Reason) > MaxReason:
		return id, fmt.Errorf("%w: reason is longer than %d bytes", ErrMalformed, MaxReason)
	case !utf8.ValidString(e.Reason):
		return id, fmt.Errorf("%w: reason is not UTF-8", ErrMalformed)
	case len(e.EventID) > MaxEventID || !utf8.ValidString(e.EventID):
		return id, fmt.Errorf("%w: event_id must be at most %d bytes of UTF-8", ErrMalformed, MaxEventID)
	case len(e.Source) > MaxSource || !sourceChars(e.Source):
		return id, fmt.Errorf("%w: source must be at most %d characters of [A-Za-z0-9._:/-]", ErrMalformed, MaxSource)
	case len(e.Traceparent) > MaxTraceparent || !printableASCII(e.Traceparent):
		return id, fmt.Errorf("%w: traceparent must be at most %d printable ASCII characters", ErrMalformed, MaxTraceparent)
	case len(e.Tracestate) > MaxTracestate || !printableASCII(e.Tracestate):
		return id, fmt.Errorf("%w: tracestate must be at most %d printable ASCII characters", ErrMalformed, MaxTracestate)
	}
	if e.OccurredAt != "" {
		if _, err := time.Parse(time.RFC3339Nano, e.OccurredAt); err != nil {
			return id, fmt.Errorf("%w: occurred_at %q is not RFC 3339", ErrMalformed, truncate(e.OccurredAt, 64))
		}
	}
	return id, nil
}

// Actor is the history step's and audit entry's actor: Caller when set,
// else "compensate:<source>".
func (e Event) Actor() string {
	if e.Caller != "" {
		return e.Caller
	}
	return registry.ActorEventPrefix + e.source()
}

func (e Event) source() string {
	if e.Source == "" {
		return DefaultSource
	}
	return e.Source
}

// TraceContext returns the context ctx with the event's trace context
// (an invalid or missing one leaves ctx as it is).
func (e Event) TraceContext(ctx context.Context) context.Context {
	if e.Traceparent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": e.Traceparent, "tracestate": e.Tracestate})
}

// TraceID is the trace ID of the event's trace context, "" when it has no
// valid one.
func (e Event) TraceID() string {
	sc := trace.SpanContextFromContext(e.TraceContext(context.Background()))
	if !sc.IsValid() {
		return ""
	}
	return sc.TraceID().String()
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func sourceChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == ':' || c == '/' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// truncate bounds what an error message quotes of outside input.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Stream entry fields of the failure envelope.
const (
	FieldID         = "id"
	FieldReason     = "reason"
	FieldEventID    = "event_id"
	FieldOccurredAt = "occurred_at"
	FieldSource     = "source"
	// FieldTraceparent and FieldTracestate carry the W3C trace context.
	FieldTraceparent = "traceparent"
	FieldTracestate  = "tracestate"
)

// EventFromFields builds the envelope of a stream entry; source defaults to
// defaultSource. Unknown fields are ignored; a known field that is not a
// string is malformed. Validation is left to Validate.
func EventFromFields(fields map[string]any, defaultSource string) (Event, error) {
	var ev Event
	for name, dst := range map[string]*string{
		FieldID: &ev.ID, FieldReason: &ev.Reason, FieldEventID: &ev.EventID,
		FieldOccurredAt: &ev.OccurredAt, FieldSource: &ev.Source,
		FieldTraceparent: &ev.Traceparent, FieldTracestate: &ev.Tracestate,
	} {
		v, ok := fields[name]
		if !ok {
			continue
		}
		s, ok := v.(string)
		if !ok {
			return Event{}, fmt.Errorf("%w: field %s is not a string", ErrMalformed, name)
		}
		*dst = s
	}
	if ev.Source == "" {
		ev.Source = defaultSource
	}
	return ev, nil
}
