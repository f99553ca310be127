package zke2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"
)

// steadyPattern is the request mix of the paced loads: mostly singles, some
// small batches.
var steadyPattern = []int{0, 0, 0, 20}

// paceAll starts a paced load of workers goroutines on every process; the
// process's index in ps is its ledger target.
func paceAll(ctx context.Context, c *http.Client, l *ledger, ps []*idgenProc, workers int, pace time.Duration) []*pacedLoad {
	loads := make([]*pacedLoad, len(ps))
	for i, p := range ps {
		loads[i] = startPaced(ctx, c, l, i, p.url, workers, pace, steadyPattern, 5000)
	}
	return loads
}

func stopAll(loads []*pacedLoad) {
	var wg sync.WaitGroup
	for _, ld := range loads {
		if ld != nil {
			wg.Go(ld.stop)
		}
	}
	wg.Wait()
}

// okBetween counts, per target, the 200 answers to requests sent in [from, to).
func okBetween(rs []genResult, from, to time.Time) map[int]int {
	out := map[int]int{}
	for _, r := range rs {
		if r.status == http.StatusOK && !r.sent.Before(from) && r.sent.Before(to) {
			out[r.target]++
		}
	}
	return out
}

// waitAllHealthy waits until every process answers /health "ok" and a fresh
// POST /generate with 200.
func waitAllHealthy(c *http.Client, ps []*idgenProc, timeout time.Duration) (time.Duration, string, bool) {
	return waitFor(timeout, 200*time.Millisecond, func() (bool, string) {
		for _, p := range ps {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			h, err := getHealth(ctx, c, p.url)
			if err != nil || h.Status != "ok" {
				cancel()
				return false, fmt.Sprintf("%s /health: %+v %v", p.name, h, err)
			}
			r := generate(ctx, c, p.url, -1, 0)
			cancel()
			if r.status != http.StatusOK {
				return false, fmt.Sprintf("%s /generate: %s", p.name, describe(&r))
			}
		}
		return true, ""
	})
}

// electionSession is the session timeout of the leader-election test. The
// ranges carry a process across an election only while its worker lease
// (2/3 of the session timeout past the last answer, which may be a ping
// interval old) outlasts the election plus the client's reconnect (the
// ZooKeeper client sleeps 1s after each round of refused servers). With 4s
// (lease 2.7s) that held on an idle box, but under CPU contention an
// election took ~2s and the lease ran out for ~50ms (17 requests got 503).
// 10s is the service's default (lease 6.7s).
const electionSession = 10 * time.Second

// Test 2: the ZooKeeper leader is SIGKILLed while three processes issue IDs
// at a steady rate. The ranges they hold (adaptive step, prefetch) carry them
// across the election: every request answers 200, no duplicate. The old
// leader is restarted afterwards and the service ends healthy.
func TestZKLeaderKilledUnderLoad(t *testing.T) {
	e := zkEnsemble(t)
	t.Cleanup(func() { restoreEnsemble(t, e) })
	c := newHTTPClient(t, true)
	ps := startClusterOpts(t, c, procOpts{zk: e.ConnectString(), root: zkRoot(t), session: electionSession},
		"idgen-a", "idgen-b", "idgen-c")

	l := newLedger()
	l.keep = true
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	loads := paceAll(ctx, c, l, ps, 3, 20*time.Millisecond)
	defer stopAll(loads)

	time.Sleep(4 * time.Second) // the adaptive step settles on the rate
	tKill := time.Now()
	leader, err := e.KillLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ZooKeeper leader (server %d) SIGKILLed with %d IDs issued", leader, l.count())
	time.Sleep(6 * time.Second)
	tRestart := time.Now()
	if err := e.Restart(ctx, leader); err != nil {
		t.Fatalf("restart old leader %d: %v", leader, err)
	}
	if err := e.WaitQuorum(ctx); err != nil {
		t.Fatal(err)
	}
	newLeader, _ := e.Leader(ctx)
	t.Logf("old leader %d back after %v; leader now %d", leader, time.Since(tRestart).Round(time.Millisecond), newLeader)
	time.Sleep(2 * time.Second)
	stopAll(loads)

	l.check(t)
	during := okBetween(l.snapshot(), tKill, tRestart)
	for i, p := range ps {
		if during[i] == 0 {
			t.Errorf("%s issued nothing while the old leader was down", p.name)
		}
		if ws := l.workersOf(i); len(ws) != 1 {
			t.Errorf("%s stamped workers %v, want one (the session survives an election)", p.name, ws)
		}
	}
	t.Logf("200 answers per process while the old leader was down: %v", during)
	if d, msg, ok := waitAllHealthy(c, ps, 30*time.Second); !ok {
		t.Errorf("not healthy 30s after the election: %s", msg)
	} else {
		t.Logf("all healthy %v after the load ended", d.Round(time.Millisecond))
	}
}

// Test 3: an idgen process is SIGKILLed mid-load and replaced by a new one
// (fresh data dir). The new one gets a worker slot of its own, the dead one
// leaves /instances when its session expires, and no ID repeats.
func TestInstanceKilledAndReplaced(t *testing.T) {
	e := zkEnsemble(t)
	c := newHTTPClient(t, true)
	root := zkRoot(t)
	ps := startCluster(t, c, e.ConnectString(), root, "idgen-a", "idgen-b", "idgen-c")
	const victim = 1

	l := newLedger()
	l.accept = func(r *genResult) string {
		if r.target == victim && (r.status == http.StatusOK || r.status == 0) {
			return "" // the victim's requests in flight at SIGKILL fail in transport
		}
		return onlyOK(r)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	loads := paceAll(ctx, c, l, ps, 3, 20*time.Millisecond)
	defer stopAll(loads)

	time.Sleep(3 * time.Second)
	before := l.count()
	ps[victim].kill()
	tKill := time.Now()
	loads[victim].stop()
	t.Logf("%s SIGKILLed after %d IDs", ps[victim].name, before)

	d := startIdgen(t, "idgen-d", procOpts{zk: e.ConnectString(), root: root})
	d.waitReady(t, c, 60*time.Second)
	t.Logf("replacement ready %v after the kill", time.Since(tKill).Round(time.Millisecond))
	ps = append(ps, d)
	dl := startPaced(ctx, c, l, len(ps)-1, d.url, 3, 20*time.Millisecond, steadyPattern, 5000)
	loads = append(loads, dl)
	time.Sleep(3 * time.Second)
	stopAll(loads)

	l.check(t)
	wd := l.workersOf(len(ps) - 1)
	if len(wd) != 1 {
		t.Fatalf("replacement stamped workers %v, want exactly one", wd)
	}
	live := []uint16{wd[0]}
	for _, i := range []int{0, 2} {
		ws := l.workersOf(i)
		if len(ws) != 1 {
			t.Errorf("%s stamped workers %v, want one", ps[i].name, ws)
			continue
		}
		if ws[0] == wd[0] {
			t.Errorf("replacement got worker %d, which live %s holds", wd[0], ps[i].name)
		}
		live = append(live, ws[0])
	}
	t.Logf("replacement worker %d; dead process had %v; live workers %v", wd[0], l.workersOf(victim), live)

	// The dead process's member and slot go with its session (4s).
	survivors := []*idgenProc{ps[0], ps[2], d}
	_, msg, ok := waitInstances(c, survivors, live, 20*time.Second)
	if !ok {
		t.Errorf("/instances never settled on the three live processes: %s", msg)
	} else {
		t.Logf("/instances lists exactly the live processes %v after the kill", time.Since(tKill).Round(time.Millisecond))
	}
}

// Test 4: an idgen process is SIGSTOPped longer than its session timeout,
// its worker slot is taken by a new process meanwhile, then it gets
// SIGCONT and is asked for IDs at once. It must fence itself with its local
// lease: 503 (with Retry-After) until it has claimed a new slot, then IDs
// with the new slot. No ID stamped after the freeze carries the old slot;
// no ID repeats.
func TestFrozenInstanceFenced(t *testing.T) {
	e := zkEnsemble(t)
	c := newHTTPClient(t, true)
	root := zkRoot(t)
	ps := startCluster(t, c, e.ConnectString(), root, "idgen-a", "idgen-b", "idgen-c")
	const frozen = 2

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	fr := startFenceRun(ctx, t, c, e.Addrs(), root, ps, frozen, 25*time.Millisecond, "the freeze")
	l, wOld := fr.l, fr.slot

	tStop, cont := fr.fault(t, "frozen process", "SIGSTOP",
		func() error { return ps[frozen].signal(syscall.SIGSTOP) },
		func() { _ = ps[frozen].signal(syscall.SIGCONT) })

	// A new process takes the lowest free slot: the frozen one's.
	const newcomer = 3
	d, wD := fr.newcomer(ctx, t, c, e.ConnectString(), root, newcomer)
	ps = append(ps, d)
	if wD != wOld {
		t.Logf("note: the new process got worker %d, not the frozen one's %d", wD, wOld)
	}

	// SIGCONT and ask at once, from several goroutines, until the resumed
	// process has issued a while with its new slot.
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			<-start
			deadline := time.Now().Add(20 * time.Second)
			okNew := 0
			for okNew < 20 && time.Now().Before(deadline) {
				r := generate(ctx, c, ps[frozen].url, frozen, 0)
				l.record(r)
				if r.status == http.StatusOK && r.ids[0].Decompose().Worker != wOld {
					okNew++
				}
			}
		})
	}
	tCont := time.Now()
	cont()
	close(start)
	wg.Wait()
	time.Sleep(500 * time.Millisecond)
	fr.stop()

	l.check(t)
	stopMS := uint64(tStop.UnixMilli()) + 50 // SIGSTOP lands within microseconds
	var (
		firstNew            time.Time
		newWorker           = -1
		refusedAfter, okOld int
	)
	for _, r := range l.snapshot() {
		if r.target != frozen {
			continue
		}
		if r.status == http.StatusServiceUnavailable && !r.sent.Before(tCont) {
			refusedAfter++
		}
		for _, id := range r.ids {
			f := id.Decompose()
			if f.Worker == wOld {
				okOld++
				if f.TimestampMS > stopMS {
					t.Errorf("ID %s carries the lost slot %d with timestamp %d, after the freeze at %d", id, wOld, f.TimestampMS, tStop.UnixMilli())
				}
				if !r.sent.Before(tCont) {
					t.Errorf("request sent %v after SIGCONT got ID %s with the lost slot %d", r.sent.Sub(tCont), id, wOld)
				}
				continue
			}
			if r.sent.Before(tCont) && f.TimestampMS <= stopMS {
				t.Errorf("ID %s with worker %d stamped before the freeze, but the old slot was %d", id, f.Worker, wOld)
			}
			if int(f.Worker) == int(wD) {
				t.Errorf("resumed process stamped worker %d, which the new process holds: %s", f.Worker, id)
			}
			if newWorker == -1 {
				newWorker = int(f.Worker)
			} else if newWorker != int(f.Worker) {
				t.Errorf("resumed process stamped two new workers %d and %d", newWorker, f.Worker)
			}
			if firstNew.IsZero() || r.recv.Before(firstNew) {
				firstNew = r.recv
			}
		}
	}
	if newWorker == -1 {
		t.Fatalf("the resumed process issued nothing with a new slot within 20s of SIGCONT")
	}
	t.Logf("old slot %d (%d IDs before the freeze); after SIGCONT: %d answers 503, first ID with new slot %d after %v; new process has slot %d",
		wOld, okOld, refusedAfter, newWorker, firstNew.Sub(tCont).Round(time.Millisecond), wD)

	live := []uint16{uint16(newWorker), wD}
	for _, i := range []int{0, 1} {
		live = append(live, l.workersOf(i)...)
	}
	_, msg, ok := waitInstances(c, ps, live, 15*time.Second)
	if !ok {
		t.Errorf("/instances after the resume: %s", msg)
	}
}

// healthSample is one GET /health of one process.
type healthSample struct {
	at     time.Time
	target int
	h      healthView
	err    error
}

// Test 5: two of three ZooKeeper servers are killed (quorum lost) under
// load. Issuing continues from claimed ranges or answers 503 with
// Retry-After, never another error, never a duplicate; once the worker lease
// must have run out, nothing is issued. /health is never "ok" while the
// session is not connected. After the servers are restarted, /health is
// "ok" and /generate answers 200 again within 60s.
func TestQuorumLost(t *testing.T) {
	e := zkEnsemble(t)
	t.Cleanup(func() { restoreEnsemble(t, e) })
	c := newHTTPClient(t, true)
	ps := startCluster(t, c, e.ConnectString(), zkRoot(t), "idgen-a", "idgen-b", "idgen-c")

	l := newLedger()
	l.keep = true
	l.accept = okOr503
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	loads := paceAll(ctx, c, l, ps, 3, 20*time.Millisecond)
	defer stopAll(loads)

	var (
		hmu     sync.Mutex
		samples []healthSample
	)
	stopHealth := make(chan struct{})
	var hwg sync.WaitGroup
	for i, p := range ps {
		hwg.Go(func() {
			for {
				select {
				case <-stopHealth:
					return
				case <-time.After(200 * time.Millisecond):
				}
				hctx, hcancel := context.WithTimeout(ctx, 3*time.Second)
				h, err := getHealth(hctx, c, p.url)
				hcancel()
				hmu.Lock()
				samples = append(samples, healthSample{time.Now(), i, h, err})
				hmu.Unlock()
			}
		})
	}
	stopHealthOnce := sync.OnceFunc(func() { close(stopHealth); hwg.Wait() })
	defer stopHealthOnce()

	time.Sleep(3 * time.Second)
	leader, err := e.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var killed []int
	for i := range zkServers {
		if i != leader {
			killed = append(killed, i)
		}
	}
	tKill := time.Now()
	for _, i := range killed {
		if err := e.Kill(i); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("ZooKeeper servers %v SIGKILLed (leader %d left alone, no quorum) with %d IDs issued", killed, leader, l.count())
	const outage = 12 * time.Second
	time.Sleep(outage)

	tRestart := time.Now()
	for _, i := range killed {
		if err := e.Restart(ctx, i); err != nil {
			t.Fatalf("restart ZooKeeper server %d: %v", i, err)
		}
	}
	if err := e.WaitQuorum(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("quorum back %v after the restart began", time.Since(tRestart).Round(time.Millisecond))
	took, msg, ok := waitAllHealthy(c, ps, 60*time.Second)
	recovered := time.Since(tRestart)
	if !ok {
		t.Errorf("not healthy (/health ok and /generate 200) within 60s of the restart: %s", msg)
	} else {
		t.Logf("all healthy %v after the ZooKeeper restart began (%v after the quorum was back)", recovered.Round(time.Millisecond), took.Round(time.Millisecond))
	}
	time.Sleep(time.Second)
	stopAll(loads)
	stopHealthOnce()

	l.check(t)
	rs := l.snapshot()
	// Lease: at most 2/3 of the session timeout past the last proof of a
	// live session; the lone leader may keep sessions alive for syncLimit
	// (10 ticks = 2s) after losing its followers. Past that plus a margin,
	// every process must be fenced.
	fencedFrom := tKill.Add(2*time.Second + sessionTimeout*2/3 + 2*time.Second)
	late := okBetween(rs, fencedFrom, tRestart)
	for i, n := range late {
		t.Errorf("%s answered 200 to %d requests sent %v..%v after the quorum was lost (the worker lease must have run out)",
			ps[i].name, n, fencedFrom.Sub(tKill).Round(time.Millisecond), tRestart.Sub(tKill).Round(time.Millisecond))
	}
	var refused, served int
	for _, r := range rs {
		if r.sent.Before(tKill) || !r.sent.Before(tRestart) {
			continue
		}
		if r.status == http.StatusOK {
			served++
		} else {
			refused++
		}
	}
	t.Logf("during the outage: %d requests served (from claimed ranges, within the lease), %d refused with 503", served, refused)
	t.Logf("latency: %s; %s", latencies(rs, http.StatusOK), latencies(rs, http.StatusServiceUnavailable))
	if refused == 0 {
		t.Errorf("no 503 during a %v outage: the worker lease did not fence", outage)
	}

	// /health: consistent with its checks, and never "ok" once the session
	// cannot be connected (the lone leader gives up within ~2s).
	notOKFrom := tKill.Add(5 * time.Second)
	statuses := map[string]int{}
	bad := 0
	for _, s := range samples {
		if s.err != nil {
			t.Errorf("%s /health at +%v: %v", ps[s.target].name, s.at.Sub(tKill).Round(time.Millisecond), s.err)
			continue
		}
		h := s.h
		inOutage := s.at.After(notOKFrom) && s.at.Before(tRestart)
		if inOutage {
			statuses[h.Status+"/zookeeper="+h.check("zookeeper")+"/worker_slot="+h.check("worker_slot")]++
		}
		wantHTTP := http.StatusOK
		if h.Status == "down" {
			wantHTTP = http.StatusServiceUnavailable
		}
		switch {
		case h.Status != "ok" && h.Status != "degraded" && h.Status != "down":
			t.Errorf("%s /health status %q", ps[s.target].name, h.Status)
		case h.HTTP != wantHTTP:
			t.Errorf("%s /health %q answered HTTP %d, want %d", ps[s.target].name, h.Status, h.HTTP, wantHTTP)
		case h.Status == "ok" && (h.check("zookeeper") != "ok" || h.check("worker_slot") != "ok"):
			t.Errorf("%s /health ok with failing checks %+v", ps[s.target].name, h.Checks)
		case inOutage && h.Status == "ok":
			bad++
			if bad <= 5 {
				t.Errorf("%s /health ok at +%v, with no ZooKeeper quorum: %+v", ps[s.target].name, s.at.Sub(tKill).Round(time.Millisecond), h.Checks)
			}
		case inOutage && h.check("zookeeper") == "ok":
			t.Errorf("%s /health says the zookeeper session is ok at +%v, with no quorum", ps[s.target].name, s.at.Sub(tKill).Round(time.Millisecond))
		}
	}
	t.Logf("/health during the outage (from +%v): %v", notOKFrom.Sub(tKill), statuses)
	if len(statuses) == 0 {
		t.Error("no /health sample during the outage")
	}

	ictx, icancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer icancel()
	if err := checkDistinctInstances(ictx, c, ps); err != nil {
		t.Errorf("after recovery: %v", err)
	}
}

// Test 4b: like the freeze, but the process keeps running: it is cut off
// from ZooKeeper (a partition of this one client; the ensemble keeps its
// quorum) while it keeps receiving requests. ZooKeeper expires its session
// and a new process takes the slot; the cut-off process must have fenced
// itself before that, by its local lease (2/3 of the session timeout past
// the last answer it had): no ID with the old slot stamped later than the
// lease allows, 503 with Retry-After meanwhile, a new slot after the
// partition heals, never a duplicate.
func TestPartitionedInstanceFenced(t *testing.T) {
	e := zkEnsemble(t)
	c := newHTTPClient(t, true)
	root := zkRoot(t)
	proxy := startZKProxy(t, e.Addrs())
	ps := startCluster(t, c, e.ConnectString(), root, "idgen-a", "idgen-b")
	cut := startIdgen(t, "idgen-cut", procOpts{zk: proxy.connectString(), root: root})
	cut.waitReady(t, c, 60*time.Second)
	ps = append(ps, cut)
	const isolated = 2

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	fr := startFenceRun(ctx, t, c, e.Addrs(), root, ps, isolated, 20*time.Millisecond, "the partition")
	l, wOld := fr.l, fr.slot

	tPart, healOnce := fr.fault(t, "cut-off process", "the partition",
		func() error { proxy.partition(); return nil }, proxy.heal)
	tExpired := time.Now()

	// Its lease ran out long ago: it cannot stamp anything, whatever ranges
	// it holds, so it must refuse at once, not wait for a range claim that
	// cannot reach ZooKeeper (nor burn counters for IDs it will not issue).
	t.Run("fenced process refuses at once", func(t *testing.T) {
		for i := range 10 {
			r := generate(ctx, c, cut.url, isolated, 1000)
			l.record(r)
			if took := r.recv.Sub(r.sent); r.status != http.StatusServiceUnavailable || took > time.Second {
				t.Errorf("fenced process, batch %d of 1000 at +%v: %s after %v; want 503 at once (the lease ran out at +%v)",
					i, r.sent.Sub(tPart).Round(time.Millisecond), describe(&r), took.Round(time.Millisecond), sessionTimeout*2/3)
				break
			}
		}
	})
	const newcomer = 3
	d, wD := fr.newcomer(ctx, t, c, e.ConnectString(), root, newcomer)
	ps = append(ps, d)
	h, herr := getHealth(ctx, c, cut.url)
	time.Sleep(2 * time.Second) // both "own" the slot in the cut-off one's view, if it were not fenced

	tHeal := time.Now()
	healOnce()
	took, msg, ok := waitFor(30*time.Second, 100*time.Millisecond, func() (bool, string) {
		ws := l.workersOf(isolated)
		return len(ws) > 1, fmt.Sprintf("workers %v", ws)
	})
	if !ok {
		t.Errorf("cut-off process issued nothing with a new slot within 30s of the heal: %s", msg)
	} else {
		t.Logf("cut-off process issues with a new slot %v after the heal", took.Round(time.Millisecond))
	}
	time.Sleep(500 * time.Millisecond)
	fr.stop()

	l.check(t)
	if herr != nil || h.Status != "down" || h.check("worker_slot") != "down" {
		t.Errorf("cut-off process /health after its session expired: %+v %v; want down (worker_slot fenced)", h, herr)
	}
	lease := sessionTimeout * 2 / 3
	leaseEnd := uint64(tPart.Add(lease).UnixMilli()) + 100 // last answer came before the partition
	var refused, oldIDs, lateOld int
	newWorkers := map[uint16]int{}
	for _, r := range l.snapshot() {
		if r.target != isolated {
			continue
		}
		if r.status == http.StatusServiceUnavailable && r.sent.After(tPart) {
			refused++
		}
		for _, id := range r.ids {
			f := id.Decompose()
			if f.Worker != wOld {
				newWorkers[f.Worker]++
				if f.TimestampMS < uint64(tHeal.UnixMilli()) {
					t.Errorf("ID %s with worker %d stamped before the partition healed", id, f.Worker)
				}
				continue
			}
			oldIDs++
			if f.TimestampMS > leaseEnd {
				lateOld++
				if lateOld <= 5 {
					t.Errorf("ID %s carries the old slot %d, stamped %v after the partition (lease %v; session expired after %v)",
						id, wOld, time.Duration(f.TimestampMS-uint64(tPart.UnixMilli()))*time.Millisecond, lease, tExpired.Sub(tPart).Round(time.Millisecond))
				}
			}
		}
	}
	for w := range newWorkers {
		if w == wD {
			t.Errorf("cut-off process stamped worker %d, which the new process holds", w)
		}
	}
	if refused == 0 {
		t.Error("cut-off process never answered 503 while partitioned past its lease")
	}
	t.Logf("old slot %d: %d IDs, %d stamped after the lease; %d answers 503 after the partition; new workers %v; new process has slot %d",
		wOld, oldIDs, lateOld, refused, newWorkers, wD)
	var cutRs []genResult
	for _, r := range l.snapshot() {
		if r.target == isolated && r.sent.After(tPart) {
			cutRs = append(cutRs, r)
		}
	}
	t.Logf("cut-off process after the partition: %s; %s", latencies(cutRs, http.StatusOK), latencies(cutRs, http.StatusServiceUnavailable))
}
