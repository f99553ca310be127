// Package sagatest holds the test fixtures that the tests of
// shared/saga and functions/failurestream share: one real Redis per
// test binary, started by the first test that needs it (RunWithRedis), a
// registry, audit logs and audited marks of
// their own per test (Env), fresh and registered IDs, readers of audit
// files, and a registry that fails on demand (FlakyRegistry).
//
// Invariant: tests of one binary share the server but never a key: every
// Env has its own key prefix and stream name.
package sagatest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/redisstore"
	"github.com/idgen/idgen/shared/registry/redisstore/redisstoretest"
	"github.com/idgen/idgen/shared/saga"
)

// RunWithRedis runs the tests with r, the package's one Redis (started by
// the first NewEnv; under go test -short NewEnv skips its test and no server
// starts), stops the server and fails the run when goroutines were left
// behind. It returns the exit code: use it as
// os.Exit(compensationtest.RunWithRedis(m, r)) in TestMain.
func RunWithRedis(m *testing.M, r *redisharness.Shared) int {
	return proc.RunMain(m, r.Close)
}

// clientPool is the pool size of Env clients: twice the stream worker's
// default Count, so an entry in flight never waits for a connection.
const clientPool = 128

var seq atomic.Int64

// Env is what one test works on: a registry prefix, a stream and marks of
// its own on the shared server.
type Env struct {
	T      testing.TB
	Addr   string // the Redis server
	Prefix string // of the registry's and the marks' keys
	Stream string // a failure stream of this test
	RDB    *redis.Client
}

// NewEnv returns a fresh Env on r, started if it is not yet; its clients
// and stores close when t ends.
func NewEnv(t testing.TB, r *redisharness.Shared) *Env {
	t.Helper()
	addr := r.Get(t).Addr()
	n := seq.Add(1)
	e := &Env{T: t, Addr: addr, Prefix: fmt.Sprintf("t%d:", n), Stream: fmt.Sprintf("t%d:failures", n)}
	e.RDB = e.Client()
	return e
}

// Client is a new Redis client (one per simulated process).
func (e *Env) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: e.Addr, DisableIdentity: true, ContextTimeoutEnabled: true, PoolSize: clientPool})
	e.T.Cleanup(func() { _ = c.Close() })
	return c
}

// Store opens a registry (one per simulated instance).
func (e *Env) Store() *redisstore.Store {
	e.T.Helper()
	return redisstoretest.Open(e.T, redisstore.Config{Addrs: []string{e.Addr}, Prefix: e.Prefix})
}

// AuditLog opens an audit file of its own and returns it with its path.
func (e *Env) AuditLog(name string) (*audit.Log, string) {
	e.T.Helper()
	path := filepath.Join(e.T.TempDir(), name+".audit.log")
	l, err := audit.Open(path, name)
	if err != nil {
		e.T.Fatal(err)
	}
	e.T.Cleanup(func() { _ = l.Close() })
	return l, path
}

// Marks are audited marks under the Env's prefix, through c.
func (e *Env) Marks(c redis.Cmdable) *saga.RedisMarks {
	return &saga.RedisMarks{Client: c, Prefix: e.Prefix + "audited:"}
}

// Core is a core with the Env's marks through c.
func (e *Env) Core(reg saga.Transitioner, aud saga.Recorder, c redis.Cmdable) *saga.Core {
	return &saga.Core{Registry: reg, Audit: aud, Marks: e.Marks(c)}
}

// TestMS is the issue time of the IDs of NewIDs.
const TestMS = 1_764_000_000_000

var counter atomic.Uint64

// NewIDs returns fresh IDs (not registered).
func NewIDs(n int) []idcodec.ID {
	out := make([]idcodec.ID, n)
	for i := range out {
		out[i] = idcodec.MustCompose(idcodec.Fields{TimestampMS: TestMS, Worker: 9, Shard: 5, Counter: counter.Add(1)})
	}
	return out
}

// Register stores pending records of ids, as /generate does.
func Register(t testing.TB, s *redisstore.Store, ids ...idcodec.ID) {
	t.Helper()
	var iss registry.Issue
	for _, id := range ids {
		iss.Records = append(iss.Records, registry.Record{
			ID: id, State: registry.Pending, IssuedAtMS: TestMS, Subject: "svc-payments",
			History: []registry.Step{{State: registry.Pending, AtMS: TestMS, Actor: "svc-payments"}},
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

// PendingIDs registers n fresh IDs.
func PendingIDs(t testing.TB, s *redisstore.Store, n int) []idcodec.ID {
	t.Helper()
	ids := NewIDs(n)
	Register(t, s, ids...)
	return ids
}

// AuditLines reads the entries of audit files with the given action.
func AuditLines(t testing.TB, action string, paths ...string) []audit.Event {
	t.Helper()
	return AuditEvents(t, func(ev audit.Event) bool { return ev.Action == action }, paths...)
}

// AuditEvents reads the entries of audit files that keep accepts, file by
// file in order. A line that is not a JSON entry fails t: a log closed
// cleanly holds whole entries only.
func AuditEvents(t testing.TB, keep func(audit.Event) bool, paths ...string) []audit.Event {
	t.Helper()
	var out []audit.Event
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var ev audit.Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				f.Close()
				t.Fatalf("%s: not JSON: %q", p, sc.Text())
			}
			if keep(ev) {
				out = append(out, ev)
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
	}
	return out
}

// PerResource counts audit entries by resource.
func PerResource(evs []audit.Event) map[string]int {
	m := map[string]int{}
	for _, e := range evs {
		m[e.Resource]++
	}
	return m
}

// CompensatedSteps counts the compensated steps in id's history (an
// effect is one step); it fails t unless id is compensated.
func CompensatedSteps(t testing.TB, s *redisstore.Store, id idcodec.ID) int {
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

// NowMS is the wall clock in unix ms.
func NowMS() int64 { return time.Now().UnixMilli() }

// FlakyRegistry fails the first FailN transitions without touching the
// registry and, when LostN > 0, then stores LostN transitions but reports
// them as failed (a response lost with the connection).
type FlakyRegistry struct {
	Next         saga.Transitioner
	FailN, LostN atomic.Int64
}

var _ saga.Transitioner = (*FlakyRegistry)(nil)

// Transition implements saga.Transitioner.
func (f *FlakyRegistry) Transition(ctx context.Context, id idcodec.ID, ch registry.Change) (registry.Record, registry.Outcome, error) {
	if f.FailN.Add(-1) >= 0 {
		return registry.Record{}, 0, registry.ErrUnavailable
	}
	rec, out, err := f.Next.Transition(ctx, id, ch)
	if err == nil && f.LostN.Add(-1) >= 0 {
		return registry.Record{}, 0, registry.ErrUnavailable
	}
	return rec, out, err
}
