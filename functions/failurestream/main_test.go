package failurestream_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"

	"github.com/idgen/idgen/functions/failurestream"
	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry/redisstore"
	"github.com/idgen/idgen/shared/saga/sagatest"
)

// sharedRedis is one standalone Redis for every test, started by the first
// that needs it; each test gets its own key prefix and stream.
var sharedRedis = &redisharness.Shared{}

func TestMain(m *testing.M) { os.Exit(sagatest.RunWithRedis(m, sharedRedis)) }

// env is what one test works on (sagatest.Env), with the stream
// helpers of the worker's tests.
type env struct{ *sagatest.Env }

func newEnv(t testing.TB) *env { return &env{sagatest.NewEnv(t, sharedRedis)} }

// add appends entries to the stream, in one pipeline.
func (e *env) add(entries ...map[string]any) []string {
	e.T.Helper()
	cmds := make([]*redis.StringCmd, len(entries))
	_, err := e.RDB.Pipelined(context.Background(), func(p redis.Pipeliner) error {
		for i, v := range entries {
			cmds[i] = p.XAdd(context.Background(), &redis.XAddArgs{Stream: e.Stream, Values: v})
		}
		return nil
	})
	if err != nil {
		e.T.Fatal(err)
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

// failuresOf is one failure entry per ID, all with reason.
func failuresOf(reason string, ids ...idcodec.ID) []map[string]any {
	entries := make([]map[string]any, len(ids))
	for i, id := range ids {
		entries[i] = failure(id, reason)
	}
	return entries
}

// run starts w until the test ends (or stop is called) and returns stop,
// which waits for Run.
func run(t testing.TB, w *failurestream.Worker) (stop func()) {
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
func (e *env) worker(consumer string, cfg failurestream.Config, core failurestream.Compensator, aud failurestream.Recorder, c redis.UniversalClient) *failurestream.Worker {
	e.T.Helper()
	cfg.Stream, cfg.Consumer = e.Stream, consumer
	if cfg.Block == 0 {
		cfg.Block = 200 * time.Millisecond // shutdown waits for a read in flight
	}
	if cfg.Logger == nil {
		cfg.Logger = zaptest.NewLogger(e.T).Named(consumer)
	}
	w, err := failurestream.New(c, core, aud, cfg)
	if err != nil {
		e.T.Fatal(err)
	}
	return w
}

// soloWorker is worker w1 with default settings but its metrics m, over a
// registry of its own (store) and an audit log of its own (at path).
func (e *env) soloWorker() (store *redisstore.Store, path string, m *failurestream.Metrics, w *failurestream.Worker) {
	e.T.Helper()
	store = e.Store()
	aud, path := e.AuditLog("w1")
	m = failurestream.NewMetrics()
	return store, path, m, e.worker("w1", failurestream.Config{Metrics: m}, e.Core(store, aud, e.RDB), aud, e.RDB)
}

// drained waits until every entry of the stream is delivered and
// acknowledged.
func drained(t testing.TB, w *failurestream.Worker, timeout time.Duration) {
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
