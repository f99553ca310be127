package compensate_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/idgen/idgen/functions/compensate"
	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/shared/audit"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/redisstore"
)

// srv is one standalone Redis for every test; each test gets its own key
// prefix and stream.
var srv *redisharness.Server

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	s, err := redisharness.StartStandalone(ctx, redisharness.Options{})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	srv = s
	code := m.Run()
	_ = srv.Close()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

var seq atomic.Int64

// env is what one test works on: a registry prefix, a stream and marks of
// its own on the shared server.
type env struct {
	t      testing.TB
	prefix string
	stream string
	rdb    *redis.Client
}

func newEnv(t testing.TB) *env {
	t.Helper()
	n := seq.Add(1)
	e := &env{t: t, prefix: fmt.Sprintf("t%d:", n), stream: fmt.Sprintf("t%d:failures", n)}
	e.rdb = e.client()
	return e
}

// client is a new stream client (one per simulated process).
func (e *env) client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), DisableIdentity: true, ContextTimeoutEnabled: true, PoolSize: 2 * compensate.DefaultCount})
	e.t.Cleanup(func() { _ = c.Close() })
	return c
}

// store opens a registry (one per simulated instance).
func (e *env) store() *redisstore.Store {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := redisstore.Open(ctx, redisstore.Config{Addrs: []string{srv.Addr()}, Prefix: e.prefix, Logger: zaptest.NewLogger(e.t)})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = s.Close() })
	return s
}

// auditLog opens an audit file of its own.
func (e *env) auditLog(name string) (*audit.Log, string) {
	e.t.Helper()
	path := filepath.Join(e.t.TempDir(), name+".audit.log")
	l, err := audit.Open(path, name)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = l.Close() })
	return l, path
}

func (e *env) marks(c redis.Cmdable) *compensate.RedisMarks {
	return &compensate.RedisMarks{Client: c, Prefix: e.prefix + "audited:"}
}

func (e *env) core(reg compensate.Transitioner, aud compensate.Recorder, c redis.Cmdable) *compensate.Core {
	return &compensate.Core{Registry: reg, Audit: aud, Marks: e.marks(c)}
}

var counter atomic.Uint64

const testMS = 1_764_000_000_000

// newIDs returns fresh IDs (not registered).
func newIDs(n int) []idcodec.ID {
	out := make([]idcodec.ID, n)
	for i := range out {
		out[i] = idcodec.MustCompose(idcodec.Fields{TimestampMS: testMS, Worker: 9, Shard: 5, Counter: counter.Add(1)})
	}
	return out
}

// register stores pending records of ids, as /generate does.
func register(t testing.TB, s *redisstore.Store, ids ...idcodec.ID) {
	t.Helper()
	var iss registry.Issue
	for _, id := range ids {
		iss.Records = append(iss.Records, registry.Record{
			ID: id, State: registry.Pending, IssuedAtMS: testMS, Subject: "svc-payments",
			History: []registry.Step{{State: registry.Pending, AtMS: testMS, Actor: "svc-payments"}},
		})
	}
	for len(iss.Records) > 0 {
		chunk := iss
		if len(chunk.Records) > 1000 {
			chunk.Records = chunk.Records[:1000]
		}
		if _, err := s.Register(context.Background(), chunk, 0, time.Now().UnixMilli()); err != nil {
			t.Fatal(err)
		}
		iss.Records = iss.Records[len(chunk.Records):]
	}
}

// pendingIDs registers n fresh IDs.
func pendingIDs(t testing.TB, s *redisstore.Store, n int) []idcodec.ID {
	ids := newIDs(n)
	register(t, s, ids...)
	return ids
}

// add appends entries to the stream, in one pipeline.
func (e *env) add(entries ...map[string]any) []string {
	e.t.Helper()
	cmds := make([]*redis.StringCmd, len(entries))
	_, err := e.rdb.Pipelined(context.Background(), func(p redis.Pipeliner) error {
		for i, v := range entries {
			cmds[i] = p.XAdd(context.Background(), &redis.XAddArgs{Stream: e.stream, Values: v})
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	ids := make([]string, len(cmds))
	for i, c := range cmds {
		ids[i] = c.Val()
	}
	return ids
}

func failure(id idcodec.ID, reason string) map[string]any {
	return map[string]any{"id": id.String(), "reason": reason}
}

// run starts w until the test ends (or stop is called) and returns stop,
// which waits for Run.
func run(t testing.TB, w *compensate.Worker) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Errorf("Run did not return 20 s after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// worker builds a worker of e's stream for one simulated process.
func (e *env) worker(consumer string, cfg compensate.Config, core compensate.Compensator, aud compensate.Recorder, c redis.UniversalClient) *compensate.Worker {
	e.t.Helper()
	cfg.Stream, cfg.Consumer = e.stream, consumer
	if cfg.Block == 0 {
		cfg.Block = 200 * time.Millisecond // shutdown waits for a read in flight
	}
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(e.t).Named(consumer)
	}
	w, err := compensate.New(c, core, aud, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return w
}

// drained waits until every entry of the stream is delivered and
// acknowledged.
func drained(t testing.TB, w *compensate.Worker, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st, err := w.Stats(context.Background())
		if err == nil && st.Lag == 0 && st.Pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream not drained after %v: %+v, %v", timeout, st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// auditLines reads JSON lines of audit files with the given action.
func auditLines(t testing.TB, action string, paths ...string) []audit.Event {
	t.Helper()
	var out []audit.Event
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var ev audit.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Fatalf("%s: not JSON: %q", p, sc.Text())
			}
			if ev.Action == action {
				out = append(out, ev)
			}
		}
		f.Close()
	}
	return out
}

// perResource counts audit entries by resource.
func perResource(evs []audit.Event) map[string]int {
	m := map[string]int{}
	for _, e := range evs {
		m[e.Resource]++
	}
	return m
}

// compensatedSteps counts the compensated steps in id's history (an
// effect is one step).
func compensatedSteps(t testing.TB, s *redisstore.Store, id idcodec.ID) int {
	t.Helper()
	rec, err := s.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	n := 0
	for _, st := range rec.History {
		if st.State == registry.Compensated {
			n++
		}
	}
	if rec.State != registry.Compensated {
		t.Fatalf("%s is %s, want compensated", id, rec.State)
	}
	return n
}

func nowMS() int64 { return time.Now().UnixMilli() }
