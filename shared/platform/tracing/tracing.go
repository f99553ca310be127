// Package tracing sets up OpenTelemetry traces for idgen's deployables
// (the HTTP API and the compensate worker): an OTLP/HTTP exporter when an
// endpoint is configured, and nothing at all otherwise.
//
// Invariants: with tracing off, Setup returns a nil *Provider whose Tracer
// is nil, and the callers then start no span, extract no trace context and
// allocate nothing for tracing (the HTTP hot path is unchanged). With
// tracing on, the W3C trace context (traceparent, tracestate) is the
// propagation format, on HTTP headers and in the failure events'
// envelope alike, and spans of a request sampled upstream are sampled here
// (parent-based sampling; OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG
// choose the sampler of new traces, as in every OpenTelemetry SDK).
package tracing

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.37.0"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
)

// Config of Setup; the zero value turns tracing on only when the standard
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
// variable is set.
type Config struct {
	// Endpoint is the OTLP/HTTP collector URL, e.g. http://collector:4318
	// (the exporter posts to its /v1/traces). Default: the OTEL_*
	// variables; tracing is off when neither names one.
	Endpoint string
	// ServiceName is service.name. Default "idgen".
	ServiceName string
	// Instance is service.instance.id (the instance's address or worker).
	Instance string
	// Version is service.version.
	Version string
	// ExportTimeout bounds one export. Default 10s.
	ExportTimeout time.Duration
}

// Validate reports an endpoint that is not an http or https URL.
func (c Config) Validate() error {
	if c.Endpoint == "" {
		return nil
	}
	u, err := url.Parse(c.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("tracing: endpoint %q is not an http(s) URL", c.Endpoint)
	}
	if c.ExportTimeout < 0 {
		return errors.New("tracing: negative export timeout")
	}
	return nil
}

// Provider is the tracer provider of a process with tracing on; a nil
// *Provider is tracing off.
type Provider struct {
	tp *sdktrace.TracerProvider
}

// Enabled reports whether cfg turns tracing on (an endpoint in cfg or in
// the environment).
func Enabled(cfg Config) bool {
	return cfg.Endpoint != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Setup returns the provider cfg asks for: nil when tracing is off, else a
// provider exporting in batches over OTLP/HTTP. Errors: Validate's, the
// exporter's.
func Setup(ctx context.Context, cfg Config) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !Enabled(cfg) {
		return nil, nil
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithTimeout(cmp.Or(cfg.ExportTimeout, 10*time.Second))}
	if cfg.Endpoint != "" {
		opts = append(opts, otlptracehttp.WithEndpointURL(strings.TrimSuffix(cfg.Endpoint, "/")+"/v1/traces"))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: exporter: %w", err)
	}
	res := resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName(cmp.Or(cfg.ServiceName, "idgen")),
		semconv.ServiceInstanceID(cfg.Instance),
		semconv.ServiceVersion(cfg.Version))
	return NewProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}

// NewProvider returns a provider over the SDK options opts (tests pass a
// span recorder: sdktrace.WithSpanProcessor).
func NewProvider(opts ...sdktrace.TracerProviderOption) *Provider {
	return &Provider{tp: sdktrace.NewTracerProvider(opts...)}
}

// Tracer returns the tracer of the named component, or nil when p is nil
// (tracing off).
func (p *Provider) Tracer(name string) trace.Tracer {
	if p == nil {
		return nil
	}
	return p.tp.Tracer(name)
}

// ForceFlush exports the spans buffered so far; nil p does nothing. A
// Lambda function calls it before each invocation returns: the sandbox may
// be frozen, or never thawed again, right after.
func (p *Provider) ForceFlush(ctx context.Context) error {
	if p == nil {
		return nil
	}
	return p.tp.ForceFlush(ctx)
}

// Shutdown exports what is buffered and stops the provider; nil p does
// nothing.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil {
		return nil
	}
	return p.tp.Shutdown(ctx)
}

// Propagator is the W3C trace context (traceparent, tracestate).
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// Fields returns the trace_id and span_id log fields of sc; none when sc
// is not valid.
func Fields(sc trace.SpanContext) []zap.Field {
	if !sc.IsValid() {
		return nil
	}
	return []zap.Field{zap.String("trace_id", sc.TraceID().String()), zap.String("span_id", sc.SpanID().String())}
}
