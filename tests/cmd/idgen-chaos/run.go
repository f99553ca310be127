package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/idgen/idgen/shared/platform/backoff"

	"github.com/idgen/idgen/functions/failurestream"
	"github.com/idgen/idgen/harness/proc"
)

// window is a stretch of the run the table reports on: the steady state,
// or one fault from its injection until the service recovered.
type window struct {
	n        int // fault number; 0 for steady state
	name     string
	from, to time.Time
	notes    []string
	floor    float64 // minimum availability through HAProxy; 0: none
	failed   bool    // the fault could not be injected or did not recover
	mu       sync.Mutex
}

// faultCounts counts the fault windows of wins (the steady state is none)
// and those whose fault was injected and recovered.
func faultCounts(wins []*window) (run, recovered int) {
	for _, w := range wins {
		if w.n == 0 {
			continue
		}
		run++
		if !w.failed {
			recovered++
		}
	}
	return run, recovered
}

// note adds a note; a fault that acts on several instances at once notes
// from each.
func (w *window) note(format string, args ...any) {
	w.mu.Lock()
	w.notes = append(w.notes, fmt.Sprintf(format, args...))
	w.mu.Unlock()
}

// quiet is an interval in which no /generate sent inside it may be answered
// 200 (by who, or anyone): the fault makes issuing impossible, so a 200
// would be a wrong one.
type quiet struct {
	from, to time.Time
	who      string
	why      string
}

// run is one chaos run: the cluster, the load and what the faults noted.
type run struct {
	cfg    *Config
	c      *cluster
	d      *driver
	l      *Ledger
	ev     *eventSender
	logf   func(string, ...any)
	wins   []*window
	quiets []quiet
	mu     sync.Mutex
}

// lease is the worker-slot lease of the instances: 2/3 of the session
// timeout.
func (r *run) lease() time.Duration { return r.cfg.Session * 2 / 3 }

func (r *run) addQuiet(q quiet) {
	r.mu.Lock()
	r.quiets = append(r.quiets, q)
	r.mu.Unlock()
}

// faultDef is one fault of a phase P (the cluster's *run, the embedded
// *opsPhase): fn injects it and heals it; the phase then waits for
// recovery. An error means the fault could not be injected as intended.
type faultDef[P any] struct {
	n     int
	name  string
	floor float64 // minimum availability through HAProxy; 0: none
	fn    func(ctx context.Context, p P, w *window) error
}

// faults are the eleven faults, in the order they run.
var faults = []faultDef[*run]{
	{1, "idgen SIGKILL + restart", 0.5, faultKillIdgen},
	{2, "idgen SIGSTOP past session timeout", 0.5, faultFreezeIdgen},
	{3, "ZooKeeper leader SIGKILL", 0.5, faultKillZKLeader},
	{4, "ZooKeeper quorum loss", 0, faultQuorumLoss},
	{5, "idgen↔ZooKeeper partition", 0.5, faultPartition},
	{6, "lost replies to range claims", 0.5, faultLostReplies},
	{7, "Redis primary SIGKILL → failover", 0, faultRedisFailover},
	{8, "Redis unavailable", 0, faultRedisDown},
	{9, "compensate worker SIGKILL", 0.5, faultKillWorker},
	{10, "Redis link latency + loss", 0.5, faultRedisLink},
	{11, "wall clock steps back", 0.5, faultClockStep},
}

// execute runs the load and the selected faults, one after another with
// recovery between, then stops the load.
func (r *run) execute(ctx context.Context) {
	r.d.Start(ctx)
	r.ev.Start()
	r.wins = runFaults(ctx, r, faults, phaseRun{cfg: r.cfg, warmup: r.cfg.Warmup, violate: r.l.violate, logf: r.logf, recovered: r.waitRecovered})
	r.d.Stop(40 * time.Second)
}

// phaseRun is how runFaults runs the faults of one phase.
type phaseRun struct {
	cfg     *Config
	label   string        // prefix of the steady windows' names
	warmup  time.Duration // the steady window before the first fault
	violate func(kind, format string, args ...any)
	logf    func(format string, args ...any)
	// recovered returns when the service recovered from what happened
	// since, with the moment, or fails after timeout.
	recovered func(ctx context.Context, since time.Time, timeout time.Duration) (time.Time, error)
}

// runFaults runs the windows of a phase under load and returns them: a
// steady window of ph.warmup; each fault that ph.cfg selects, in order, in
// a window of its own (injectAndRecover); a steady window of Settle after
// the faults. No fault is injected after ctx ends or after one the service
// did not recover from.
func runFaults[P any](ctx context.Context, p P, faults []faultDef[P], ph phaseRun) []*window {
	steady := &window{name: ph.label + "steady (no fault)", from: time.Now()}
	wins := []*window{steady}
	backoff.Sleep(ctx, ph.warmup)
	steady.to = time.Now()
	for _, f := range faults {
		if !ph.cfg.runs(f.n) || ctx.Err() != nil {
			continue
		}
		w := &window{n: f.n, name: f.name, floor: f.floor, from: time.Now()}
		wins = append(wins, w)
		if !injectAndRecover(ctx, w, ph, func() error { return f.fn(ctx, p, w) }) {
			break
		}
	}
	last := &window{name: ph.label + "steady (after the faults)", from: time.Now()}
	wins = append(wins, last)
	backoff.Sleep(ctx, ph.cfg.Settle)
	last.to = time.Now()
	return wins
}

// injectAndRecover runs one fault of window w: inject, then the wait for
// recovery (ph.recovered, within Recovery), then a pause of Settle. A
// failed injection or recovery is a violation. It reports whether the run
// goes on: not when ctx ended (interrupted or out of time: nothing more to
// inject) nor when the service did not recover (the rest would run on a
// broken service).
func injectAndRecover(ctx context.Context, w *window, ph phaseRun, inject func() error) bool {
	ph.logf("fault %d: %s", w.n, w.name)
	err := inject()
	if ctx.Err() != nil {
		w.to = time.Now()
		return false
	}
	if err != nil {
		w.failed = true
		ph.violate(vFault, "fault %d (%s): %v", w.n, w.name, err)
		ph.logf("fault %d: %v", w.n, err)
	}
	at, err := ph.recovered(ctx, time.Now(), ph.cfg.Recovery)
	w.to = at
	if ctx.Err() != nil {
		return false
	}
	if err != nil {
		w.failed = true
		ph.violate(vRecovery, "fault %d (%s): %v", w.n, w.name, err)
		ph.logf("fault %d: not recovered: %v", w.n, err)
		return false
	}
	ph.logf("fault %d: recovered %v after injection; %s", w.n, at.Sub(w.from).Round(time.Millisecond), strings.Join(w.notes, "; "))
	backoff.Sleep(ctx, ph.cfg.Settle)
	return true
}

// waitRecovered waits until every instance says /health "ok", every
// compensate worker runs, and each instance has answered 200 through
// HAProxy to a /generate sent after since (no direct request is sent to
// help it: an instance that only a direct request would revive stays out
// of the rotation, and that is a failure to recover).
func (r *run) waitRecovered(ctx context.Context, since time.Time, timeout time.Duration) (time.Time, error) {
	return waitRecovered(ctx, timeout, 250*time.Millisecond, func() string { return r.recoveredNow(ctx, since) })
}

// waitRecovered polls notYet every interval until it returns "" (then it
// returns the moment), timeout passes or ctx ends (then the error says
// what notYet said last).
func waitRecovered(ctx context.Context, timeout, interval time.Duration, notYet func() string) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		why := notYet()
		if why == "" {
			return time.Now(), nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return time.Now(), fmt.Errorf("not recovered within %v: %s", timeout, why)
		}
		backoff.Sleep(ctx, interval)
	}
}

// recoveredNow returns why the cluster is not recovered, "" if it is.
func (r *run) recoveredNow(ctx context.Context, since time.Time) string {
	for _, w := range r.c.workers {
		if w.Exited() {
			return w.name + " is not running"
		}
	}
	served := map[string]bool{}
	for _, res := range r.l.resultsSince(since) {
		if res.via == "lb" && res.status == http.StatusOK {
			served[res.backend] = true
		}
	}
	for _, in := range r.c.insts {
		code, h, err := r.c.health(ctx, in)
		switch {
		case err != nil:
			return fmt.Sprintf("%s /health: %v", in.name, err)
		case code != http.StatusOK || h.Status != "ok":
			return fmt.Sprintf("%s /health %d %s %v", in.name, code, h.Status, h.Checks)
		case !served[in.name]:
			return in.name + " has not answered 200 through HAProxy yet"
		}
	}
	return ""
}

// resultsSince returns the results of requests sent at or after t.
func (l *Ledger) resultsSince(t time.Time) []result {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []result
	for i := len(l.results) - 1; i >= 0; i-- {
		if l.results[i].sent.Before(t) {
			if t.Sub(l.results[i].sent) > time.Minute {
				break // results are appended roughly in send order
			}
			continue
		}
		out = append(out, l.results[i])
	}
	return out
}

// streamState is the consumer group's progress on the failure stream.
func (r *run) streamState(ctx context.Context) (lag, pending, dlq int64, err error) {
	gs, err := r.ev.rdb.XInfoGroups(ctx, failurestream.DefaultStream).Result()
	if err != nil {
		return 0, 0, 0, err
	}
	for _, g := range gs {
		if g.Name == failurestream.DefaultGroup {
			lag, pending = g.Lag, g.Pending
		}
	}
	dlq, err = r.ev.rdb.XLen(ctx, failurestream.DefaultStream+failurestream.DLQSuffix).Result()
	return lag, pending, dlq, err
}

// waitDrained waits until the compensate workers consumed and acknowledged
// every failure event.
func (r *run) waitDrained(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		lag, pending, _, err := r.streamState(cctx)
		cancel()
		if err == nil && lag == 0 && pending == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("failure stream not drained after %v: lag %d, pending %d (%v)", timeout, lag, pending, err)
		}
		backoff.Sleep(ctx, 200*time.Millisecond)
	}
}

// newHTTPClients returns the client for HAProxy (bounded by its worst case)
// and for direct requests.
func newHTTPClients(workers int) (lb, direct *http.Client) {
	return proc.NewClient(workers*2, defaultHAProxyTimeouts.worstCase()), proc.NewClient(32, 15*time.Second)
}
