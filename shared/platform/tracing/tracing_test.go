package tracing_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/idgen/idgen/shared/platform/tracing"
)

// otlpReceiver is an OTLP/HTTP trace endpoint: it decodes every export it
// is sent.
type otlpReceiver struct {
	mu   sync.Mutex
	reqs []*coltrace.ExportTraceServiceRequest
}

func (r *otlpReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, err := io.ReadAll(req.Body)
	if err != nil || req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	var m coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, &m)
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	_, _ = w.Write(out)
}

// With an endpoint (with or without a trailing slash) the provider exports
// its spans over OTLP/HTTP to its /v1/traces, with the service's name,
// instance and version; Shutdown flushes them.
func TestSetupExportsOverOTLPHTTP(t *testing.T) {
	for _, slash := range []string{"", "/"} {
		t.Run("endpoint"+slash, func(t *testing.T) { exportsTo(t, slash) })
	}
}

func exportsTo(t *testing.T, slash string) {
	recv := &otlpReceiver{}
	srv := httptest.NewServer(recv)
	defer srv.Close()
	tp, err := tracing.Setup(t.Context(), tracing.Config{Endpoint: srv.URL + slash, Instance: "10.0.0.7:8080", Version: "test"})
	if err != nil || tp == nil {
		t.Fatalf("Setup: %v, %v", tp, err)
	}
	_, span := tp.Tracer("test").Start(t.Context(), "POST /generate")
	span.End()
	if err := tp.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	recv.mu.Lock()
	defer recv.mu.Unlock()
	var names []string
	attrs := map[string]string{}
	for _, r := range recv.reqs {
		for _, rs := range r.ResourceSpans {
			for _, a := range rs.Resource.Attributes {
				attrs[a.Key] = a.Value.GetStringValue()
			}
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					names = append(names, s.Name)
				}
			}
		}
	}
	if len(names) != 1 || names[0] != "POST /generate" {
		t.Errorf("exported spans %v, want [POST /generate]", names)
	}
	if attrs["service.name"] != "idgen" || attrs["service.instance.id"] != "10.0.0.7:8080" || attrs["service.version"] != "test" {
		t.Errorf("resource %v", attrs)
	}
}

// Without an endpoint in the config or the environment tracing is off:
// no provider and no tracer.
func TestSetupOff(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	tp, err := tracing.Setup(t.Context(), tracing.Config{})
	if err != nil || tp != nil || tp.Tracer("x") != nil || tp.Shutdown(t.Context()) != nil {
		t.Fatalf("Setup without endpoint: %v, %v", tp, err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []tracing.Config{{Endpoint: "collector:4318"}, {Endpoint: "ftp://x"}, {Endpoint: "http://"}, {Endpoint: "http://x", ExportTimeout: -1}} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted it", c)
		}
	}
	if err := (tracing.Config{Endpoint: "https://collector:4318"}).Validate(); err != nil {
		t.Error(err)
	}
}
