package main

// End-to-end tests of `idgen compensate`: the real binary as a child
// process against a real Redis (redisharness), killed with SIGKILL in the
// middle of a stream, restarted, configured through flags and IDGEN_*.

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idgen/idgen/shared/saga/sagatest"

	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/redisstore"
	"github.com/idgen/idgen/shared/registry/redisstore/redisstoretest"
)

// compensateBin returns the binary under test; main.go dispatches `idgen
// compensate`.
func compensateBin(t *testing.T) string {
	t.Helper()
	return idgenBinary(t)
}

// worker is one `idgen compensate` child process.
type worker struct {
	t     *testing.T
	p     *proc.Process
	audit string
}

func startWorker(t *testing.T, env []string, args ...string) *worker {
	t.Helper()
	w := &worker{t: t, audit: filepath.Join(t.TempDir(), "audit.log")}
	p, err := proc.Start(compensateBin(t), proc.Options{
		Args: append([]string{"compensate", "--audit-log", w.audit}, args...), Env: env, DropEnv: []string{"IDGEN_"}, Dir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	w.p = p
	t.Cleanup(func() {
		_ = p.Kill()
		if t.Failed() {
			t.Logf("--- idgen compensate %s stderr (last %d lines):\n%s", strings.Join(args, " "), failLogLines, lastLines(p.Stderr(), failLogLines))
		}
	})
	return w
}

// compensateEnv is a Redis with pending records registered the way serve
// registers them.
type compensateEnv struct {
	t     *testing.T
	redis *redisharness.Server
	store *redisstore.Store
	rdb   *redis.Client
}

func newCompensateEnv(t *testing.T) *compensateEnv {
	t.Helper()
	// idgen compensate refuses a Redis that a restart would empty.
	srv := redisharness.StartStandaloneT(t, redisharness.Options{AppendFsyncAlways: true})
	store := redisstoretest.Open(t, redisstore.Config{Addrs: []string{srv.Addr()}})
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), DisableIdentity: true})
	t.Cleanup(func() { _ = rdb.Close() })
	return &compensateEnv{t: t, redis: srv, store: store, rdb: rdb}
}

// pending registers n pending IDs.
func (e *compensateEnv) pending(n int) []idcodec.ID {
	e.t.Helper()
	now := time.Now().UnixMilli()
	ids := make([]idcodec.ID, n)
	var iss registry.Issue
	for i := range ids {
		ids[i] = idcodec.MustCompose(idcodec.Fields{TimestampMS: uint64(now), Worker: 3, Shard: 2, Counter: uint64(i + 1)})
		iss.Records = append(iss.Records, registry.Record{
			ID: ids[i], State: registry.Pending, IssuedAtMS: now, Subject: "svc-orders",
			History: []registry.Step{{State: registry.Pending, AtMS: now, Actor: "svc-orders"}},
		})
	}
	if _, err := e.store.Register(context.Background(), iss, 0, now); err != nil {
		e.t.Fatal(err)
	}
	return ids
}

func (e *compensateEnv) add(stream string, entries ...map[string]any) {
	e.t.Helper()
	_, err := e.rdb.Pipelined(context.Background(), func(p redis.Pipeliner) error {
		for _, v := range entries {
			p.XAdd(context.Background(), &redis.XAddArgs{Stream: stream, Values: v})
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// group returns the consumer group's state (zero before it exists).
func (e *compensateEnv) group(stream string) redis.XInfoGroup {
	gs, _ := e.rdb.XInfoGroups(context.Background(), stream).Result()
	for _, g := range gs {
		if g.Name == "compensate" {
			return g
		}
	}
	return redis.XInfoGroup{Lag: -1}
}

func (e *compensateEnv) waitDrained(stream string, n int64, timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		g := e.group(stream)
		if g.EntriesRead >= n && g.Lag == 0 && g.Pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("stream %s not drained after %v: %+v", stream, timeout, g)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestCompensateWorkerKilledMidStream: 2000 failure events; three worker
// processes in turn are SIGKILLed while they hold entries read but not
// acknowledged (Redis is frozen for a moment first, so that the kill finds
// entries waiting at some step: read, transition sent, mark sent, ack
// sent); a last worker of the group takes them over (XAUTOCLAIM after
// --claim-idle) and applies all of them: every ID compensated by exactly
// one effect, with exactly one audit entry across all the workers' logs.
func TestCompensateWorkerKilledMidStream(t *testing.T) {
	const n = 2000
	const stream = "e2e:failures"
	e := newCompensateEnv(t)
	ids := e.pending(n)
	entries := make([]map[string]any, n)
	for i, id := range ids {
		entries[i] = map[string]any{"id": id.String(), "reason": "order cancelled", "event_id": fmt.Sprintf("evt-%d", i), "source": "orders"}
	}
	e.add(stream, entries...)

	common := []string{"--redis-addr", e.redis.Addr(), "--failure-stream", stream, "--claim-idle", "1s"}
	// Three workers are killed one after the other, each at a slightly
	// different moment of its cycle (read, transition, audit, ack); each
	// later one also takes over what the earlier ones left.
	var audits []string
	for round := 1; round <= 3; round++ {
		a := startWorker(t, nil, append(common, "--consumer", fmt.Sprintf("worker-a%d", round))...)
		audits = append(audits, a.audit)
		deadline := time.Now().Add(30 * time.Second)
		for e.group(stream).EntriesRead < int64(round*n/6) {
			if a.p.Exited() || time.Now().After(deadline) {
				t.Fatalf("worker a%d did not consume: %+v", round, e.group(stream))
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(time.Duration(round) * 700 * time.Microsecond)
		// Freeze Redis so that the worker's in-flight entries all wait on
		// it, then kill the worker: commands it already sent run when Redis
		// thaws (a transition whose audit entry was never written, an
		// audited mark, an ack), the rest never.
		if err := e.redis.Stop(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		if err := a.p.Kill(); err != nil {
			t.Fatal(err)
		}
		if err := e.redis.Cont(); err != nil {
			t.Fatal(err)
		}
		killed := e.group(stream)
		t.Logf("worker a%d killed: %d entries pending, %d never read", round, killed.Pending, killed.Lag)
		if killed.Pending == 0 || killed.Lag == 0 {
			t.Fatalf("the kill did not land mid-stream: %+v", killed)
		}
	}

	metricsAddr, err := proc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	b := startWorker(t, nil, append(common, "--consumer", "worker-b", "--metrics-listen", metricsAddr)...)
	t0 := time.Now()
	e.waitDrained(stream, n, 60*time.Second)
	t.Logf("worker b drained the rest in %v", time.Since(t0))

	code, body := httpGet(t, "http://"+metricsAddr+"/metrics")
	if code != 200 || !strings.Contains(body, "idgen_compensate_reclaimed_total") || strings.Contains(body, "idgen_compensate_reclaimed_total 0\n") {
		t.Fatalf("/metrics %d: no reclaimed entries reported:\n%s", code, body)
	}
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "idgen_compensate_") {
			t.Log(l)
		}
	}
	if code, body := httpGet(t, "http://"+metricsAddr+"/health"); code != 200 || !strings.Contains(body, `"status":"ok"`) {
		t.Fatalf("/health %d %s", code, body)
	}
	exit, err := b.p.Terminate(10 * time.Second)
	if err != nil || exit != 0 {
		t.Fatalf("SIGTERM: exit %d, %v", exit, err)
	}
	if !strings.Contains(b.p.Stderr(), "compensate worker stopped") {
		t.Fatal("worker b did not log its stop")
	}

	counts := map[string]int{}
	for _, ev := range sagatest.AuditLines(t, audit.ActionCompensate, append(audits, b.audit)...) {
		counts[ev.Resource]++
		if ev.Actor != "compensate:orders" || ev.Outcome != "applied" || !strings.HasPrefix(ev.RequestID, "evt-") {
			t.Fatalf("audit entry %+v", ev)
		}
	}
	// One effect per ID (the registry's history), one audit entry per ID
	// (all the workers' logs together).
	bad := 0
	for _, id := range ids {
		rec, err := e.store.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		steps := 0
		for _, st := range rec.History {
			if st.State == registry.Compensated {
				steps++
			}
		}
		if rec.State != registry.Compensated || steps != 1 {
			t.Fatalf("%s: %s with %d compensated steps, want one effect", id, rec.State, steps)
		}
		if c := counts[id.String()]; c != 1 {
			if bad++; bad <= 10 {
				t.Errorf("%s has %d audit entries, want 1", id, c)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d IDs do not have exactly one audit entry", bad, n)
	}
	if l, _ := e.rdb.XLen(context.Background(), stream+":dlq").Result(); l != 0 {
		t.Fatalf("%d dead letters, want none", l)
	}
}

// TestCompensateCommandConfig: flags and IDGEN_* variables, --help, the
// refusal of a missing --redis-addr, and poison entries dead-lettered
// while good ones flow, by a worker configured through the environment.
func TestCompensateCommandConfig(t *testing.T) {
	bin := compensateBin(t)
	t.Run("help", func(t *testing.T) {
		p, err := proc.Start(bin, proc.Options{Args: []string{"compensate", "--help"}, DropEnv: []string{"IDGEN_"}})
		if err != nil {
			t.Fatal(err)
		}
		code, err := p.Wait(15 * time.Second)
		if err != nil || code != 0 {
			t.Fatalf("exit %d %v", code, err)
		}
		for _, want := range []string{"--failure-stream", "IDGEN_FAILURE_STREAM", "--max-deliveries", "--claim-idle", "--consumer", "--metrics-listen", "--redis-password-file", "IDGEN_REDIS_ADDR"} {
			if !strings.Contains(p.Stderr()+p.Stdout(), strings.TrimPrefix(want, "-")) {
				t.Errorf("help lacks %s", want)
			}
		}
	})
	t.Run("no redis", func(t *testing.T) {
		p, err := proc.Start(bin, proc.Options{Args: []string{"compensate"}, DropEnv: []string{"IDGEN_"}})
		if err != nil {
			t.Fatal(err)
		}
		code, err := p.Wait(15 * time.Second)
		if err != nil || code != 1 || !strings.Contains(p.Stderr(), "--redis-addr is required") {
			t.Fatalf("exit %d %v: %s", code, err, p.Stderr())
		}
	})
	t.Run("environment and poison", func(t *testing.T) {
		e := newCompensateEnv(t)
		ids := e.pending(20)
		stream := "env:failures"
		var entries []map[string]any
		for i, id := range ids {
			entries = append(entries, map[string]any{"id": id.String(), "reason": "r"})
			if i%4 == 0 {
				entries = append(entries, map[string]any{"id": fmt.Sprintf("garbage-%d", i), "reason": "r"}, map[string]any{"reason": "no id"})
			}
		}
		e.add(stream, entries...)
		w := startWorker(t, []string{"IDGEN_REDIS_ADDR=" + e.redis.Addr(), "IDGEN_FAILURE_STREAM=" + stream, "IDGEN_CONSUMER=env-worker", "IDGEN_LOG_LEVEL=debug"},
			"--failure-stream", stream) // the flag wins (same value): both paths parse
		e.waitDrained(stream, int64(len(entries)), 30*time.Second)
		if exit, err := w.p.Terminate(10 * time.Second); err != nil || exit != 0 {
			t.Fatalf("SIGTERM: exit %d %v", exit, err)
		}
		if n := len(sagatest.AuditLines(t, audit.ActionCompensate, w.audit)); n != 20 {
			t.Fatalf("%d compensations audited, want 20", n)
		}
		dl := sagatest.AuditLines(t, audit.ActionDeadLetter, w.audit)
		dlq, err := e.rdb.XRange(context.Background(), stream+":dlq", "-", "+").Result()
		if err != nil || len(dlq) != 10 || len(dl) != 10 {
			t.Fatalf("%d dead letters, %d audited, want 10: %v", len(dlq), len(dl), err)
		}
		for _, d := range dlq {
			if d.Values["consumer"] != "env-worker" || d.Values["cause"] != "malformed" || d.Values["error"] == "" {
				t.Fatalf("dead letter %v", d.Values)
			}
		}
		if !strings.Contains(w.p.Stderr(), `"consumer":"env-worker"`) {
			t.Fatal("IDGEN_CONSUMER not used")
		}
	})
}
