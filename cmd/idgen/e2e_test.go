package main

// End-to-end tests of `idgen serve` as a child process: uniqueness across
// restarts and crashes, no acknowledged ID lost on SIGKILL or SIGTERM, and
// the deadline sweeper. Helpers are in e2e_helpers_test.go.

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	apidoc "github.com/idgen/idgen/api"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/reconcile"
	"github.com/idgen/idgen/shared/registry"
)

// TestRestartNeverRepeats issues 20k IDs, stops gracefully, restarts on the
// same data directory and issues 20k more: no (shard, counter) pair repeats,
// and the saga states of the first run survive.
func TestRestartNeverRepeats(t *testing.T) {
	s := startServer(t, serverOpts{})
	first := startIssueLoad(s.api(), 8, 20_000, nil)
	first.wait()
	first.checkClean(t)
	ids1 := first.all()
	if len(ids1) < 20_000 {
		t.Fatalf("first run: %d IDs acknowledged, want 20000", len(ids1))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := s.api()
	committed, compensated := first.ids[0][0], first.ids[1][0]
	if st, code, err := a.transition(ctx, "/commit", committed, ""); err != nil || code != http.StatusOK || st != "committed" {
		t.Fatalf("commit %s: %q %d %v", committed, st, code, err)
	}
	if st, code, err := a.transition(ctx, "/compensate", compensated, "e2e: before restart"); err != nil || code != http.StatusOK || st != "compensated" {
		t.Fatalf("compensate %s: %q %d %v", compensated, st, code, err)
	}

	if code, took := s.stop(25 * time.Second); code != 0 {
		t.Fatalf("SIGTERM: exit code %d after %v, want 0", code, took)
	}
	s.restart()
	a = s.api()

	second := startIssueLoad(a, 8, 20_000, nil)
	second.wait()
	second.checkClean(t)
	ids2 := second.all()
	checkUnique(t, ids1, ids2)
	_, max1 := counterRange(t, ids1)
	min2, max2 := counterRange(t, ids2)
	t.Logf("run 1: %d IDs, counters up to %d; run 2: %d IDs, counters %d..%d", len(ids1), max1, len(ids2), min2, max2)

	want := map[string]struct{ state, reason string }{
		committed:   {"committed", ""},
		compensated: {"compensated", "e2e: before restart"},
	}
	for id, w := range want {
		rec, code, err := a.get(ctx, id)
		if err != nil || code != http.StatusOK {
			t.Fatalf("after restart GET /ids/%s: %d %v", id, code, err)
		}
		last := rec.History[len(rec.History)-1]
		if rec.State != w.state || last.State != w.state || last.Reason != w.reason || rec.History[0].State != "pending" {
			t.Errorf("after restart %s: state %q history %+v, want %s (reason %q) after pending", id, rec.State, rec.History, w.state, w.reason)
		}
		f := mustParse(t, id).Decompose()
		if rec.Counter != f.Counter || rec.Shard != f.Shard || rec.Worker != f.Worker || rec.IssuedAt == nil {
			t.Errorf("after restart %s: fields %+v, want %+v and issued_at", id, rec, f)
		}
	}
	rest := slices.DeleteFunc(sample(first.ids, 1000, 20), func(id string) bool { return id == committed || id == compensated })
	checkRegistered(t, a, rest, "pending")

	// Every counter of both runs' claims is accounted for: the first run's
	// unissued rest released at its shutdown, the second's held.
	rep := reconciled(t, a)
	tot := rep.Totals
	if tot.Issued != uint64(len(ids1)+len(ids2)) || tot.Committed != 1 || tot.Compensated != 1 || tot.CompensatedBy[reconcile.ByClient] != 1 {
		t.Errorf("reconciliation totals %+v, want %d issued, 1 committed, 1 compensated by a client", tot, len(ids1)+len(ids2))
	}
	if tot.NotIssued[registry.ReleasedAtShutdown]+tot.NotIssued[registry.ReleasedPrefetch] == 0 || tot.NotIssued[reconcile.Held] == 0 || tot.NotIssued[reconcile.Abandoned] != 0 {
		t.Errorf("reconciliation: not issued %v, want released at shutdown, held, and nothing abandoned", tot.NotIssued)
	}
}

// TestKillMidLoadLosesNoAcknowledgedID SIGKILLs the service under load from
// 8 goroutines: after a restart on the same data directory every ID that was
// answered with 200 is in the registry, and no (shard, counter) repeats.
func TestKillMidLoadLosesNoAcknowledgedID(t *testing.T) {
	s := startServer(t, serverOpts{})
	p := s.p
	ld := startIssueLoad(s.api(), 8, 0, p.Exited)
	ld.waitFor(t, 1000, 10*time.Second)
	time.Sleep(time.Second)
	s.kill()
	if sig, ok := p.Signaled(); !ok || sig.String() != "killed" {
		t.Fatalf("the service did not die of SIGKILL (signaled %v %v)", ok, sig)
	}
	time.Sleep(100 * time.Millisecond) // let every worker hit the dead service
	ld.stop()
	ld.checkClean(t)
	if ld.connErrs == 0 || ld.afterExit == 0 {
		t.Errorf("the load did not see the kill: %d connection errors, %d requests after exit", ld.connErrs, ld.afterExit)
	}
	if ld.okAfterExt > 0 {
		t.Errorf("%d requests sent after the process died were answered 200", ld.okAfterExt)
	}
	before := ld.all()

	s.restart()
	a := s.api()
	after := startIssueLoad(a, 4, 5_000, nil)
	after.wait()
	after.checkClean(t)
	checkUnique(t, before, after.all())
	_, maxBefore := counterRange(t, before)
	minAfter, _ := counterRange(t, after.all())
	t.Logf("%d IDs acknowledged before SIGKILL (%d requests failed: %v), counters up to %d; after restart from %d",
		len(before), ld.connErrs, ld.errKinds, maxBefore, minAfter)
	checkRegistered(t, a, sample(ld.ids, 3000, 50), "pending")

	// The killed run released nothing: its rest is abandoned, and every ID
	// it answered is among the issued counters.
	rep := reconciled(t, a)
	if tot := rep.Totals; tot.NotIssued[reconcile.Abandoned] == 0 || tot.Issued < uint64(len(before)+len(after.all())) {
		t.Errorf("reconciliation after SIGKILL: %d issued, not issued %v; want at least %d issued and an abandoned rest", tot.Issued, tot.NotIssued, len(before)+len(after.all()))
	}
}

// TestGracefulShutdownUnderLoad sends SIGTERM under load from 8 goroutines:
// exit 0 within the grace period, every answered ID registered, readiness
// never back up once it went down, and nothing answered after the exit.
func TestGracefulShutdownUnderLoad(t *testing.T) {
	const grace = 10 * time.Second
	s := startServer(t, serverOpts{args: []string{"--shutdown-grace", grace.String()}})
	p := s.p
	ld := startIssueLoad(s.api(), 8, 0, p.Exited)
	ld.waitFor(t, 1000, 10*time.Second)
	probe := startReadyProbe(s.url("/health/ready"))
	time.Sleep(300 * time.Millisecond)
	stderr := p.Stderr
	code, took := s.stop(grace + 5*time.Second)
	time.Sleep(200 * time.Millisecond) // requests after the exit
	ld.stop()
	ready := probe.stop()

	if code != 0 || took > grace {
		t.Errorf("SIGTERM under load: exit code %d after %v, want 0 within %v", code, took, grace)
	}
	ld.checkClean(t)
	if ld.afterExit == 0 {
		t.Errorf("no request was sent after the exit")
	}
	if ld.okAfterExt > 0 {
		t.Errorf("%d requests sent after the exit were answered 200", ld.okAfterExt)
	}
	if len(ready) == 0 || ready[0] != http.StatusOK {
		t.Fatalf("readiness before SIGTERM: %v, want 200 first", ready)
	}
	down := slices.IndexFunc(ready, func(c int) bool { return c != http.StatusOK })
	if down < 0 {
		t.Errorf("readiness never went down: %d answers, all 200", len(ready))
	} else if i := slices.Index(ready[down:], http.StatusOK); i >= 0 {
		t.Errorf("readiness back to 200 after it went down: %v", ready[down:down+i+1])
	}
	saw503 := slices.Contains(ready, http.StatusServiceUnavailable)
	log := stderr()
	for _, want := range []string{"shutdown: draining in-flight requests", "requests drained", "registry flushed and closed"} {
		if !strings.Contains(log, want) {
			t.Errorf("shutdown log lacks %q", want)
		}
	}
	if strings.Contains(log, "grace period over") {
		t.Errorf("the drain ran out of its grace period")
	}
	if p := problems(log, ""); len(p) > 0 {
		t.Errorf("%d warn/error lines in the log of a clean run, first: %s", len(p), p[0])
	}
	t.Logf("SIGTERM: exit %d after %v; %d IDs acknowledged, %d requests failed (%d sent after exit; %v); readiness 503 seen during drain: %v",
		code, took, ld.total.Load(), ld.connErrs, ld.afterExit, ld.errKinds, saw503)

	s.restart()
	a := s.api()
	more, _, err := a.generate(context.Background(), `{"count": 1000}`)
	if err != nil {
		t.Fatal(err)
	}
	checkUnique(t, ld.all(), more)
	checkRegistered(t, a, sample(ld.ids, 3000, 50), "pending")
}

// TestDeadlineSweeper: IDs with timeout_ms are compensated (reason
// "timeout") once past their deadline unless committed first; the deadline
// survives a restart.
func TestDeadlineSweeper(t *testing.T) {
	s := startServer(t, serverOpts{})
	a := s.api()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gen := func(body string) []string {
		t.Helper()
		ids, code, err := a.generate(ctx, body)
		if err != nil || code != http.StatusOK {
			t.Fatalf("generate %s: %d %v", body, code, err)
		}
		return ids
	}
	issued := time.Now()
	expiring := append(gen(`{"timeout_ms": 300}`), gen(`{"count": 3, "timeout_ms": 300}`)...)
	kept := gen(`{"timeout_ms": 300}`)[0]
	plain := gen(`{}`)[0]
	if st, code, err := a.transition(ctx, "/commit", kept, ""); err != nil || code != http.StatusOK || st != "committed" {
		t.Fatalf("commit %s: %q %d %v", kept, st, code, err)
	}

	for _, id := range expiring {
		rec := waitState(t, a, id, "compensated", issued.Add(3*time.Second))
		last := rec.History[len(rec.History)-1]
		if last.State != "compensated" || last.Reason != "timeout" || last.Actor != "system" || rec.Deadline == "" {
			t.Errorf("%s swept: deadline %q history %+v, want a last step compensated/timeout/system", id, rec.Deadline, rec.History)
		}
	}
	t.Logf("all %d expiring IDs compensated %v after issue", len(expiring), time.Since(issued).Round(time.Millisecond))
	if _, code, _ := a.transition(ctx, "/commit", expiring[0], ""); code != http.StatusConflict {
		t.Errorf("commit of a swept ID: %d, want 409", code)
	}

	time.Sleep(1200 * time.Millisecond) // at least one more sweep
	for id, want := range map[string]string{kept: "committed", plain: "pending"} {
		rec, code, err := a.get(ctx, id)
		if err != nil || code != http.StatusOK || rec.State != want {
			t.Errorf("%s: %d %q %v, want %s", id, code, rec.State, err, want)
		}
		for _, st := range rec.History {
			if st.State == "compensated" {
				t.Errorf("%s: compensated although %s: %+v", id, want, rec.History)
			}
		}
	}

	// A deadline set before a restart is still swept after it.
	late := gen(`{"timeout_ms": 1500}`)[0]
	issued = time.Now()
	if code, took := s.stop(15 * time.Second); code != 0 {
		t.Fatalf("SIGTERM: exit code %d after %v", code, took)
	}
	s.restart()
	a = s.api()
	rec := waitState(t, a, late, "compensated", issued.Add(5*time.Second))
	if last := rec.History[len(rec.History)-1]; last.Reason != "timeout" {
		t.Errorf("%s swept after restart: history %+v, want reason timeout", late, rec.History)
	}
}

// TestDeadlineSweeperKeepsUp: five full batches (5 x 1000 IDs) with
// timeout_ms are swept within the same bound as a single ID: the sweeper
// compensates a page concurrently, so its transitions share group commits,
// and takes the next page at once while a full page came back.
func TestDeadlineSweeperKeepsUp(t *testing.T) {
	const batches, bound = 5, 3 * time.Second
	s := startServer(t, serverOpts{})
	a := s.api()
	var expiring []string
	issued := time.Now()
	for range batches {
		ids, code, err := a.generate(context.Background(), `{"count": 1000, "timeout_ms": 300}`)
		if err != nil || code != http.StatusOK {
			t.Fatalf("generate: %d %v", code, err)
		}
		expiring = append(expiring, ids...)
	}
	// The sweeper goes by deadline, then ID: the last ID is swept last.
	last, swept := expiring[len(expiring)-1], false
	for deadline := issued.Add(bound); !swept && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		rec, code, err := a.get(context.Background(), last)
		if err != nil || code != http.StatusOK {
			t.Fatalf("GET /ids/%s: %d %v", last, code, err)
		}
		swept = rec.State == "compensated"
	}
	took := time.Since(issued).Round(time.Millisecond)
	if !swept {
		t.Errorf("%d IDs with timeout_ms 300 not all compensated %v after issue; the count still pending follows (checked later, while the sweeper goes on)", len(expiring), took)
	} else {
		t.Logf("%d expiring IDs compensated within %v of issue", len(expiring), took)
	}
	checkRegistered(t, a, expiring, "compensated")
}

// TestShutdownDuringSweepIsQuiet: a SIGTERM while the sweeper works
// through expired IDs exits 0 without a warning per ID: a page stops when
// the sweeper's context ends, and errors the cancellation causes are not
// logged.
func TestShutdownDuringSweepIsQuiet(t *testing.T) {
	s := startServer(t, serverOpts{})
	a := s.api()
	var first string
	for range 3 {
		ids, code, err := a.generate(context.Background(), `{"count": 1000, "timeout_ms": 100}`)
		if err != nil || code != http.StatusOK {
			t.Fatalf("generate: %d %v", code, err)
		}
		first = cmp.Or(first, ids[0])
	}
	// The sweeper takes the oldest deadline first: once the first ID is
	// compensated, a sweep of 3000 IDs is under way.
	waitState(t, a, first, "compensated", time.Now().Add(5*time.Second))
	stderr := s.p.Stderr
	code, took := s.stop(15 * time.Second)
	if code != 0 {
		t.Errorf("SIGTERM during a sweep: exit code %d after %v, want 0", code, took)
	}
	if p := problems(stderr(), "shutdown: draining in-flight requests"); len(p) > 0 {
		t.Errorf("%d warn/error lines during a clean shutdown (exit after %v), first: %s", len(p), took, p[0])
	}
}

// waitState polls GET /ids/{id} until it shows state, or fails t at deadline.
func waitState(t *testing.T, a api, id, state string, deadline time.Time) apidoc.IDRecord {
	t.Helper()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rec, code, err := a.get(ctx, id)
		cancel()
		if err != nil || code != http.StatusOK {
			t.Fatalf("GET /ids/%s: %d %v", id, code, err)
		}
		if rec.State == state {
			return rec
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still %s at the deadline, want %s (history %+v)", id, rec.State, state, rec.History)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustParse(t *testing.T, s string) idcodec.ID {
	t.Helper()
	id, err := idcodec.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
