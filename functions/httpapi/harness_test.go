package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"mime"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/idgen/idgen/api/apitest"
	"github.com/idgen/idgen/functions/httpapi"
	"github.com/idgen/idgen/shared/generator"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/platform/logring"
	"github.com/idgen/idgen/shared/platform/sealer"
	"github.com/idgen/idgen/shared/registry/boltstore"
	"github.com/idgen/idgen/shared/registry/pebblestore"
)

// maxBody mirrors the fasthttp.Server limit of cmd/idgen/serve.go newServer.
const maxBody = 64 << 10

// stack is the service wired the way cmd/idgen/serve.go wires it: a
// generator over a real, fsynced bbolt store, worker slot 0, shard 0, the
// logger teed into the /logs ring, the same health checks.
type stack struct {
	store   *boltstore.Store
	gen     *generator.Generator
	svc     *httpapi.Service
	metrics *httpapi.Metrics
	ring    *logring.Ring
	// auditPath is the audit log file.
	auditPath string
}

// newStack builds the stack and closes it (generator, then store) when tb
// ends. base receives the log lines at info and above, the ring all levels.
func newStack(tb testing.TB, base zapcore.Core) *stack {
	return newStackWith(tb, base, httpapi.Config{Dev: true}, nil)
}

// newStackWith is newStack with the service's config and authenticator.
func newStackWith(tb testing.TB, base zapcore.Core, cfg httpapi.Config, a httpapi.Authenticator) *stack {
	return newStackDeps(tb, base, cfg, a, nil)
}

// newStackDeps is newStackWith; deps, when set, adjusts the service's
// collaborators before New.
func newStackDeps(tb testing.TB, base zapcore.Core, cfg httpapi.Config, a httpapi.Authenticator, deps func(*httpapi.Deps)) *stack {
	ring := logring.New(2000)
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey, ec.EncodeTime = "time", zapcore.RFC3339NanoTimeEncoder
	log := zap.New(zapcore.NewTee(base, ring.Core(zapcore.NewJSONEncoder(ec), zapcore.DebugLevel)))

	var metrics *httpapi.Metrics
	store, err := boltstore.Open(boltstore.Config{
		Dir: tb.TempDir(),
		Observe: func(n int, d time.Duration) {
			if metrics != nil {
				metrics.ObserveFlush(n, d.Seconds())
			}
		},
	})
	if err != nil {
		tb.Fatalf("boltstore.Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := store.Close(); err != nil {
			tb.Errorf("store.Close: %v", err)
		}
	})
	gen := newGenerator(tb, store, generator.Config{})
	metrics = httpapi.NewMetrics(gen)
	keys, auditLog, auditPath := newSecrets(tb, "test")
	d := httpapi.Deps{
		Audit: auditLog,
		IDs:   gen, Registry: store, Logger: log, Logs: ring, Metrics: metrics, Sealer: sealer.NewVault(keys, store), Auth: a,
		Membership: httpapi.StaticMembership{httpapi.Member{Worker: 0, Shard: 0, Address: "idgen.test", Version: "test", StartedAt: time.Now().UTC()}},
		Checks: []httpapi.Check{
			{Name: "store", Critical: true, Run: store.Ping},
			httpapi.RangeCheck(gen),
		},
	}
	if deps != nil {
		deps(&d)
	}
	svc, err := httpapi.New(cfg, d)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := gen.Warm(ctx); err != nil {
		tb.Fatalf("first range claim: %v", err)
	}
	return &stack{store: store, gen: gen, svc: svc, metrics: metrics, ring: ring, auditPath: auditPath}
}

// newGenerator is worker 0's generator over src, closed when tb ends.
func newGenerator(tb testing.TB, src generator.RangeSource, cfg generator.Config) *generator.Generator {
	tb.Helper()
	gen, err := generator.New(src, generator.FixedWorker(0), cfg)
	if err != nil {
		tb.Fatalf("generator.New: %v", err)
	}
	tb.Cleanup(gen.Close)
	return gen
}

// newSecrets is the key ring of a new metadata key file and a new audit log
// of instance, at auditPath, both in temporary directories; the log is
// closed when tb ends.
func newSecrets(tb testing.TB, instance string) (keys *sealer.Ring, auditLog *audit.Log, auditPath string) {
	tb.Helper()
	keys, err := sealer.LoadKeyFile(filepath.Join(tb.TempDir(), "metadata.key"), true)
	if err != nil {
		tb.Fatal(err)
	}
	auditPath = filepath.Join(tb.TempDir(), "audit.log")
	auditLog, err = audit.Open(auditPath, instance)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = auditLog.Close() })
	return keys, auditLog, auditPath
}

// openPebble opens a Pebble store in a temporary directory (cfg.Dir),
// closed when tb ends.
func openPebble(tb testing.TB, cfg pebblestore.Config) *pebblestore.Store {
	tb.Helper()
	cfg.Dir = tb.TempDir()
	s, err := pebblestore.Open(cfg)
	if err != nil {
		tb.Fatalf("pebblestore.Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("pebblestore.Close: %v", err)
		}
	})
	return s
}

// newTestCore logs info and above through t.Log (the ring keeps debug too).
func newTestCore(t testing.TB) zapcore.Core {
	return zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Core()
}

// harness serves a stack over an in-memory listener with a real fasthttp
// server and client.
type harness struct {
	*stack
	ln     *fasthttputil.InmemoryListener
	client *fasthttp.HostClient
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return serveStack(t, newStack(t, newTestCore(t)))
}

// serveStack serves st over an in-memory listener.
func serveStack(t *testing.T, st *stack) *harness {
	t.Helper()

	ln := fasthttputil.NewInmemoryListener()
	srv := newServer(st.svc, tLogger{t})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.ShutdownWithContext(ctx); err != nil {
			t.Errorf("server shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		_ = ln.Close() // already closed by the shutdown
	})

	client := &fasthttp.HostClient{
		Addr: "idgen.test",
		Dial: func(string) (net.Conn, error) { return ln.Dial() },
		// Short, so the client's idle-connection cleaner goroutine ends
		// soon after the test (goleak).
		MaxIdleConnDuration: 100 * time.Millisecond,
		MaxConns:            512,
		ReadTimeout:         15 * time.Second,
		WriteTimeout:        15 * time.Second,
	}
	t.Cleanup(client.CloseIdleConnections)
	return &harness{stack: st, ln: ln, client: client}
}

// newServer replicates the fasthttp settings of cmd/idgen/serve.go newServer
// (body and header limits, JSON errors for what fasthttp refuses before the
// handler runs).
func newServer(svc *httpapi.Service, log fasthttp.Logger) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:               svc.Handle,
		Logger:                log,
		Name:                  "idgen",
		NoDefaultServerHeader: true,
		MaxRequestBodySize:    maxBody,
		ReadBufferSize:        8 << 10,
		ReadTimeout:           10 * time.Second,
		WriteTimeout:          10 * time.Second,
		IdleTimeout:           90 * time.Second,
		// Not in serve.go: the worker pool's cleaner goroutine sleeps this
		// long between rounds and outlives Shutdown by up to one round; the
		// 10 s default would trip goleak.
		MaxIdleWorkerDuration: 100 * time.Millisecond,
		ErrorHandler:          svc.HandleServerError,
	}
}

// tLogger sends fasthttp's own log lines (connection errors) to t.Log.
type tLogger struct{ t testing.TB }

func (l tLogger) Printf(format string, args ...any) { l.t.Logf("fasthttp: "+format, args...) }

// call is one HTTP request. Bodies default to Content-Type
// application/json; ctype "-" sends no Content-Type at all.
type call struct {
	method string
	path   string
	body   string
	ctype  string
	header map[string]string
}

// reply is a response, copied out of fasthttp's pooled objects.
type reply struct {
	status int
	body   []byte
	header fasthttp.ResponseHeader
}

func (r *reply) h(name string) string { return string(r.header.Peek(name)) }

func (r *reply) String() string { return strconv.Itoa(r.status) + " " + string(r.body) }

// prepare fills req from c.
func (c call) prepare(req *fasthttp.Request) {
	req.Header.SetMethod(c.method)
	req.SetRequestURI("http://idgen.test" + c.path)
	if c.body != "" {
		req.SetBodyString(c.body)
	}
	switch c.ctype {
	case "":
		if c.body != "" {
			req.Header.SetContentType("application/json")
		}
	case "-":
		req.Header.SetNoDefaultContentType(true)
	default:
		req.Header.SetContentType(c.ctype)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
}

// do sends c; a transport error fails t and answers status 0.
func (h *harness) do(t testing.TB, c call) *reply {
	t.Helper()
	req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(res)
	c.prepare(req)
	if err := h.client.DoTimeout(req, res, 20*time.Second); err != nil {
		// Errorf, not Fatalf: do runs on goroutines of concurrency tests.
		t.Errorf("%s %s: %v", c.method, c.path, err)
		return &reply{body: []byte("transport error: " + err.Error())}
	}
	return answered(t, c.method, c.path, res)
}

// answered is the reply res, which must keep the contract for method
// target.
func answered(t testing.TB, method, target string, res *fasthttp.Response) *reply {
	t.Helper()
	r := &reply{status: res.StatusCode(), body: append([]byte(nil), res.Body()...)}
	res.Header.CopyTo(&r.header)
	checkContract(t, method, target, r.status, &r.header, r.body)
	return r
}

// raw writes the request in one piece on a fresh connection and reads the
// answer. Unlike the client it does not fail when the server answers and
// closes before it has read the whole body (413), which the in-memory pipe
// would otherwise turn into a write error.
func (h *harness) raw(t testing.TB, c call) *reply {
	t.Helper()
	var req fasthttp.Request
	c.prepare(&req)
	var buf bytes.Buffer
	if _, err := req.WriteTo(&buf); err != nil {
		t.Fatalf("encode request: %v", err)
	}
	return h.exchange(t, c.method, c.path, buf.Bytes())
}

// wire writes text, a whole HTTP/1.1 request, byte for byte on a fresh
// connection and reads the answer: what no client library would send
// (repeated headers, empty path segments, raw bytes outside ASCII).
func (h *harness) wire(t testing.TB, text string) *reply {
	t.Helper()
	line, _, _ := strings.Cut(text, "\r\n")
	method, target, _ := strings.Cut(line, " ")
	target, _, _ = strings.Cut(target, " ")
	return h.exchange(t, method, target, []byte(text))
}

// exchange writes req, a whole request with the request line method target,
// on a fresh connection and reads the answer.
func (h *harness) exchange(t testing.TB, method, target string, req []byte) *reply {
	t.Helper()
	conn, err := h.ln.Dial()
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	if _, err := conn.Write(req); err != nil {
		t.Fatalf("write request: %v", err)
	}
	var res fasthttp.Response
	if err := res.Read(bufio.NewReader(conn)); err != nil {
		t.Fatalf("%s %q: read answer: %v", method, target, err)
	}
	return answered(t, method, target, &res)
}

// checkContract fails t when the answer to method target (the request
// line's) is not one api/openapi.json describes for it: every answer the
// tests of this package receive goes through it.
func checkContract(t testing.TB, method, target string, status int, header *fasthttp.ResponseHeader, body []byte) {
	t.Helper()
	h := http.Header{}
	for k, v := range header.All() {
		h.Add(string(k), string(v))
	}
	if err := apitest.Check(apitest.Exchange{Method: method, Target: target, Status: status, Header: h, Body: body}); err != nil {
		t.Errorf("%v", err)
	}
}

// checkCtx is checkContract for an answer of Service.Handle without a
// server.
func checkCtx(t testing.TB, c *fasthttp.RequestCtx) {
	t.Helper()
	checkContract(t, string(c.Method()), string(c.Request.Header.RequestURI()), c.Response.StatusCode(), &c.Response.Header, c.Response.Body())
}

func (h *harness) get(t testing.TB, path string) *reply {
	t.Helper()
	return h.do(t, call{method: "GET", path: path})
}

func (h *harness) post(t testing.TB, path, body string) *reply {
	t.Helper()
	return h.do(t, call{method: "POST", path: path, body: body})
}

// generateOne issues one ID and returns it.
func (h *harness) generateOne(t testing.TB, body string) idcodec.ID {
	t.Helper()
	r := h.post(t, "/generate", body)
	if r.status != 200 {
		t.Fatalf("POST /generate %s: %s", body, r)
	}
	var v struct{ ID string }
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("POST /generate body %s: %v", r.body, err)
	}
	id, err := idcodec.Parse(v.ID)
	if err != nil {
		t.Fatalf("POST /generate returned %q: %v", v.ID, err)
	}
	return id
}

// idView is GET /ids/{id}.
type idView struct {
	ID        string          `json:"id"`
	Timestamp string          `json:"timestamp"`
	Worker    *int            `json:"worker"`
	Shard     *int            `json:"shard"`
	Counter   *uint64         `json:"counter"`
	State     string          `json:"state"`
	IssuedAt  *string         `json:"issued_at"`
	Deadline  string          `json:"deadline"`
	Subject   string          `json:"subject"`
	Tombstone bool            `json:"tombstone"`
	Metadata  json.RawMessage `json:"metadata"`
	History   []struct {
		State  string `json:"state"`
		At     string `json:"at"`
		Reason string `json:"reason"`
		Actor  string `json:"actor"`
	} `json:"history"`
}

func (h *harness) view(t testing.TB, id string) idView {
	t.Helper()
	r := h.get(t, "/ids/"+id)
	if r.status != 200 {
		t.Fatalf("GET /ids/%s: %s", id, r)
	}
	var v idView
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("GET /ids/%s body %s: %v", id, r.body, err)
	}
	return v
}

// issuedTotal reads idgen_ids_issued_total through /metrics.
func (h *harness) issuedTotal(t testing.TB) float64 {
	t.Helper()
	return h.metric(t, "idgen_ids_issued_total")
}

// metric returns the value of the sample line that starts with series (a
// metric name, with its labels when it has some).
func (h *harness) metric(t testing.TB, series string) float64 {
	t.Helper()
	// Read the registry the /metrics endpoint serves, without the HTTP
	// round trip (which needs a token outside dev mode).
	var buf bytes.Buffer
	mfs, err := h.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	r := &reply{status: 200, body: buf.Bytes()}
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return v
		}
	}
	t.Fatalf("/metrics has no series %s", series)
	return 0
}

// assertError checks the uniform error answer: the status, Content-Type
// application/json, a body of exactly {"error": {"code", "message"}} with
// the code and a non-empty message, and an X-Request-ID header.
func assertError(t testing.TB, r *reply, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Errorf("status %d, want %d (body %s)", r.status, status, r.body)
	}
	if mt, _, err := mime.ParseMediaType(r.h("Content-Type")); err != nil || mt != "application/json" {
		t.Errorf("Content-Type %q, want application/json", r.h("Content-Type"))
	}
	checkErrorBody(t, r.body, code)
	if r.h("X-Request-ID") == "" {
		t.Errorf("no X-Request-ID header on the error answer")
	}
}

func checkErrorBody(t testing.TB, body []byte, code string) {
	t.Helper()
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		t.Errorf("error body %q is not a JSON object: %v", body, err)
		return
	}
	var inner map[string]json.RawMessage
	if len(top) != 1 || json.Unmarshal(top["error"], &inner) != nil || len(inner) != 2 {
		t.Errorf(`error body %s, want exactly {"error": {"code", "message"}}`, body)
		return
	}
	var gotCode, msg string
	if json.Unmarshal(inner["code"], &gotCode) != nil || json.Unmarshal(inner["message"], &msg) != nil {
		t.Errorf("error body %s: code and message must be strings", body)
		return
	}
	if code != "" && gotCode != code {
		t.Errorf("error code %q, want %q (body %s)", gotCode, code, body)
	}
	if strings.TrimSpace(msg) == "" {
		t.Errorf("error body %s has an empty message", body)
	}
}

// neverIssued is a well-formed ID of ours that no test generator issues
// (worker 4095, shard 63).
func neverIssued(counter uint64) idcodec.ID {
	id, err := idcodec.Compose(idcodec.Fields{TimestampMS: uint64(time.Now().UnixMilli()), Worker: idcodec.MaxWorker, Shard: idcodec.MaxShard, Counter: counter})
	if err != nil {
		panic(err)
	}
	return id
}

// uuidV4 is a valid RFC 4122 version 4 UUID: well-formed, not ours.
const uuidV4 = "0f8fad5b-d9cb-469f-a165-70867728950e"

// msRFC3339 matches the RFC 3339 UTC timestamps with milliseconds of the API.
const msRFC3339 = `^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$`
