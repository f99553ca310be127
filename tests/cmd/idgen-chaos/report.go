package main

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// winStats describes the /generate requests sent in a window. The lb
// figures are those of the main load (stream -1): through HAProxy in the
// cluster, straight to the instance in the embedded phase.
type winStats struct {
	requests, ok, refused, other, noAnswer int
	lbRequests, lbOK                       int
	ids                                    int
	p99                                    time.Duration
}

func (s winStats) lbAvail() float64 {
	if s.lbRequests == 0 {
		return 1
	}
	return float64(s.lbOK) / float64(s.lbRequests)
}

// statsOf summarizes the /generate requests sent in [from, to).
func statsOf(results []result, from, to time.Time) winStats {
	var (
		s   winStats
		lat []time.Duration
	)
	for _, r := range results {
		if r.kind != "generate" || r.sent.Before(from) || !r.sent.Before(to) {
			continue
		}
		s.requests++
		lat = append(lat, r.recv.Sub(r.sent))
		switch r.status {
		case http.StatusOK:
			s.ok++
			s.ids += r.ids
		case http.StatusServiceUnavailable:
			s.refused++
		case 0:
			s.noAnswer++
		default:
			s.other++
		}
		if r.stream < 0 {
			s.lbRequests++
			if r.status == http.StatusOK {
				s.lbOK++
			}
		}
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		s.p99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return s
}

// printTable writes one row per window and a total.
func printTable(w io.Writer, wins []*window, results []result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "fault\t\twindow\trequests\t200\t503\tother\tno answer\tload avail\tp99\tIDs\t")
	var total winStats
	var from, to time.Time
	for _, win := range wins {
		st := statsOf(results, win.from, win.to)
		label := "-"
		if win.n > 0 {
			label = fmt.Sprint(win.n)
		}
		name := win.name
		if win.failed {
			name += " (FAILED)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%.1f%%\t%s\t%d\t\n", label, name+" ",
			win.to.Sub(win.from).Round(100*time.Millisecond), st.requests, st.ok, st.refused, st.other, st.noAnswer,
			100*st.lbAvail(), st.p99.Round(time.Millisecond), st.ids)
		if from.IsZero() || win.from.Before(from) {
			from = win.from
		}
		if win.to.After(to) {
			to = win.to
		}
	}
	total = statsOf(results, from, to.Add(time.Hour))
	fmt.Fprintf(tw, "all\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%.1f%%\t%s\t%d\t\n", "whole run ", to.Sub(from).Round(100*time.Millisecond),
		total.requests, total.ok, total.refused, total.other, total.noAnswer, 100*total.lbAvail(), total.p99.Round(time.Millisecond), total.ids)
	tw.Flush()
	noAnswers := map[string]int{}
	for _, r := range results {
		if r.kind == "generate" && r.status == 0 {
			noAnswers[r.via+": "+shortErr(r.err)]++
		}
	}
	for e, n := range noAnswers {
		why := ""
		if e == "lb: EOF" {
			// HAProxy 2.6 logs these "<NOSRV> 503, 0 bytes, SC--".
			why = " (HAProxy closes the connection when a retry after a 503 finds no backend up)"
		}
		fmt.Fprintf(w, "  no answer ×%d: %s%s\n", n, e, why)
	}
	for _, win := range wins {
		if len(win.notes) > 0 {
			fmt.Fprintf(w, "  fault %d: %s\n", win.n, strings.Join(win.notes, "; "))
		}
	}
}

// printViolations writes up to perKind examples of each kind.
func printViolations(w io.Writer, vs []Violation, perKind int) {
	byKind := map[string][]Violation{}
	var kinds []string
	for _, v := range vs {
		if len(byKind[v.Kind]) == 0 {
			kinds = append(kinds, v.Kind)
		}
		byKind[v.Kind] = append(byKind[v.Kind], v)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		fmt.Fprintf(w, "VIOLATION %s: %d\n", k, len(byKind[k]))
		for _, v := range byKind[k][:min(perKind, len(byKind[k]))] {
			fmt.Fprintf(w, "  %s\n", v.Detail)
		}
	}
}

// finalLine is the one-line verdict.
func finalLine(s summary) string {
	verdict := "PASS"
	if len(s.violations) > 0 {
		verdict = fmt.Sprintf("FAIL (%d violations)", len(s.violations))
	}
	return fmt.Sprintf("chaos: %d ids, %d duplicates, %d lost, %d wrong states, %d idempotency conflicts, %d bad answers, %d wrong 200s, "+
		"%d compensations (%d audit mismatches, %d double effects), %d/%d faults recovered, %d other violations: %s",
		s.ids, s.count(vDuplicate), s.count(vLost), s.count(vState), s.count(vIdempotency), s.count(vBadAnswer), s.count(vWrong200),
		s.compensated, s.count(vAudit), s.count(vEffect), s.faultsRecovered, s.faultsRun,
		len(s.violations)-s.count(vDuplicate)-s.count(vLost)-s.count(vState)-s.count(vIdempotency)-s.count(vBadAnswer)-s.count(vWrong200)-s.count(vAudit)-s.count(vEffect),
		verdict)
}

// printChecks says how much the checks covered.
func printChecks(w io.Writer, s summary, l *Ledger, ev *eventSender) {
	var deadlines, c200, c409, cUnknown, evConfirmed, evUnconfirmed int
	for _, r := range l.records() {
		if r.deadline {
			deadlines++
		}
		if r.commit&commitOK != 0 {
			c200++
		}
		if r.commit&commitConflict != 0 {
			c409++
		}
		if r.commit&commitUnknown != 0 {
			cUnknown++
		}
		switch {
		case r.event&eventConfirmed != 0:
			evConfirmed++
		case r.event&eventUnconfirmed != 0:
			evUnconfirmed++
		}
	}
	l.mu.Lock()
	keys, nulls := len(l.keys), len(l.nulls)
	l.mu.Unlock()
	fmt.Fprintf(w, "checks: %d registry reads; %d audit lines (%d torn); %d IDs with a deadline; commits: %d answered 200, %d 409, %d unanswered; "+
		"failure events: %d IDs confirmed, %d unconfirmed, %d null compensations, %d XADDs confirmed; %d idempotency keys; "+
		"%d quiet intervals (%d requests inside); %d direct streams checked for timestamp order\n",
		s.registryReads, s.auditLines, s.tornAudit, deadlines, c200, c409, cUnknown, evConfirmed, evUnconfirmed, nulls, ev.sent.Load(), keys,
		s.quiets, s.quietRequests, s.streams)
	if s.reconciled != "" {
		fmt.Fprintln(w, s.reconciled)
	}
	if s.commitUnaudited > 0 {
		fmt.Fprintf(w, "note: %d committed IDs have no commit audit entry (HTTP commits answered 503 after the write landed, or cut by SIGKILL before the entry; not checked)\n", s.commitUnaudited)
	}
	if s.auditRepeats > 0 {
		fmt.Fprintf(w, "note: %d audit entries repeated in the crash window (the first in the log of a SIGKILLed life, the repeat marked recovered; allowed)\n", s.auditRepeats)
	}
}

// shortErr strips the request details from a client error.
func shortErr(e string) string {
	if i := strings.LastIndex(e, ": "); i >= 0 && strings.Contains(e, "\"") {
		return e[i+2:]
	}
	return e
}

// printOpsChecks says how much the checks of the embedded phase covered.
func printOpsChecks(w io.Writer, s opsSummary, quiets int) {
	fmt.Fprintf(w, "checks (embedded): %d registry reads; %d stored commits and %d stored compensations, each to be audited exactly once; "+
		"%d audit lines (%d torn), %d audit.resume; %d quiet intervals\n", s.reads, s.commits, s.compensations, s.auditLines, s.torn, s.resumes, quiets)
	for _, line := range s.perInst {
		fmt.Fprintf(w, "  %s\n", line)
	}
}
