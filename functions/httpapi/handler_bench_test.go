package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/idgen/idgen/functions/httpapi"
	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/shared/generator"
	"github.com/idgen/idgen/shared/generator/generatortest"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/logring"
	"github.com/idgen/idgen/shared/platform/sealer"
	"github.com/idgen/idgen/shared/platform/sealer/sealertest"
	"github.com/idgen/idgen/shared/platform/tracing"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/pebblestore"
)

// BenchmarkGenerateHandler is POST /generate (no body: one ID) through
// Service.Handle, without a server, on one reused RequestCtx per goroutine,
// 32 goroutines per CPU:
//
//	go test -run XXX -bench GenerateHandler -benchmem ./functions/httpapi/
//
// "memregistry" registers into a counter, over a generator on an
// in-memory range source: the handler and the generator alone, with the
// default access line of every request. "memregistry-nolog" is the same
// without the access line (--access-log-every 0), whose single-ID path
// allocates nothing: the baseline of the line's cost. "memregistry-traced"
// adds tracing (an SDK provider that samples every request and exports in
// batches to an exporter that drops them): the cost of a server span and
// its registry.register child. "memregistry-pipe" writes the log stream
// to a pipe that a goroutine drains, as a container's stderr is read: one
// write(2) per line; the other variants write it to io.Discard.
// "memregistry-batch1000" asks for 1,000 IDs a request ({"count":1000},
// no access line): the batch path's cost, reported also per ID
// (cpu-ns/id, allocs/op are the request's).
// "pebblestore" is the whole path of the embedded default: the generator
// claims its ranges from, and registers every ID into, a Pebble store
// with its WAL synced (the group commit under 32 goroutines per CPU).
// The logger is the one of `idgen serve` at its default level (info),
// writing each line to the log stream and the /logs ring.
// Besides ns/op, each variant reports cpu-ns/op: the process's CPU time
// per request, on all CPUs, GC included.
func BenchmarkGenerateHandler(b *testing.B) {
	for _, v := range []struct {
		name   string
		cfg    httpapi.Config
		traced bool
		stream func(*testing.B) zapcore.WriteSyncer
	}{
		{"memregistry-nolog", httpapi.Config{NoAccessLog: true}, false, discard},
		{"memregistry", httpapi.Config{}, false, discard},
		{"memregistry-pipe", httpapi.Config{}, false, pipeStream},
		{"memregistry-traced", httpapi.Config{}, true, discard},
	} {
		b.Run(v.name, func(b *testing.B) {
			var tp *tracing.Provider
			if v.traced {
				tp = tracing.NewProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
				b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			}
			gen := newGenerator(b, &generatortest.Source{}, generator.Config{InitialStep: 1 << 22, MinStep: 1 << 22, MaxStep: 1 << 22, Tracer: tp.Tracer("generator")})
			reg := newMemRegistry()
			benchGenerate(b, gen, reg, v.cfg, tp, v.stream(b), 1)
			if got := reg.records.Load(); got != int64(b.N) {
				b.Errorf("%d records registered for %d requests", got, b.N)
			}
		})
	}
	b.Run("memregistry-batch1000", func(b *testing.B) {
		gen := newGenerator(b, &generatortest.Source{}, generator.Config{InitialStep: 1 << 22, MinStep: 1 << 22, MaxStep: 1 << 22})
		reg := newMemRegistry()
		benchGenerate(b, gen, reg, httpapi.Config{NoAccessLog: true}, nil, discard(b), 1000)
		if got := reg.records.Load(); got != 1000*int64(b.N) {
			b.Errorf("%d records registered for %d requests of 1,000", got, b.N)
		}
	})
	b.Run("pebblestore", func(b *testing.B) {
		store := openPebble(b, pebblestore.Config{})
		gen := newGenerator(b, store, generator.Config{})
		benchGenerate(b, gen, store, httpapi.Config{}, nil, discard(b), 1)
	})
}

// benchGenerate serves POST /generate of n IDs a request (a body
// {"count":n} when n > 1) from svc's parallel goroutines.
func benchGenerate(b *testing.B, gen *generator.Generator, reg benchRegistry, cfg httpapi.Config, tp *tracing.Provider, stream zapcore.WriteSyncer, n int) {
	var body []byte
	if n > 1 {
		body = fmt.Appendf(nil, `{"count":%d}`, n)
	}
	svc := newBenchService(b, gen, reg, cfg, tp, stream)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := gen.Warm(ctx); err != nil {
		b.Fatal(err)
	}
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	b.SetParallelism(32)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := proc.SelfCPU(b)
	defer func() {
		cpu := float64(proc.SelfCPU(b) - cpu0)
		b.ReportMetric(cpu/float64(b.N), "cpu-ns/op")
		if n > 1 {
			b.ReportMetric(cpu/float64(b.N)/float64(n), "cpu-ns/id")
		}
	}()
	b.RunParallel(func(pb *testing.PB) {
		var req fasthttp.Request
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetRequestURI("/generate")
		req.Header.SetHost("idgen.test")
		if body != nil {
			req.Header.SetContentType("application/json")
			req.SetBody(body)
		}
		var c fasthttp.RequestCtx
		c.Init(&req, remote, nil)
		for pb.Next() {
			c.Response.Reset()
			svc.Handle(&c)
			if c.Response.StatusCode() != fasthttp.StatusOK {
				b.Errorf("POST /generate: %d %s", c.Response.StatusCode(), c.Response.Body())
				return
			}
		}
	})
}

// discard is a log stream that costs nothing.
func discard(*testing.B) zapcore.WriteSyncer { return zapcore.AddSync(io.Discard) }

// pipeStream is a log stream as a container has it: stderr is a pipe that
// another process reads (here a goroutine), one write(2) per line.
func pipeStream(b *testing.B) zapcore.WriteSyncer {
	r, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(io.Discard, r)
	}()
	b.Cleanup(func() {
		_ = w.Close()
		<-done
		_ = r.Close()
	})
	return zapcore.Lock(w)
}

// newBenchService wires the service as cmd/idgen/serve.go does in dev
// mode (cfg, with Dev set): a JSON logger at info, each line encoded once
// for the log stream and the /logs ring; tp traces it (nil: tracing off).
func newBenchService(b *testing.B, gen *generator.Generator, reg benchRegistry, cfg httpapi.Config, tp *tracing.Provider, stream zapcore.WriteSyncer) *httpapi.Service {
	ring := logring.New(2000)
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey, ec.EncodeTime = "time", zapcore.RFC3339NanoTimeEncoder
	enc := zapcore.NewJSONEncoder(ec)
	log := zap.New(ring.WriterCore(enc, stream, zapcore.InfoLevel), zap.AddCaller())

	keys, auditLog, _ := newSecrets(b, "bench")
	cfg.Dev = true
	svc, err := httpapi.New(cfg, httpapi.Deps{
		IDs: gen, Registry: reg, Logger: log, Logs: ring, Metrics: httpapi.NewMetrics(gen),
		Sealer: sealer.NewVault(keys, reg), Audit: auditLog, Tracer: tp.Tracer("httpapi"),
	})
	if err != nil {
		b.Fatal(err)
	}
	return svc
}

// benchRegistry is the registry and the data key store of the service.
type benchRegistry interface {
	httpapi.Registry
	sealer.KeyStore
}

// memRegistry counts the records registered and keeps nothing but the
// data keys (sealertest.Keys): a stand-in for the store that allocates
// nothing of its own and costs next to nothing, so that the benchmark
// measures the handler.
type memRegistry struct {
	records atomic.Int64
	sealertest.Keys
}

func newMemRegistry() *memRegistry { return &memRegistry{} }

func (m *memRegistry) Register(_ context.Context, iss registry.Issue, _, _ int64) (*registry.IdemEntry, error) {
	m.records.Add(int64(len(iss.Records)))
	return nil, nil
}

func (m *memRegistry) Get(context.Context, idcodec.ID) (registry.Record, error) {
	return registry.Record{}, registry.ErrNotFound
}

func (m *memRegistry) Transition(context.Context, idcodec.ID, registry.Change) (registry.Record, registry.Outcome, error) {
	return registry.Record{}, 0, registry.ErrNotFound
}

var (
	_ benchRegistry = (*memRegistry)(nil)
	_ benchRegistry = (*pebblestore.Store)(nil)
)
