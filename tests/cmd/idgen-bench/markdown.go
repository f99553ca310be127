package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// mdLines returns the writers of a Markdown report to w: line writes one
// line (format and args as for fmt.Printf), para one ending a block (a
// heading, a paragraph) and the blank line Markdown needs after it.
func mdLines(w io.Writer) (line, para func(format string, args ...any)) {
	line = func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	para = func(format string, args ...any) {
		line(format, args...)
		line("")
	}
	return line, para
}

// writeMarkdown renders r as bench/<CPU model>/results.md: the machine and command, the
// targets with PASS/MISS, then every table.
func writeMarkdown(w io.Writer, r *results) {
	p, para := mdLines(w)
	m := r.Machine
	para("# idgen bench results")
	if r.Quick {
		para("> **Quick run** (`-quick`): short runs, rough figures; not the published results.")
	}
	p("| | |")
	p("|---|---|")
	p("| CPU | %s |", mdEscape(m.CPU))
	p("| cores | %d (GOMAXPROCS %d) |", m.Cores, m.GOMAXPROCS)
	p("| Go | %s (bench); idgen binary built with %s at %s |", m.GoVersion, orDash(m.IdgenGo), orDash(m.IdgenBuild))
	p("| OS | %s; load average at start %s |", orDash(m.Kernel), orDash(m.LoadAvg))
	p("| tools | %s; %s; ZooKeeper from the Debian package (harness/zkharness) |", orDash(m.Wrk), orDash(m.Redis))
	p("| date | %s (took %v) |", r.Started.Format("2006-01-02 15:04 MST"), r.Elapsed)
	p("| command | `%s` |", r.Command)
	para("| method | %d rounds, alternating, median reported; wrk %v per run after a %v warm-up, %d connections%s; in-process %v per measurement |",
		r.Rounds, r.Duration, r.Warmup, r.Connections, latencyMethod(r), r.Benchtime)
	para("![throughput ratios and latency percentiles](chart.svg)")

	gs := r.goals()
	para("## Targets")
	p("| target | measured | ratio to target (≥ 1 meets it) | result |")
	p("|---|---|---:|---|")
	for _, g := range gs {
		res, ratio := "MISS", fmt.Sprintf("%.2f", g.Ratio)
		if g.NoRatio {
			ratio = "—"
		}
		switch {
		case g.Missing:
			res, ratio, g.Measured = "not measured", "—", "—"
		case g.Pass:
			res = "PASS"
		case g.Moonshot:
			res = "MISS (moonshot)"
		}
		p("| %s | %s | %s | **%s** |", g.Name, g.Measured, ratio, res)
	}
	p("")
	writeMisses(w, r, gs)

	if len(r.InProcess) > 0 {
		para("## In-process: one ID per call")
		para("Binary IDs as each library returns them (no text formatting). Ratio = peer ÷ idgen (higher: idgen is cheaper).")
		p("| generator | serial ns/ID | allocs/ID | parallel ns/ID (%d goroutines) | serial ratio | parallel ratio | note |", m.GOMAXPROCS)
		p("|---|---:|---:|---:|---:|---:|---|")
		base := r.InProcess[0]
		for _, x := range r.InProcess {
			p("| %s | %.1f | %.0f | %.1f | %.2f× | %.2f× | %s |", x.Name, x.SerialNs, x.SerialAllocs, x.ParallelNs,
				safeDiv(x.SerialNs, base.SerialNs), safeDiv(x.ParallelNs, base.ParallelNs), x.Note)
		}
		p("")
	}

	ceil, hasCeil := r.http("ceiling")
	single, batch := r.httpSplit()
	if len(single) > 0 {
		para("## HTTP: one ID per request")
		para("`wrk -t2 -c%d --latency`, POST /generate. Ratio to the ceiling = the median, over the rounds, of requests/s ÷ the ceiling's requests/s in the same round "+
			"(each round runs the ceiling first and every target within about a minute after it, so a change of the machine's speed from one round to the next cancels out); "+
			"the requests/s columns are medians. Refused: 503 answers summed over the rounds; only the naive design may give them (a request that fails "+
			"within its %v timeout, for instance by losing the counter's compare-and-set to the other connections until then), and its requests/s counts issued IDs only; "+
			"any non-2xx answer from idgen fails the bench.", r.Connections, naiveTimeout)
		p("| target | requests/s | ratio to ceiling | p50 | p99 | p99.9 | socket errors | refused (503) | requests/s per round |")
		p("|---|---:|---:|---:|---:|---:|---:|---:|---|")
		for _, h := range single {
			p("| %s | %s | %s | %s | %s | %s | %d | %d | %s |", h.Name, fmtNum(h.RPS), fmtRatio(h.ratioTo(ceil), hasCeil), fmtDur(h.P50), fmtDur(h.P99), fmtDur(h.P999), h.SockErrors, h.Refused, roundsList(h.RoundsRPS))
		}
		p("")
	}
	writeLatency(w, r)
	writeSecurity(w, r)
	if len(batch) > 0 {
		para("## Batches: count=1000 per request, one instance")
		p("| instance | requests/s | IDs/s | IDs/s ÷ ceiling requests/s | p50 | p99 | p99.9 |")
		p("|---|---:|---:|---:|---:|---:|---:|")
		for _, h := range batch {
			p("| %s | %s | %s | %s | %s | %s | %s |", strings.TrimSuffix(h.Name, ", count=1000"), fmtNum(h.RPS), fmtNum(h.IDsPerSec()), ratioTo(h.IDsPerSec(), ceil.RPS, hasCeil), fmtDur(h.P50), fmtDur(h.P99), fmtDur(h.P999))
		}
		p("")
	}
	if len(r.Coord) > 0 {
		para("## Coordination cost")
		para("Deltas over the measured runs of each target. ZooKeeper writes: the server's zxid delta (every write request, failed compare-and-sets included). " +
			"Registry writes: group commits (embedded) or Redis round trips, from the server's own metrics. Redis commands: the server's `total_commands_processed`. " +
			"Registry bytes: growth of Redis `used_memory` per ID (per copy; the durable replica holds another). " +
			"Flush latency: one registry flush (group commit with its WAL sync, or Redis round trip, with WAIT when durable) from the server's `idgen_registry_flush_seconds` histogram: " +
			"the mean, and the upper bound of the bucket holding the 99th percentile.")
		p("| target | IDs | ZooKeeper writes per 1M IDs | range claims per 1M IDs | CAS conflicts per ID | registry writes per ID | Redis round trips per ID | Redis commands per ID | registry bytes per ID | flush latency mean | flush latency p99 ≤ |")
		p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
		for _, c := range r.Coord {
			p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", c.Name, fmtNum(c.IDs), fmtF(c.ZKWritesPer1M, 1), fmtF(c.RangeClaimsPer1M, 1), fmtF(c.CASConflictsPerID, 3),
				fmtF(c.RegistryWritesPerID, 4), fmtF(c.RedisRTPerID, 4), fmtF(c.RedisCmdsPerID, 4), fmtF(c.BytesPerID, 1), fmtMS(c.FlushMeanMS), fmtMS(c.FlushP99MS))
		}
		p("")
	}
	if len(r.ColdStart) > 0 {
		para("## Cold start to first ID")
		para("From exec of the server to the first 200 answer of POST /generate (fresh data directory; ZooKeeper and Redis already running), %d starts each.", r.Rounds)
		p("| mode | median | min | max |")
		p("|---|---:|---:|---:|")
		for _, c := range r.ColdStart {
			p("| %s | %s | %s | %s |", c.Name, fmtDur(c.Median), fmtDur(c.Min), fmtDur(c.Max))
		}
		p("")
	}
	if len(r.HTTP) > 0 {
		para("## CPU during the runs")
		para("Cores used (CPU seconds per second, median of the rounds) out of %d. \"Rest\" is the rest of the machine: other work running on it and the idle servers.", m.Cores)
		para("Server-side CPU = server + Redis + ZooKeeper, per request and per ID.")
		p("| target | server | Redis | ZooKeeper | wrk | rest | total | server-side µs CPU per request | per ID |")
		p("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
		for _, h := range r.HTTP {
			c := h.CPU
			p("| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.1f | %.3f |", h.Name, c.Server, c.Redis, c.ZK, c.Wrk, c.Rest, c.Server+c.Redis+c.ZK+c.Wrk+c.Rest,
				h.serverCPUPerReq(), h.serverCPUPerReq()/h.IDsPerReq)
		}
		p("")
	}
	if len(r.Profiles) > 0 {
		para("## CPU profiles")
		for _, pr := range r.Profiles {
			para("### %s: [%s](%s)", pr.Name, pr.File, pr.File)
			para("%s The profile saw %.2f cores.", pr.Context, pr.Cores)
			para("Cost by category (flat CPU): %s.", categoryList(pr.Categories, 0))
			if len(pr.Cum) > 0 {
				para("Where it goes (cumulative, callees included, so shares overlap): %s.", cumList(pr.Cum, 0))
			}
			p("| function | flat | cum |")
			p("|---|---:|---:|")
			for _, e := range pr.Top[:min(len(pr.Top), 8)] {
				p("| `%s` | %.1f%% | %.1f%% |", mdEscape(e.Func), e.FlatPct, e.CumPct)
			}
			p("")
		}
	}
	if len(r.Notes) > 0 {
		para("## Notes")
		for _, n := range r.Notes {
			p("- %s", n)
		}
		p("")
	}
}

// writeMisses explains every missed target by how much, with the profile's
// cost breakdown and, for HTTP targets, who used the CPU.
func writeMisses(w io.Writer, r *results, gs []goal) {
	var lines []string
	for _, g := range gs {
		if g.Pass || g.Missing {
			continue
		}
		s := fmt.Sprintf("- **%s**: %s, %s.", g.Name, g.Measured, g.Miss)
		// A link only to a profile this run wrote: none when the goal
		// names no profile or its target was not profiled.
		if pr, ok := r.profileFile(g.Profile); ok {
			s += fmt.Sprintf(" pprof ([%s](%s)): the profiled process got %.2f cores; its CPU went to %s", pr.File, pr.File, pr.Cores, categoryList(pr.Categories, 5))
			if len(pr.Cum) > 0 {
				s += fmt.Sprintf("; cumulative: %s", cumList(pr.Cum, 5))
			}
			s += "."
		}
		if g.Run != nil {
			h := *g.Run
			c := h.CPU
			s += fmt.Sprintf(" During the measured runs the %d cores went to: idgen %.2f, Redis %.2f, ZooKeeper %.2f, wrk %.2f, rest %.2f.", r.Machine.Cores, c.Server, c.Redis, c.ZK, c.Wrk, c.Rest)
			if h.Batch && h.IDsPerSec() > 0 {
				per := func(cores float64) float64 { return 1e6 * cores / h.IDsPerSec() }
				s += fmt.Sprintf(" Server-side CPU per ID: %.3f µs (idgen %.3f, Redis %.3f); 2M IDs/s at this cost needs %.1f cores of server-side CPU.",
					per(c.Server+c.Redis+c.ZK), per(c.Server), per(c.Redis), 2e6*per(c.Server+c.Redis+c.ZK)/1e6)
			}
			if ceil, ok := r.http("ceiling"); ok {
				switch {
				case strings.Contains(g.Name, "ceiling") || strings.Contains(g.Name, "naive"):
					s += fmt.Sprintf(" The ceiling's runs: server %.2f, wrk %.2f, rest %.2f cores. Server-side CPU per request: %.1f µs here (idgen, Redis, ZooKeeper) against %.1f µs for the ceiling.",
						ceil.CPU.Server, ceil.CPU.Wrk, ceil.CPU.Rest, h.serverCPUPerReq(), ceil.serverCPUPerReq())
				case strings.Contains(g.Name, "p99") && (h.Conns == ceil.Conns || h.Conns == 0 || ceil.Conns == 0):
					s += fmt.Sprintf(" The ceiling's own p99 in the same runs: %s.", fmtDur(ceil.P99))
				case strings.Contains(g.Name, "p99"):
					s += fmt.Sprintf(" The ceiling was measured at %d connections only (p99 %s there); these runs are at %d.", ceil.Conns, fmtDur(ceil.P99), h.Conns)
				}
			}
		}
		lines = append(lines, s)
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(w, "### Where a target is missed")
	fmt.Fprintln(w)
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	fmt.Fprintln(w)
}

// profileFile is the profile written to file ("profile-<key>.txt"); none
// for "".
func (r *results) profileFile(file string) (profileResult, bool) {
	if file == "" {
		return profileResult{}, false
	}
	return find(r.Profiles, func(p profileResult) bool { return p.File == file })
}

func (r *results) profile(key string) (profileResult, bool) {
	return find(r.Profiles, func(p profileResult) bool { return p.Key == key })
}

// categoryList prints the n largest categories (all for n = 0).
func categoryList(cs []category, n int) string {
	if n == 0 || n > len(cs) {
		n = len(cs)
	}
	parts := make([]string, n)
	for i, c := range cs[:n] {
		parts[i] = fmt.Sprintf("%s %.0f%%", c.Name, c.Pct)
	}
	if len(parts) == 0 {
		return "no samples"
	}
	return strings.Join(parts, ", ")
}

// cumList prints the first n cumulative entries (all for n = 0).
func cumList(es []topEntry, n int) string {
	if n == 0 || n > len(es) {
		n = len(es)
	}
	parts := make([]string, n)
	for i, e := range es[:n] {
		parts[i] = fmt.Sprintf("%s %.0f%%", e.Func, e.CumPct)
	}
	return strings.Join(parts, ", ")
}

// latencyMethod is the method row's note on the runs the p99 targets are
// judged on.
func latencyMethod(r *results) string {
	switch {
	case len(r.Latency) == 0:
		return ""
	case r.LatencyReused:
		return " (the p99 targets use the same runs)"
	default:
		return fmt.Sprintf(" (idgen + Redis and durable also at %d connections for the p99 targets)", r.LatencyConnections)
	}
}

// writeLatency renders the runs the p99 targets are judged on.
func writeLatency(w io.Writer, r *results) {
	if len(r.Latency) == 0 {
		return
	}
	p, para := mdLines(w)
	para("## Latency at %d connections", r.LatencyConnections)
	if r.LatencyReused {
		p("The p99 targets are stated at %d connections and judged on these runs: the throughput runs above (`-latency-connections` equals `-connections`).", statedLatConns)
	} else {
		p("The p99 targets are stated at %d connections and judged on these runs: `wrk -t2 -c%d --latency`, POST /generate, one ID per request, "+
			"in the same alternating rounds as the throughput runs (same duration, own warm-up), median of %d rounds.", statedLatConns, r.LatencyConnections, r.Rounds)
	}
	p("")
	p("| instance | requests/s | p50 | p99 | p99.9 | p99 per round |")
	p("|---|---:|---:|---:|---:|---|")
	for _, h := range r.Latency {
		rounds := make([]string, len(h.RoundsP99))
		for i, d := range h.RoundsP99 {
			rounds[i] = fmtDur(d)
		}
		p("| %s | %s | %s | %s | %s | %s |", h.Name, fmtNum(h.RPS), fmtDur(h.P50), fmtDur(h.P99), fmtDur(h.P999), strings.Join(rounds, " / "))
	}
	p("")
}

// fmtRatio prints a ratio, or — when there is none.
func fmtRatio(r float64, ok bool) string {
	if !ok || r <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", r)
}

func ratioTo(v, base float64, ok bool) string {
	if !ok || base <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", v/base)
}

func safeDiv(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

func roundsList(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmtNum(x)
	}
	return strings.Join(parts, " / ")
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return mdEscape(s)
}

// mdEscape keeps a value from breaking a table row.
func mdEscape(s string) string { return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s) }

// fmtMS prints a duration given in ms ("—" for NaN, "> last bucket" for +Inf).
func fmtMS(ms float64) string {
	switch {
	case math.IsNaN(ms):
		return "—"
	case math.IsInf(ms, 1):
		return "> last bucket"
	}
	return fmtDur(time.Duration(ms * 1e6))
}
