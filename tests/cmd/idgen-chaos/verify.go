package main

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/idgen/idgen/shared/platform/backoff"

	"go.uber.org/zap"

	"github.com/idgen/idgen/functions/failurestream"
	"github.com/idgen/idgen/shared/reconcile"
	"github.com/idgen/idgen/shared/registry/redisstore"
)

// summary is what the final line reports.
type summary struct {
	ids, compensated, registryReads, auditLines, tornAudit int
	faultsRun, faultsRecovered                             int
	commitUnaudited                                        int // committed IDs without a commit audit entry (not a violation)
	auditRepeats                                           int // entries repeated in the crash window (not a violation)
	quiets, quietRequests, streams                         int // extent of the wrong-200 and timestamp-order checks
	reconciled                                             string
	violations                                             []Violation
}

func (s *summary) count(kind string) int {
	n := 0
	for _, v := range s.violations {
		if v.Kind == kind {
			n++
		}
	}
	return n
}

// verify runs the checks after the load: it lets the saga settle (failure
// events confirmed and consumed, deadlines swept), reads every acknowledged
// ID back from Redis, stops the instances and workers so that their audit
// logs are complete, counts audit entries, and checks the answers.
func (r *run) verify(ctx context.Context) summary {
	s := summary{}
	loadStopped := time.Now()
	if !r.ev.Drain(90 * time.Second) {
		r.logf("some failure events were never confirmed by WAIT; they count as maybe applied")
	}
	if err := r.waitDrained(ctx, 2*time.Minute); err != nil {
		r.l.violate(vStream, "%v", err)
	}
	r.checkDeadLetters(ctx)
	// Deadlines are at most 6 s after issue; the sweepers run every second.
	if rest := 9*time.Second - time.Since(loadStopped); rest > 0 {
		backoff.Sleep(ctx, rest)
	}

	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	store, err := redisstore.Open(octx, redisstore.Config{
		Addrs: r.c.redis.SentinelAddrs(), MasterName: r.c.redis.MasterName(), Logger: zap.NewNop(), PoolSize: 64,
	})
	cancel()
	var rc registryCheck
	if err != nil {
		r.l.violate(vCheck, "open the registry to verify it: %v", err)
	} else {
		t0 := time.Now()
		rc = checkRegistry(ctx, r.l, store, 48, 45*time.Second)
		_ = store.Close()
		s.registryReads = rc.reads
		r.logf("registry: %d reads in %v", rc.reads, time.Since(t0).Round(time.Millisecond))
		for _, v := range rc.violations {
			r.l.violate(v.Kind, "%s", v.Detail)
		}
	}

	// Audit logs are complete once their writers have exited.
	for _, p := range append(r.c.workers, r.c.procs()...) {
		if err := p.Terminate(30 * time.Second); err != nil {
			r.l.violate(vCheck, "stop %s: %v", p.name, err)
		}
	}
	a, err := readAudit(filepath.Join(r.c.dir, "audit"))
	if err != nil {
		r.l.violate(vCheck, "read the audit logs: %v", err)
	} else if rc.final != nil {
		n, unaudited, repeats, vs := checkAudit(r.l, rc, a)
		s.compensated, s.commitUnaudited, s.auditRepeats = n, unaudited, repeats
		for _, v := range vs {
			r.l.violate(v.Kind, "%s", v.Detail)
		}
	}
	s.auditLines, s.tornAudit = a.lines, len(a.torn)
	r.reconcile(ctx, &s)
	for _, t := range a.torn {
		r.logf("audit line that is not JSON (a write cut by SIGKILL?): %.200s", t)
	}

	results := r.l.Results()
	qv, inside := checkQuiets(results, r.quiets)
	for _, v := range qv {
		r.l.violate(v.Kind, "%s", v.Detail)
	}
	mv, streams := checkMonotonic(results)
	for _, v := range mv {
		r.l.violate(v.Kind, "%s", v.Detail)
	}
	s.quiets, s.quietRequests, s.streams = len(r.quiets), inside, streams
	s.faultsRun, s.faultsRecovered = faultCounts(r.wins)
	for _, w := range r.wins {
		if w.n == 0 {
			continue
		}
		st := statsOf(results, w.from, w.to)
		if w.floor > 0 && st.lbRequests >= 20 && st.lbAvail() < w.floor {
			r.l.violate(vAvailability, "fault %d (%s): %.1f%% of /generate through HAProxy answered 200, below the floor of %.0f%%",
				w.n, w.name, 100*st.lbAvail(), 100*w.floor)
		}
	}
	s.ids = r.l.Count()
	if s.ids < r.cfg.MinIDs {
		r.l.violate(vVolume, "%d IDs acknowledged, want at least %d (-min-ids)", s.ids, r.cfg.MinIDs)
	}
	s.violations = r.l.Violations()
	return s
}

// procs returns the instances' processes.
func (c *cluster) procs() []*process {
	var out []*process
	for _, in := range c.insts {
		out = append(out, in.process)
	}
	return out
}

// checkDeadLetters reports every failure event moved to the dead-letter
// stream: a valid event that was never applied.
func (r *run) checkDeadLetters(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	entries, err := r.ev.rdb.XRange(cctx, failurestream.DefaultStream+failurestream.DLQSuffix, "-", "+").Result()
	if err != nil {
		r.l.violate(vCheck, "read the dead-letter stream: %v", err)
		return
	}
	for _, e := range entries {
		r.l.violate(vDeadLetter, "failure event dead-lettered: %v", e.Values)
	}
}

// checkQuiets finds 200 answers to /generate sent inside a quiet interval
// and received before it ended; it also returns how many requests were
// sent and answered inside the intervals.
func checkQuiets(results []result, quiets []quiet) (out []Violation, inside int) {
	for _, q := range quiets {
		if !q.from.Before(q.to) {
			continue
		}
		var bad []string
		for _, res := range results {
			if res.kind != "generate" || res.sent.Before(q.from) || !res.recv.Before(q.to) || (q.who != "" && res.backend != q.who && res.via != q.who) {
				continue
			}
			inside++
			if res.status == http.StatusOK {
				bad = append(bad, fmt.Sprintf("%s via %s at %s", res.backend, res.via, res.sent.Format(timeFmt)))
			}
		}
		if len(bad) > 0 {
			who := "any instance"
			if q.who != "" {
				who = q.who
			}
			out = append(out, Violation{vWrong200, fmt.Sprintf("%d /generate sent to %s in %s..%s (%s) answered 200, e.g. %s",
				len(bad), who, q.from.Format(timeFmt), q.to.Format(timeFmt), q.why, strings.Join(bad[:min(3, len(bad))], ", "))})
		}
	}
	return out, inside
}

// checkMonotonic checks that, within one life of one instance, a /generate
// sent after another was answered never gets an earlier timestamp (the
// instance's clock is max(now, last): it never goes back, whatever the
// wall clock does). Only direct requests know their instance life.
func checkMonotonic(results []result) (out []Violation, groupsChecked int) {
	type key struct {
		via  string
		life int
	}
	groups := map[key][]result{}
	for _, r := range results {
		if r.kind == "generate" && r.via != "lb" && r.status == http.StatusOK && r.ids > 0 {
			k := key{r.via, r.life}
			groups[k] = append(groups[k], r)
		}
	}
	for k, rs := range groups {
		slices.SortFunc(rs, func(a, b result) int { return a.recv.Compare(b.recv) })
		prefix := make([]uint64, len(rs)) // highest timestamp answered up to i
		for i, r := range rs {
			prefix[i] = r.maxTS
			if i > 0 {
				prefix[i] = max(prefix[i], prefix[i-1])
			}
		}
		bad := 0
		var first string
		for _, r := range rs {
			// The last answer received before r was sent.
			j, _ := slices.BinarySearchFunc(rs, r.sent, func(a result, t time.Time) int { return a.recv.Compare(t) })
			if j > 0 && prefix[j-1] > r.minTS {
				if bad == 0 {
					first = fmt.Sprintf("sent at %s, stamped %d ms before an answer received earlier", r.sent.Format(timeFmt), prefix[j-1]-r.minTS)
				}
				bad++
			}
		}
		if bad > 0 {
			out = append(out, Violation{vMonotonic, fmt.Sprintf("%s life %d: %d answers carry a timestamp below one answered before they were sent, e.g. %s", k.via, k.life, bad, first)})
		}
	}
	return out, len(groups)
}

// reconcile accounts for every counter of every range claimed in the run,
// once every instance has stopped (so their releases are written): each
// violation of the report, an unaccounted counter, or an acknowledged ID
// that the report does not count as issued is a violation of the run. A
// deep report follows, which checks the state maps against every record:
// it must find no mismatch.
func (r *run) reconcile(ctx context.Context, s *summary) {
	octx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	store, err := redisstore.Open(octx, redisstore.Config{
		Addrs: r.c.redis.SentinelAddrs(), MasterName: r.c.redis.MasterName(), Logger: zap.NewNop(),
	})
	if err != nil {
		r.l.violate(vCheck, "open the registry to reconcile: %v", err)
		return
	}
	defer store.Close()
	t0 := time.Now()
	rep, err := reconcile.Run(octx, store, reconcile.Query{ToMS: time.Now().UnixMilli(), SharedLedger: true})
	if err != nil {
		r.l.violate(vCheck, "reconcile: %v", err)
		return
	}
	for _, v := range rep.Violations {
		r.l.violate(vReconcile, "%s [%d, %d) %s: %s", v.Kind, v.Start, v.End, v.ID, v.Detail)
	}
	t := rep.Totals
	if t.Unaccounted != 0 {
		r.l.violate(vReconcile, "%d counters counted more than once", -t.Unaccounted)
	}
	if acked := r.l.Count(); t.Issued < uint64(acked) {
		r.l.violate(vReconcile, "%d counters issued in the recorded claims, fewer than the %d IDs acknowledged", t.Issued, acked)
	}
	s.reconciled = fmt.Sprintf("reconciliation (%v): %d claims, %d counters: %d issued (%d pending, %d committed, %d compensated by %v), %d tombstones, not issued %v; %d gaps, %d violations, %d unaccounted",
		time.Since(t0).Round(time.Millisecond), len(rep.Claims), t.Size, t.Issued, t.Pending, t.Committed, t.Compensated, t.CompensatedBy, t.Tombstones, t.NotIssued,
		len(rep.Gaps), len(rep.Violations), -t.Unaccounted)
	r.logf("%s", s.reconciled)
	t0 = time.Now()
	deep, err := reconcile.Run(octx, store, reconcile.Query{ToMS: rep.ToMS, SharedLedger: true, Deep: true})
	if err != nil {
		r.l.violate(vCheck, "deep reconcile: %v", err)
		return
	}
	for _, v := range deep.Violations {
		if v.Kind == reconcile.StateMapMismatch || v.Kind == reconcile.ForeignRecord {
			r.l.violate(vReconcile, "deep: %s [%d, %d) %s: %s", v.Kind, v.Start, v.End, v.ID, v.Detail)
		}
	}
	r.logf("deep reconciliation (%v): %d violations", time.Since(t0).Round(time.Millisecond), len(deep.Violations))
}
