package main

import (
	"debug/buildinfo"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// results is everything one bench run measured; writeMarkdown and writeSVG
// render it.
type results struct {
	Machine     machine
	Command     string
	Started     time.Time
	Elapsed     time.Duration
	Rounds      int
	Duration    time.Duration
	Warmup      time.Duration
	Connections int // wrk connections of the throughput runs
	// LatencyConnections is the wrk connection count of Latency.
	LatencyConnections int
	Benchtime          time.Duration
	Quick              bool

	InProcess []peerResult
	Auth      []authResult // token verification costs (shared/platform/auth)
	HTTP      []httpResult
	// Latency holds the single-ID idgen + Redis and durable runs at
	// LatencyConnections, which the p99 targets are judged on; when
	// LatencyReused they are copies of the throughput runs (the same count).
	Latency       []httpResult
	LatencyReused bool
	Coord         []coordResult
	ColdStart     []coldResult
	Profiles      []profileResult
	Notes         []string
}

// httpResult is the medians of one wrk target.
type httpResult struct {
	Key, Inst, Name string
	Batch           bool
	IDsPerReq       float64
	Conns           int // wrk connections
	RPS             float64
	P50, P99, P999  time.Duration
	CPU             cpuUse // median cores per component
	RoundsRPS       []float64
	RoundsP99       []time.Duration
	SockErrors      int
	Refused         int // non-2xx answers over all rounds (only the strawman may have any)
}

// IDsPerSec is RPS times IDs per request.
func (h httpResult) IDsPerSec() float64 { return h.RPS * h.IDsPerReq }

// ratioTo is h's requests/s as a ratio to base's: the median of the ratios
// round by round when both ran the same rounds (each pair ran in the same
// round, within about a minute, so a change of the machine's speed from one
// round to the next cancels out), else the ratio of the medians. 0 when base
// has no requests/s.
func (h httpResult) ratioTo(base httpResult) float64 {
	if rs, ok := roundRatios(h.RoundsRPS, base.RoundsRPS); ok {
		return median(rs)
	}
	if base.RPS <= 0 {
		return 0
	}
	return h.RPS / base.RPS
}

// roundRatios divides a by b round by round; false when the rounds do not
// pair (other counts, none, or a round of b without requests/s).
func roundRatios(a, b []float64) ([]float64, bool) {
	if len(a) == 0 || len(a) != len(b) {
		return nil, false
	}
	rs := make([]float64, len(a))
	for i := range a {
		if !(b[i] > 0) {
			return nil, false
		}
		rs[i] = a[i] / b[i]
	}
	return rs, true
}

// serverCPUPerReq is the CPU time of the server and what it leans on
// (Redis, ZooKeeper) per request, in µs: what a request costs, whoever runs
// on the machine besides.
func (h httpResult) serverCPUPerReq() float64 {
	if h.RPS <= 0 {
		return 0
	}
	return 1e6 * (h.CPU.Server + h.CPU.Redis + h.CPU.ZK) / h.RPS
}

// coordResult is the coordination cost of one target, summed over its
// rounds; NaN means the mode has no such cost.
type coordResult struct {
	Key, Name           string
	IDs                 float64
	ZKWritesPer1M       float64 // ZooKeeper transactions (zxid delta) per million IDs
	RangeClaimsPer1M    float64
	CASConflictsPerID   float64
	RegistryWritesPerID float64 // group commits (embedded) or Redis round trips
	RedisRTPerID        float64
	RedisCmdsPerID      float64
	BytesPerID          float64 // Redis used_memory growth per ID
	FlushMeanMS         float64 // mean duration of a registry flush (group commit or Redis round trip)
	FlushP99MS          float64 // upper bound of the histogram bucket holding the 99th percentile
}

type coldResult struct {
	Key, Name        string
	Median, Min, Max time.Duration
}

// machine describes where the run happened.
type machine struct {
	CPU                 string
	Cores, GOMAXPROCS   int
	GoVersion           string
	Kernel, LoadAvg     string
	Wrk, Redis          string
	IdgenGo, IdgenBuild string
}

func readMachine(idgen string) machine {
	m := machine{CPU: "unknown", Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	if out, err := exec.Command("wrk", "-v").CombinedOutput(); len(out) > 0 || err == nil {
		m.Wrk, _, _ = strings.Cut(strings.TrimSpace(string(out)), " Copyright")
	}
	if out, err := exec.Command("redis-server", "--version").Output(); err == nil {
		m.Redis = strings.TrimSpace(string(out))
		if i := strings.Index(m.Redis, " sha="); i > 0 {
			m.Redis = m.Redis[:i]
		}
	}
	if bi, err := buildinfo.ReadFile(idgen); err == nil {
		m.IdgenGo = bi.GoVersion
		var rev, dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = " (modified)"
				}
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		m.IdgenBuild = rev + dirty
	}
	return m
}

// The connection counts the targets of the issue are stated at: the ratio
// targets under wrk with 64 connections, the p99 targets at 32.
const (
	statedConns    = 64
	statedLatConns = 32
)

// httpSplit returns the HTTP results of one ID per request and those of
// batches, each in run order.
func (r *results) httpSplit() (single, batch []httpResult) {
	for _, h := range r.HTTP {
		if h.Batch {
			batch = append(batch, h)
		} else {
			single = append(single, h)
		}
	}
	return single, batch
}

// goal is one target of the issue with its measurement.
type goal struct {
	Name     string
	Measured string
	Ratio    float64 // measured as a fraction of the goal, oriented so ≥ 1 passes
	NoRatio  bool    // no finite ratio (a zero goal or a zero measure): printed as —
	Pass     bool
	Missing  bool // not measured in this run
	Miss     string
	Profile  string      // profile file that explains the cost; "" when there is none
	Run      *httpResult // the HTTP runs measured (their CPU use explains a miss); nil in-process
	Moonshot bool
}

func (r *results) http(key string) (httpResult, bool) {
	return find(r.HTTP, func(h httpResult) bool { return h.Key == key })
}

// latency is the run of instance key at LatencyConnections.
func (r *results) latency(key string) (httpResult, bool) {
	return find(r.Latency, func(h httpResult) bool { return h.Key == key })
}

func (r *results) coord(key string) (coordResult, bool) {
	return find(r.Coord, func(c coordResult) bool { return c.Key == key })
}

func (r *results) peer(name string) (peerResult, bool) {
	return find(r.InProcess, func(p peerResult) bool { return p.Name == name })
}

// find returns the first element of xs that match accepts.
func find[T any](xs []T, match func(T) bool) (T, bool) {
	if i := slices.IndexFunc(xs, match); i >= 0 {
		return xs[i], true
	}
	var zero T
	return zero, false
}

// goals evaluates the targets of the issue against the results.
func (r *results) goals() []goal {
	var gs []goal
	ceil, okC := r.http("ceiling")
	red, okR := r.http("redis")
	peb, okP := r.http("pebble")
	redB, okRB := r.http("redis-batch")
	naive, okN := r.http("naive")
	redL, okRL := r.latency("redis")
	durL, okDL := r.latency("durable")
	atLeast := func(name string, measured, want float64, unit string, ok bool, profile string) goal {
		g := goal{Name: name, Missing: !ok, Profile: profile}
		if ok && want > 0 {
			g.Ratio = measured / want
			g.Pass = measured >= want
			g.Measured = unit
			if !g.Pass {
				g.Miss = fmt.Sprintf("short by %.0f%% (needs %.2f× more)", 100*(1-g.Ratio), want/measured)
			}
		}
		return g
	}
	atMost := func(name string, measured, want float64, unit string, ok bool, profile string) goal {
		g := goal{Name: name, Missing: !ok, Profile: profile}
		if !ok {
			return g
		}
		g.Measured = unit
		switch {
		case measured <= 0: // meets any goal ≥ 0; the ratio would be infinite
			g.Pass, g.Ratio, g.NoRatio = true, 1, true
		case want <= 0:
			g.NoRatio = true
			g.Miss = "the goal is 0"
		default:
			g.Ratio = want / measured
			g.Pass = measured <= want
			if !g.Pass {
				g.Miss = fmt.Sprintf("over by %.0f%% (%.2f× the goal)", 100*(measured/want-1), measured/want)
			}
		}
		return g
	}
	// on attaches the HTTP runs a goal was measured on.
	on := func(g goal, h httpResult, ok bool) goal {
		if ok {
			g.Run = &h
		}
		return g
	}
	// profileOf names the profile of target key when this run took one.
	profileOf := func(key string) string {
		if p, ok := r.profile(key); ok {
			return p.File
		}
		return ""
	}
	// conns flags throughput runs at another count than the ratio targets
	// are stated at.
	conns := ""
	if r.Connections != statedConns {
		conns = fmt.Sprintf("; measured at %d connections", r.Connections)
	}
	toCeil := func(h httpResult, ok bool) float64 {
		if ok && okC {
			return h.ratioTo(ceil)
		}
		return 0
	}
	// vsCeil says how a ratio to the ceiling was taken.
	vsCeil := func(h httpResult, ratio float64) string {
		rounds := ""
		if rs, ok := roundRatios(h.RoundsRPS, ceil.RoundsRPS); ok && len(rs) > 1 {
			parts := make([]string, len(rs))
			for i, x := range rs {
				parts[i] = fmt.Sprintf("%.2f", x)
			}
			rounds = "median of the rounds' ratios " + strings.Join(parts, " / ") + "; "
		}
		return fmt.Sprintf("%.2f× (%smedians %s vs %s req/s%s)", ratio, rounds, fmtNum(h.RPS), fmtNum(ceil.RPS), conns)
	}

	ratio := toCeil(red, okR)
	gs = append(gs, on(atLeast(fmt.Sprintf("idgen + Redis ≥ 0.5× the ceiling (requests/s, %d connections)", statedConns), ratio, 0.5,
		vsCeil(red, ratio), okC && okR, "profile-redis.txt"), red, okR))
	m := on(atLeast("moonshot: idgen + Redis ≥ 0.7× the ceiling", ratio, 0.7, fmt.Sprintf("%.2f×", ratio), okC && okR, "profile-redis.txt"), red, okR)
	m.Moonshot = true
	gs = append(gs, m)
	pr := toCeil(peb, okP)
	gs = append(gs, on(atLeast(fmt.Sprintf("idgen embedded (pebble) ≥ 0.5× the ceiling (requests/s, %d connections)", statedConns), pr, 0.5,
		vsCeil(peb, pr), okC && okP, profileOf("pebble")), peb, okP))

	dur, okD := r.http("durable")
	dr := toCeil(dur, okD)
	gs = append(gs, on(atLeast(fmt.Sprintf("durable (WAIT 1) ≥ 0.3× the ceiling (requests/s, %d connections)", statedConns), dr, 0.3,
		vsCeil(dur, dr), okC && okD, profileOf("durable")), dur, okD))
	// cpuVsCeil is the server-side CPU per request of h over the
	// ceiling's, in the same runs' medians.
	cpuVsCeil := func(name string, h httpResult, ok bool, profile string) goal {
		ok = ok && okC && h.serverCPUPerReq() > 0 && ceil.serverCPUPerReq() > 0
		x := 0.0
		if ok {
			x = h.serverCPUPerReq() / ceil.serverCPUPerReq()
		}
		return on(atMost("server CPU per request ≤ 2× the ceiling's: "+name, x, 2,
			fmt.Sprintf("%.2f× (%.1f vs %.1f µs)", x, h.serverCPUPerReq(), ceil.serverCPUPerReq()), ok, profile), h, ok)
	}
	gs = append(gs, cpuVsCeil("idgen + Redis", red, okR, "profile-redis.txt"))
	gs = append(gs, cpuVsCeil("idgen embedded (pebble)", peb, okP, profileOf("pebble")))
	sec, okS := r.http(secureKey)
	okTLS := okP && okS && peb.RPS > 0
	tr := 0.0
	if okTLS {
		tr = sec.ratioTo(peb)
	}
	gs = append(gs, on(atLeast("TLS + JWT ≥ 0.85× of plain (idgen embedded (pebble), requests/s)", tr, 0.85,
		fmt.Sprintf("%.2f× (medians %s vs %s req/s)", tr, fmtNum(sec.RPS), fmtNum(peb.RPS)), okTLS, ""), sec, okS))

	p99 := func(name string, h httpResult, ok bool, profile string) goal {
		ok = ok && h.P99 > 0
		if h.Conns == 0 {
			h.Conns = r.LatencyConnections
		}
		return on(atMost(fmt.Sprintf("p99 ≤ 5 ms at %d connections: %s", statedLatConns, name), h.P99.Seconds(), 0.005,
			fmt.Sprintf("%s at %d connections", fmtDur(h.P99), h.Conns), ok, profile), h, ok)
	}
	gs = append(gs, p99("idgen + Redis", redL, okRL, "profile-redis.txt"))
	gs = append(gs, p99("durable (WAIT 1)", durL, okDL, "profile-durable.txt"))

	rc, okRC := r.coord("redis")
	okRC = okRC && okR && rc.IDs > 0 && !math.IsNaN(rc.RedisRTPerID)
	gs = append(gs, on(atMost("Redis round trips per ID at saturation ≤ 0.05", rc.RedisRTPerID, 0.05,
		fmt.Sprintf("%s (%s registry flushes for %s IDs, single IDs at %d connections)", fmtF(rc.RedisRTPerID, 4), fmtNum(rc.RedisRTPerID*rc.IDs), fmtNum(rc.IDs), r.Connections),
		okRC, "profile-redis.txt"), red, okR))

	gs = append(gs, on(atLeast("≥ 2M IDs/s in batches (idgen + Redis, count=1000, one instance)", redB.IDsPerSec(), 2e6, fmtNum(redB.IDsPerSec())+" IDs/s", okRB, "profile-redis-batch.txt"), redB, okRB))
	rbc, okRBC := r.coord("redis-batch")
	okRBC = okRBC && okRB && rbc.IDs > 0 && !math.IsNaN(rbc.BytesPerID)
	gs = append(gs, on(atMost("≤ 4 registry bytes per ID in batches (idgen + Redis, count=1000)", rbc.BytesPerID, 4,
		fmt.Sprintf("%s bytes/ID (growth of Redis used_memory over %s IDs)", fmtF(rbc.BytesPerID, 1), fmtNum(rbc.IDs)), okRBC, "profile-redis-batch.txt"), redB, okRB))
	nr := 0.0
	if okN && okR && naive.RPS > 0 {
		nr = red.RPS / naive.RPS
	}
	gs = append(gs, on(atLeast("≥ 20× the naive design (idgen + Redis ÷ naive, requests/s)", nr, 20, fmt.Sprintf("%.1f× (%s vs %s req/s)", nr, fmtNum(red.RPS), fmtNum(naive.RPS)), okN && okR, "profile-redis.txt"), red, okR))

	hot, okH := r.peer("idgen hot path")
	fifth := func(name, label string) goal {
		p, okV := r.peer(name)
		ok := okH && okV && hot.SerialNs > 0 && p.SerialNs > 0
		hr := 0.0
		if ok {
			hr = hot.SerialNs / p.SerialNs
		}
		return atMost(fmt.Sprintf("hot path ≤ 1/5 of %s (ns/ID, serial)", label), hr, 0.2,
			fmt.Sprintf("%.3f× (%.1f vs %.1f ns/ID; parallel %.1f vs %.1f)", hr, hot.SerialNs, p.SerialNs, hot.ParallelNs, p.ParallelNs), ok, "profile-hotpath.txt")
	}
	gs = append(gs, fifth("google/uuid NewV7", "NewV7"))
	gs = append(gs, fifth("bwmarrin/snowflake", "bwmarrin/snowflake"))
	gs = append(gs, atMost("hot path 0 allocs/ID", max(hot.SerialAllocs, hot.ParallelAllocs), 0,
		fmt.Sprintf("%.0f allocs/ID serial, %.0f parallel", hot.SerialAllocs, hot.ParallelAllocs), okH, "profile-hotpath.txt"))
	return gs
}

// fmtDur prints a latency in ms (µs below 0.1 ms).
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < 100*time.Microsecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	case d < 10*time.Second:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
}

// fmtNum prints a count with thousands separators.
func fmtNum(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	neg := v < 0
	s := fmt.Sprintf("%.0f", math.Abs(v))
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// fmtF prints v with the given precision, or "—" for NaN.
func fmtF(v float64, prec int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	return fmt.Sprintf("%.*f", prec, v)
}
