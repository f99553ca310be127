package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/idgen/idgen/functions/httpapi"
	"github.com/idgen/idgen/shared/generator"
	"github.com/idgen/idgen/shared/platform/logring"
	"github.com/idgen/idgen/shared/platform/sealer"
	"github.com/idgen/idgen/shared/platform/tracing"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/pebblestore"
)

// accessService is a development-mode Service over an embedded store
// whose log goes to an observer and to the /logs ring.
type accessService struct {
	svc      *httpapi.Service
	lines    *observer.ObservedLogs
	store    *pebblestore.Store
	fail     *failingRegistry
	auditLog string
}

// failingRegistry fails every Register with an error the service does not
// know (500) while fail is set.
type failingRegistry struct {
	*pebblestore.Store
	fail bool
}

func (r *failingRegistry) Register(ctx context.Context, iss registry.Issue, idemTTLMS, nowMS int64) (*registry.IdemEntry, error) {
	if r.fail {
		return nil, errors.New("registry exploded")
	}
	return r.Store.Register(ctx, iss, idemTTLMS, nowMS)
}

var _ httpapi.Registry = (*failingRegistry)(nil)

// newAccessService returns the service; tp traces its requests and its
// generator's claims (nil: tracing off).
func newAccessService(t *testing.T, cfg httpapi.Config, tp *tracing.Provider) *accessService {
	t.Helper()
	store := openPebble(t, pebblestore.Config{NoSync: true})
	gen := newGenerator(t, store, generator.Config{Tracer: tp.Tracer("generator")})
	ring := logring.New(100)
	obs, lines := observer.New(zapcore.InfoLevel)
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	log := zap.New(zapcore.NewTee(obs, ring.Core(enc, zapcore.InfoLevel)))
	keys, auditLog, auditPath := newSecrets(t, "test")
	reg := &failingRegistry{Store: store}
	cfg.Dev = true
	svc, err := httpapi.New(cfg, httpapi.Deps{
		IDs: gen, Registry: reg, Logger: log, Logs: ring, Sealer: sealer.NewVault(keys, store), Audit: auditLog,
		Tracer: tp.Tracer("httpapi"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &accessService{svc: svc, lines: lines, store: store, fail: reg, auditLog: auditPath}
}

// do serves one request in process and returns its answer; header holds
// name, value pairs.
func (a *accessService) do(t *testing.T, method, uri, body string, header ...string) *fasthttp.Response {
	t.Helper()
	return a.doFrom(t, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 4711}, method, uri, body, header...)
}

// doFrom is do with the request coming from remote.
func (a *accessService) doFrom(t *testing.T, remote net.Addr, method, uri, body string, header ...string) *fasthttp.Response {
	t.Helper()
	var req fasthttp.Request
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	req.Header.SetMethod(method)
	req.SetRequestURI(uri)
	if body != "" {
		req.Header.SetContentType("application/json")
		req.SetBodyString(body)
	}
	var c fasthttp.RequestCtx
	c.Init(&req, remote, nil)
	a.svc.Handle(&c)
	var resp fasthttp.Response
	c.Response.CopyTo(&resp)
	return &resp
}

// accessLines returns the access lines logged so far, as field maps, and
// forgets them.
func (a *accessService) accessLines() []map[string]any {
	var out []map[string]any
	for _, e := range a.lines.TakeAll() {
		if e.Message == "request" && e.Level == zapcore.InfoLevel {
			out = append(out, e.ContextMap())
		}
	}
	return out
}

func decodeJSON[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return v
}

// Every request has one access line at info that ties its request ID to
// the caller, the outcome and the IDs it got or named.
func TestAccessLineNamesTheIDs(t *testing.T) {
	a := newAccessService(t, httpapi.Config{}, nil)

	one := a.do(t, "POST", "/generate", "")
	if one.StatusCode() != 200 {
		t.Fatalf("generate: %d %s", one.StatusCode(), one.Body())
	}
	id := decodeJSON[struct{ ID string }](t, one.Body()).ID
	batch := a.do(t, "POST", "/generate", `{"count":5}`)
	ids := decodeJSON[struct{ IDs []string }](t, batch.Body()).IDs
	if len(ids) != 5 {
		t.Fatalf("batch: %d %s", batch.StatusCode(), batch.Body())
	}
	commit := a.do(t, "POST", "/commit", `{"id":"`+id+`"}`)
	get := a.do(t, "GET", "/ids/"+ids[2], "")
	bad := a.do(t, "GET", "/ids/not-an-id", "")
	if bad.StatusCode() != 400 {
		t.Fatalf("bad ID: %d", bad.StatusCode())
	}

	lines := a.accessLines()
	want := []struct {
		resp   *fasthttp.Response
		route  string
		fields map[string]any
	}{
		{one, "/generate", map[string]any{"id": id}},
		{batch, "/generate", map[string]any{"first_id": ids[0], "last_id": ids[4], "count": int64(5)}},
		{commit, "/commit", map[string]any{"id": id}},
		{get, "/ids/{id}", map[string]any{"id": ids[2]}},
		{bad, "/ids/{id}", nil},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d access lines for %d requests: %v", len(lines), len(want), lines)
	}
	for i, w := range want {
		l := lines[i]
		rid := string(w.resp.Header.Peek("X-Request-ID"))
		if l["request_id"] != rid || l["route"] != w.route || l["status"] != int64(w.resp.StatusCode()) ||
			l["remote"] != "192.0.2.7:4711" || l["subject"] != "dev" {
			t.Errorf("line %d = %v, want request_id %s, route %s, status %d, remote, subject dev", i, l, rid, w.route, w.resp.StatusCode())
		}
		if _, ok := l["latency"]; !ok {
			t.Errorf("line %d has no latency: %v", i, l)
		}
		for k, v := range w.fields {
			if l[k] != v {
				t.Errorf("line %d: %s = %v, want %v", i, k, l[k], v)
			}
		}
		for _, k := range []string{"id", "first_id", "last_id", "count", "trace_id", "span_id"} {
			if _, ok := w.fields[k]; !ok && l[k] != nil {
				t.Errorf("line %d has %s = %v, want none", i, k, l[k])
			}
		}
	}

	// /logs finds a request's access line by its request ID.
	rid := string(batch.Header.Peek("X-Request-ID"))
	logs := a.do(t, "GET", "/logs?request_id="+rid, "")
	got := decodeJSON[struct{ Entries []json.RawMessage }](t, logs.Body()).Entries
	if len(got) != 1 || !strings.Contains(string(got[0]), `"first_id":"`+ids[0]+`"`) {
		t.Fatalf("/logs?request_id=%s = %d %s, want the batch's access line", rid, logs.StatusCode(), logs.Body())
	}
}

// The access line is one JSON object whose fields come in a fixed order:
// the request, its outcome, the caller, the trace, the IDs.
func TestAccessLineJSON(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := tracing.NewProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	const head = "level ts msg request_id method route status latency remote subject"
	for _, tc := range []struct {
		name string
		tp   *tracing.Provider
		body string
		want string
	}{
		{"one ID", nil, "", head + " id"},
		{"batch", nil, `{"count":3}`, head + " first_id last_id count"},
		{"traced", tp, "", head + " trace_id span_id id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAccessService(t, httpapi.Config{}, tc.tp)
			r := a.do(t, "POST", "/generate", tc.body, "X-Request-ID", "json-line-1")
			if r.StatusCode() != 200 {
				t.Fatalf("generate: %d %s", r.StatusCode(), r.Body())
			}
			logs := a.do(t, "GET", "/logs?request_id=json-line-1", "")
			got := decodeJSON[struct{ Entries []json.RawMessage }](t, logs.Body()).Entries
			if len(got) != 1 {
				t.Fatalf("/logs: %s, want the access line", logs.Body())
			}
			if keys := strings.Join(objectKeys(t, got[0]), " "); keys != tc.want {
				t.Errorf("access line %s\nhas the keys %s\nwant          %s", got[0], keys, tc.want)
			}
			line := decodeJSON[map[string]any](t, got[0])
			if line["method"] != "POST" || line["route"] != "/generate" || line["status"] != 200.0 || line["remote"] != "192.0.2.7:4711" {
				t.Errorf("access line %s", got[0])
			}
		})
	}
}

// objectKeys returns the keys of the JSON object b in order.
func objectKeys(t *testing.T, b []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("%s is not an object: %v", b, err)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		keys = append(keys, tok.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
	}
	return keys
}

// The remote field is the address as its String method writes it, for
// every form of address the server or the Lambda adapter gives.
func TestAccessLineRemote(t *testing.T) {
	a := newAccessService(t, httpapi.Config{}, nil)
	for _, addr := range []net.Addr{
		&net.TCPAddr{IP: net.IPv4(192, 0, 2, 7).To4(), Port: 4711},
		&net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 65535},
		&net.TCPAddr{IP: net.ParseIP("::ffff:198.51.100.1"), Port: 1},
		&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 443},
		&net.TCPAddr{IP: net.ParseIP("2001:db8:0:0:1:0:0:1"), Port: 443},
		&net.TCPAddr{IP: net.ParseIP("::"), Port: 0},
		&net.TCPAddr{IP: net.ParseIP("::1"), Port: 8080},
		&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 80, Zone: "eth0"},
		&net.TCPAddr{Port: 80},                     // no IP
		&net.TCPAddr{IP: net.IPv4(10, 0, 0, 1)},    // the Lambda adapter's: no port
		&net.TCPAddr{IP: net.IP{1, 2, 3}, Port: 9}, // malformed
		&net.UnixAddr{Name: "/run/idgen.sock", Net: "unix"},
	} {
		r := a.doFrom(t, addr, "GET", "/health/live", "")
		lines := a.accessLines()
		if r.StatusCode() != 200 || len(lines) != 1 {
			t.Fatalf("from %v: %d, %d access lines", addr, r.StatusCode(), len(lines))
		}
		if lines[0]["remote"] != addr.String() {
			t.Errorf("remote %q, want %q", lines[0]["remote"], addr.String())
		}
	}
}

// AccessLogEvery N logs one answer below 500 in N; NoAccessLog none; an
// answer of 500 or above is always logged.
func TestAccessLogSampling(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  httpapi.Config
		want int // lines of 20 answers of 200
	}{
		{"default", httpapi.Config{}, 20},
		{"every 4", httpapi.Config{AccessLogEvery: 4}, 5},
		{"every 7", httpapi.Config{AccessLogEvery: 7}, 3},
		{"off", httpapi.Config{NoAccessLog: true}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAccessService(t, tc.cfg, nil)
			for range 20 {
				if r := a.do(t, "GET", "/health/live", ""); r.StatusCode() != 200 {
					t.Fatalf("health: %d %s", r.StatusCode(), r.Body())
				}
			}
			if got := len(a.accessLines()); got != tc.want {
				t.Errorf("%d access lines for 20 answers of 200, want %d", got, tc.want)
			}
			a.fail.fail = true
			for range 3 {
				if r := a.do(t, "POST", "/generate", ""); r.StatusCode() != 500 {
					t.Fatalf("generate with a failing registry: %d %s", r.StatusCode(), r.Body())
				}
			}
			lines := a.accessLines()
			if len(lines) != 3 {
				t.Fatalf("%d access lines for 3 answers of 500, want 3: %v", len(lines), lines)
			}
			for _, l := range lines {
				if l["status"] != int64(500) || l["route"] != "/generate" {
					t.Errorf("line %v, want status 500 on /generate", l)
				}
			}
		})
	}
}

func TestAccessLogEveryNegativeIsRefused(t *testing.T) {
	if err := (httpapi.Config{AccessLogEvery: -1}).Validate(); err == nil {
		t.Fatal("Validate accepted AccessLogEvery -1")
	}
}
