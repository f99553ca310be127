package redise2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/harness/redisharness"
)

// loadRun is a bounded load of single and count=10 requests over instances,
// every answer kept in a ledger.
type loadRun struct {
	l      *ledger
	load   *proc.Load
	probes sync.WaitGroup
	stop   context.CancelFunc
}

// startLoad runs workers goroutines, worker w asking instance w%len(insts),
// odd workers for 10 IDs at a time; a non-200 answer pauses a worker 20 ms,
// so that refusals do not spin. Workers block while the service holds
// requests, so a prober also sends one single request every 100 ms (at most
// 64 in flight), alternating instances: every moment of a fault gets
// requests. It stops with ctx or Stop.
func startLoad(ctx context.Context, c *http.Client, insts []*instance, workers int) *loadRun {
	lr := &loadRun{l: newLedger()}
	ctx, cancel := context.WithCancel(ctx)
	record := func(ctx context.Context, r genResult) bool {
		if r.err != nil && ctx.Err() != nil {
			return false // cut by Stop: not an answer
		}
		return lr.l.add(r)
	}
	lr.load = proc.StartLoad(ctx, workers, func(ctx context.Context, w int) bool {
		count := 0
		if w%2 == 1 {
			count = 10
		}
		i := w % len(insts)
		if !record(ctx, generate(ctx, c, insts[i], i, count, genOpts{})) {
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
		return true
	})
	lr.probes.Go(func() {
		defer cancel() // Stop cancels the load's context, not this one
		sem := make(chan struct{}, 64)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			select {
			case sem <- struct{}{}:
			default:
				continue // 64 in flight: skip this tick
			}
			i := n % len(insts)
			lr.probes.Go(func() {
				defer func() { <-sem }()
				record(ctx, generate(ctx, c, insts[i], i, 0, genOpts{}))
			})
		}
	})
	lr.stop = cancel
	return lr
}

// startLoadOK starts a load of 8 workers on insts and waits up to 30s
// until every instance answered 200 to it; it returns the load and when it
// started.
func startLoadOK(ctx context.Context, t *testing.T, c *http.Client, insts []*instance) (*loadRun, time.Time) {
	t.Helper()
	t0 := time.Now()
	lr := startLoad(ctx, c, insts, 8)
	if _, err := lr.waitOK(len(insts), t0, 30*time.Second); err != nil {
		lr.Stop()
		t.Fatal(err)
	}
	return lr, t0
}

// Stop ends the load and waits for every request in flight.
func (lr *loadRun) Stop() {
	lr.stop()
	lr.load.Stop()
	lr.probes.Wait()
}

// finish waits until every one of n instances answered 200 to a request
// sent after since (failing t with what if none did within timeout), lets
// the load run one more second, stops it and checks its answers. It
// returns when the last instance answered 200.
func (lr *loadRun) finish(t *testing.T, n int, since time.Time, timeout time.Duration, what string) time.Time {
	t.Helper()
	tOK, err := lr.waitOK(n, since, timeout)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	time.Sleep(time.Second)
	lr.Stop()
	checkAnswers(t, lr.l)
	return tOK
}

// restartRedis restarts srv within 30s and returns when the restart began
// and when it ended; it fails t on an error.
func restartRedis(ctx context.Context, t *testing.T, srv *redisharness.Server) (began, ended time.Time) {
	t.Helper()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	began = time.Now()
	if err := srv.Restart(rctx); err != nil {
		t.Fatal(err)
	}
	return began, time.Now()
}

// waitOK waits until every instance has answered 200 to a request sent
// after since, and returns when the last of them did.
func (lr *loadRun) waitOK(n int, since time.Time, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		_, _, results := lr.l.snapshot()
		first := make([]time.Time, n)
		for _, r := range results {
			if r.status == http.StatusOK && r.sent.After(since) && (first[r.inst].IsZero() || r.recv.Before(first[r.inst])) {
				first[r.inst] = r.recv
			}
		}
		var last time.Time
		done := true
		for _, f := range first {
			if f.IsZero() {
				done = false
			} else if f.After(last) {
				last = f
			}
		}
		if done {
			return last, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no 200 from every instance within %v (answers: %s)", timeout, lr.l.summary())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// windowStats describes the answers to the requests sent in a time window.
type windowStats struct {
	sent, ok, refused, other int
	okEarly                  int           // 200 received before the window ended
	maxLatency               time.Duration // slowest answer
	refusedLatency           time.Duration // median latency of the 503s
}

func (w windowStats) String() string {
	return fmt.Sprintf("%d requests sent: %d answered 200, %d 503 (median latency %v), %d other; slowest answer %v",
		w.sent, w.ok, w.refused, w.refusedLatency.Round(time.Millisecond), w.other, w.maxLatency.Round(time.Millisecond))
}

// window describes the answers to requests sent in [from, to).
func window(results []genResult, from, to time.Time) windowStats {
	var (
		w   windowStats
		lat []time.Duration
	)
	for _, r := range results {
		if r.sent.Before(from) || !r.sent.Before(to) {
			continue
		}
		w.sent++
		w.maxLatency = max(w.maxLatency, r.recv.Sub(r.sent))
		switch {
		case r.status == http.StatusOK:
			w.ok++
			if r.recv.Before(to) {
				w.okEarly++
			}
		case is503(&r):
			w.refused++
			lat = append(lat, r.recv.Sub(r.sent))
		default:
			w.other++
		}
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		w.refusedLatency = lat[len(lat)/2]
	}
	return w
}

// checkAnswers fails t for any answer other than a contract-conforming 200
// or a 503 with Retry-After, and for duplicates.
func checkAnswers(t testing.TB, l *ledger) {
	t.Helper()
	_, _, results := l.snapshot()
	bad := 0
	for _, r := range results {
		if (r.status == http.StatusOK && r.bad == "" && r.err == nil) || is503(&r) {
			continue
		}
		if bad++; bad <= 10 {
			t.Errorf("answer outside the contract (200, or 503 unavailable with Retry-After): %s", r.String())
		}
	}
	if bad > 10 {
		t.Errorf("... %d such answers in all", bad)
	}
	l.checkUnique(t)
}

// TestRedisKilledMidLoad: the standalone Redis (append-only file, fsync
// always) is SIGKILLed while 8 goroutines issue through two instances.
// Every answer is 200 or 503 with Retry-After; no request sent while Redis
// is gone gets a 200; /health reports the registry down; after Redis
// restarts, both instances answer 200 again within 30 s without being
// touched; every ID ever answered 200 is in the restarted Redis.
func TestRedisKilledMidLoad(t *testing.T) {
	srv, d := standaloneDeployment(t, redisharness.Options{AppendFsyncAlways: true})
	insts := d.startTwo()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	lr, t0 := startLoadOK(ctx, t, d.client, insts)
	defer lr.Stop()
	time.Sleep(time.Second)

	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	tKill := time.Now()
	// /health says the registry is down, on both instances.
	for _, in := range insts {
		var (
			status int
			h      healthReport
			err    error
		)
		for deadline := time.Now().Add(15 * time.Second); ; {
			status, h, err = health(ctx, d.client, in)
			if err == nil && h.Status != "ok" && h.Checks["registry"].Status != "ok" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: /health still %d %+v (%v) %v after the Redis kill", in.name, status, h, err, time.Since(tKill))
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("%s /health with Redis gone: %d %s, registry check %s (%s)", in.name, status, h.Status, h.Checks["registry"].Status, h.Checks["registry"].Error)
		if status != http.StatusServiceUnavailable || h.Status != "down" {
			t.Errorf("%s: /health %d %q with the registry gone, want 503 down (registry is a critical check)", in.name, status, h.Status)
		}
	}
	if rest := 7*time.Second - time.Since(tKill); rest > 0 {
		time.Sleep(rest)
	}

	// Redis may answer as soon as its process starts, before Restart has
	// returned: "dead" ends when the restart begins.
	tRestart, tUp := restartRedis(ctx, t, srv)
	tOK := lr.finish(t, len(insts), tUp, 30*time.Second, "no automatic recovery after Redis restarted")

	for _, in := range insts {
		status, h, err := health(ctx, d.client, in)
		if err != nil || status != http.StatusOK || h.Checks["registry"].Status != "ok" {
			t.Errorf("%s: /health after recovery: %d %+v %v", in.name, status, h, err)
		}
	}
	ids, _, results := lr.l.snapshot()
	before := window(results, t0, tKill)
	down := window(results, tKill, tUp)
	if dead := window(results, tKill, tRestart); dead.okEarly > 0 {
		t.Errorf("%d requests sent while Redis was dead were answered 200 before its restart began", dead.okEarly)
	}
	t.Logf("Redis down %v; both instances answered 200 again %v after the restart; answers: %s",
		tUp.Sub(tKill).Round(time.Millisecond), tOK.Sub(tUp).Round(time.Millisecond), lr.l.summary())
	t.Logf("before the kill: %v", before)
	t.Logf("while Redis was down: %v", down)
	t.Logf("after the restart: %v", window(results, tUp, time.Now()))

	admin := rawClient(t, srv.Addr(), redisOpts{})
	checkRegistered(t, admin, ids, "IDs answered 200 (after the Redis restart)")
	t.Logf("%d IDs answered 200, all in the restarted Redis", len(ids))
}

// TestSentinelFailoverDurable: primary + 1 replica + 3 Sentinels
// (append-only fsync always, min-replicas-to-write 1), two instances in
// durable mode (--redis-wait-replicas 1) under load. The primary is
// SIGKILLed; Sentinels promote the replica. The promoted primary has no
// replica, so durable writes cannot be acknowledged: every request sent
// then gets 503 (never 200). The old primary is restarted (it rejoins as a
// replica of the new one); writes resume, and every ID ever answered 200 is
// on the new primary.
func TestSentinelFailoverDurable(t *testing.T) {
	g := redisharness.StartReplicatedT(t, redisharness.Options{AppendFsyncAlways: true, MinReplicasToWrite: 1}, 1, 3)
	d := newDeployment(t, "--redis-master", g.MasterName(), "--redis-addr", strings.Join(g.SentinelAddrs(), ","), "--redis-wait-replicas", "1")
	insts := d.startTwo()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	lr, t0 := startLoadOK(ctx, t, d.client, insts)
	defer lr.Stop()
	time.Sleep(1500 * time.Millisecond)
	// Under load each instance's last durable flush was acknowledged by
	// the one replica (/metrics, shown by the console).
	for _, in := range insts {
		if n, err := metric(ctx, d.client, in, "idgen_registry_replicas_acknowledged"); err != nil || n != 1 {
			t.Errorf("%s: idgen_registry_replicas_acknowledged %v, %v; want 1", in.name, n, err)
		}
	}

	old, err := g.KillPrimary()
	if err != nil {
		t.Fatal(err)
	}
	tKill := time.Now()
	fctx, fcancel := context.WithTimeout(ctx, 60*time.Second)
	newAddr, err := g.WaitFailover(fctx, old.Addr())
	fcancel()
	if err != nil {
		t.Fatal(err)
	}
	tFailover := time.Now()
	t.Logf("failover %s → %s in %v", old.Addr(), newAddr, tFailover.Sub(tKill).Round(time.Millisecond))

	// Without a replica, nothing is acknowledged.
	time.Sleep(3 * time.Second)
	_, tRestart := restartRedis(ctx, t, old)
	tOK := lr.finish(t, len(insts), tRestart, 45*time.Second, "durable writes did not resume after the old primary was restarted")

	ids, _, results := lr.l.snapshot()
	gap := window(results, tKill, tRestart)
	if gap.okEarly > 0 {
		t.Errorf("%d requests sent between the primary's death and the restart of a replica were answered 200 before it (durable mode needs a replica's WAIT acknowledgement)", gap.okEarly)
	}
	t.Logf("before the kill: %v", window(results, t0, tKill))
	t.Logf("kill → failover: %v", window(results, tKill, tFailover))
	t.Logf("failover → old primary restarted (no replica): %v", window(results, tFailover, tRestart))
	t.Logf("after the restart: %v", window(results, tRestart, time.Now()))
	t.Logf("writes resumed %v after the old primary's restart (%v after the kill); answers: %s",
		tOK.Sub(tRestart).Round(time.Millisecond), tOK.Sub(tKill).Round(time.Millisecond), lr.l.summary())

	primary := rawClient(t, newAddr, redisOpts{})
	checkRegistered(t, primary, ids, "acknowledged IDs (on the new primary)")
	t.Logf("%d acknowledged IDs, all on the new primary %s", len(ids), newAddr)
	if role := primary.Do(ctx, "ROLE").Val(); fmt.Sprint(role) == "" || !strings.HasPrefix(fmt.Sprint(role), "[master") {
		t.Errorf("ROLE of %s: %v", newAddr, role)
	}
}

// TestDurableReplicaLossFailsFast: in durable mode a primary that lost its
// only replica refuses writes (min-replicas-to-write 1: NOREPLICAS, up front
// thanks to the script's shebang) and WAIT 1 returns 0 after the 1 s WAIT
// timeout. A /generate must then be refused (503 with Retry-After) about
// that fast, not held for the whole request timeout (5 s) while the
// registry client retries; after the replica is back, writes resume.
func TestDurableReplicaLossFailsFast(t *testing.T) {
	g := redisharness.StartReplicatedT(t, redisharness.Options{AppendFsyncAlways: true, MinReplicasToWrite: 1}, 1, 3)
	d := newDeployment(t, "--redis-master", g.MasterName(), "--redis-addr", strings.Join(g.SentinelAddrs(), ","), "--redis-wait-replicas", "1")
	in := d.start("idgen-a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if r := generate(ctx, d.client, in, 0, 0, genOpts{}); r.status != http.StatusOK {
		t.Fatalf("before the replica loss: %s", r.String())
	}
	replica := g.Replicas()[0]
	if err := replica.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)

	// Two rounds of 4 concurrent requests.
	const bound = 2500 * time.Millisecond
	var lats []time.Duration
	for range 2 {
		var (
			wg  sync.WaitGroup
			mu  sync.Mutex
			all []genResult
		)
		for i := range 4 {
			wg.Go(func() {
				r := generate(ctx, d.client, in, 0, i%2, genOpts{})
				mu.Lock()
				all = append(all, r)
				mu.Unlock()
			})
		}
		wg.Wait()
		for _, r := range all {
			lat := r.recv.Sub(r.sent)
			lats = append(lats, lat)
			if !is503(&r) {
				t.Errorf("without a replica in durable mode: %s, want 503 with Retry-After", r.String())
			} else if lat > bound {
				t.Errorf("503 after %v without a replica; want it within %v (WAIT timeout 1 s)", lat.Round(time.Millisecond), bound)
			}
		}
	}
	t.Logf("latencies of the refusals without a replica: %v", lats)

	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	err := replica.Restart(rctx)
	rcancel()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := generate(ctx, d.client, in, 0, 0, genOpts{})
		if r.status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("writes did not resume after the replica came back: %s", r.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
