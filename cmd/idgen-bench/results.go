package main

import (
	"debug/buildinfo"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
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
	Connections int
	Benchtime   time.Duration
	Quick       bool

	InProcess []peerResult
	Auth      []authResult // token verification costs (shared/auth)
	HTTP      []httpResult
	Coord     []coordResult
	ColdStart []coldResult
	Profiles  []profileResult
	Notes     []string
}

// httpResult is the medians of one wrk target.
type httpResult struct {
	Key, Inst, Name string
	Batch           bool
	IDsPerReq       float64
	RPS             float64
	P50, P99, P999  time.Duration
	CPU             cpuUse // median cores per component
	RoundsRPS       []float64
	SockErrors      int
}

// IDsPerSec is RPS times IDs per request.
func (h httpResult) IDsPerSec() float64 { return h.RPS * h.IDsPerReq }

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

// target is one goal of the issue with its measurement.
type goal struct {
	Name     string
	Measured string
	Ratio    float64 // measured as a fraction of the goal, oriented so ≥ 1 passes
	Pass     bool
	Missing  bool // not measured in this run
	Miss     string
	Profile  string // profile file that explains the cost
	Moonshot bool
}

func (r *results) http(key string) (httpResult, bool) {
	for _, h := range r.HTTP {
		if h.Key == key {
			return h, true
		}
	}
	return httpResult{}, false
}

func (r *results) peer(name string) (peerResult, bool) {
	for _, p := range r.InProcess {
		if p.Name == name {
			return p, true
		}
	}
	return peerResult{}, false
}

// goals evaluates the targets of the issue against the results.
func (r *results) goals() []goal {
	var gs []goal
	ceil, okC := r.http("ceiling")
	red, okR := r.http("redis")
	redB, okRB := r.http("redis-batch")
	dur, okD := r.http("durable")
	naive, okN := r.http("naive")
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
		if ok && measured > 0 {
			g.Ratio = want / measured
			g.Pass = measured <= want
			g.Measured = unit
			if !g.Pass {
				g.Miss = fmt.Sprintf("over by %.0f%% (%.2f× the goal)", 100*(measured/want-1), measured/want)
			}
		}
		return g
	}
	ratio := 0.0
	if okC && okR && ceil.RPS > 0 {
		ratio = red.RPS / ceil.RPS
	}
	gs = append(gs, atLeast("idgen + Redis ≥ 0.5× the ceiling (requests/s)", ratio, 0.5, fmt.Sprintf("%.2f× (%s vs %s req/s)", ratio, fmtNum(red.RPS), fmtNum(ceil.RPS)), okC && okR, "profile-redis.txt"))
	m := atLeast("moonshot: idgen + Redis ≥ 0.7× the ceiling", ratio, 0.7, fmt.Sprintf("%.2f×", ratio), okC && okR, "profile-redis.txt")
	m.Moonshot = true
	gs = append(gs, m)
	conns := fmt.Sprintf(" at %d connections", r.Connections)
	gs = append(gs, atMost("p99 ≤ 5 ms at 32 connections: idgen + Redis", red.P99.Seconds(), 0.005, fmtDur(red.P99)+conns, okR, "profile-redis.txt"))
	gs = append(gs, atMost("p99 ≤ 5 ms at 32 connections: durable (WAIT 1)", dur.P99.Seconds(), 0.005, fmtDur(dur.P99)+conns, okD, "profile-durable.txt"))
	gs = append(gs, atLeast("≥ 2M IDs/s in batches (idgen + Redis, count=1000, one instance)", redB.IDsPerSec(), 2e6, fmtNum(redB.IDsPerSec())+" IDs/s", okRB, "profile-redis-batch.txt"))
	nr := 0.0
	if okN && okR && naive.RPS > 0 {
		nr = red.RPS / naive.RPS
	}
	gs = append(gs, atLeast("≥ 20× the naive design (idgen + Redis ÷ naive, requests/s)", nr, 20, fmt.Sprintf("%.1f× (%s vs %s req/s)", nr, fmtNum(red.RPS), fmtNum(naive.RPS)), okN && okR, "profile-redis.txt"))
	hot, okH := r.peer("idgen hot path")
	v7, okV := r.peer("google/uuid NewV7")
	hr := 0.0
	if okH && okV && v7.SerialNs > 0 {
		hr = hot.SerialNs / v7.SerialNs
	}
	gs = append(gs, atMost("hot path ≤ 1/5 of NewV7 (ns/ID, serial)", hr, 0.2, fmt.Sprintf("%.3f× (%.1f vs %.1f ns/ID; parallel %.1f vs %.1f)", hr, hot.SerialNs, v7.SerialNs, hot.ParallelNs, v7.ParallelNs), okH && okV, "profile-hotpath.txt"))
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
