package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"time"
)

// profileResult is one CPU profile: its file under the output directory,
// the CPU it saw, its cost grouped by category and its top entries.
type profileResult struct {
	Key, Name, File string
	Context         string     // what ran while it was taken
	Cores           float64    // total samples / duration
	Categories      []category // flat CPU share, largest first
	Top             []topEntry // largest flat first
	Cum             []topEntry // components by cumulative time (Func is the label)
}

type category struct {
	Name string
	Pct  float64 // of the profile's total samples
}

type topEntry struct {
	Func            string
	FlatPct, CumPct float64
}

// profileRun runs wrk against t once more (not counted in the medians)
// while fetching a CPU profile of the instance from its --pprof-listen.
func (l *lab) profileRun(ctx context.Context, t *target, dir string) (profileResult, error) {
	in := t.in
	raw := filepath.Join(dir, "profile-"+t.key+".pb.gz")
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", in.pprofAddr, l.cfg.profileSecs)
	errc := make(chan error, 1)
	go func() { errc <- download(ctx, url, raw) }()
	c0 := takeCPU(in.proc.Pid(), in.redisPids(), l.zkPids)
	w, err := runWrk(ctx, in.url("/generate"), t.body, in.headers(), l.cfg.conns, l.cfg.duration)
	c1 := takeCPU(in.proc.Pid(), in.redisPids(), l.zkPids)
	if perr := <-errc; perr != nil {
		return profileResult{}, perr
	}
	if err != nil {
		return profileResult{}, err
	}
	u := c0.use(c1, w.cpu)
	what := fmt.Sprintf("idgen (%s) during wrk -t2 -c%d -d%v POST /generate %s; %ds profile. While profiled: %.0f req/s, %.0f IDs/s, p99 %s; CPU cores: idgen %.2f, Redis %.2f, ZooKeeper %.2f, wrk %.2f, rest %.2f.",
		t.name, l.cfg.conns, l.cfg.duration, t.body, l.cfg.profileSecs, w.rps, w.rps*t.ids, fmtDur(w.p99), u.Server, u.Redis, u.ZK, u.Wrk, u.Rest)
	return writeProfile(ctx, l.cfg.out, t.key, t.name, what, raw)
}

func download(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s: %s", url, resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// profileHotPath profiles the in-process hot path (one goroutine calling
// Generator.Next) for d and writes profile-hotpath.txt.
func profileHotPath(ctx context.Context, outDir string, d time.Duration) (profileResult, error) {
	ps, closeFn, err := peers()
	if err != nil {
		return profileResult{}, err
	}
	defer closeFn()
	f, err := os.CreateTemp("", "idgen-bench-hotpath-*.pb.gz")
	if err != nil {
		return profileResult{}, err
	}
	defer os.Remove(f.Name())
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return profileResult{}, err
	}
	next := ps[0].next
	n := 0
	for t0 := time.Now(); time.Since(t0) < d; {
		for range 1000 {
			if _, err := next(); err != nil {
				pprof.StopCPUProfile()
				f.Close()
				return profileResult{}, err
			}
		}
		n += 1000
	}
	pprof.StopCPUProfile()
	if err := f.Close(); err != nil {
		return profileResult{}, err
	}
	what := fmt.Sprintf("the in-process hot path: one goroutine calling Generator.Next for %v (%d IDs, %.1f ns/ID while profiled).", d, n, float64(d.Nanoseconds())/float64(n))
	return writeProfile(ctx, outDir, "hotpath", "idgen hot path (in-process)", what, f.Name())
}

// writeProfile runs `go tool pprof -top` on raw, writes the top 40 to
// <outDir>/profile-<key>.txt and groups the whole profile into categories.
func writeProfile(ctx context.Context, outDir, key, name, what, raw string) (profileResult, error) {
	top, err := pprofTop(ctx, raw, "-nodecount=40")
	if err != nil {
		return profileResult{}, err
	}
	all, err := pprofTop(ctx, raw, "-nodecount=1000000", "-nodefraction=0", "-edgefraction=0")
	if err != nil {
		return profileResult{}, err
	}
	p := profileResult{Key: key, Name: name, File: "profile-" + key + ".txt", Context: what}
	entries, cores := parseTop(all)
	p.Cores = cores
	p.Categories = categorize(entries)
	p.Top = entries[:min(len(entries), 12)]
	var b strings.Builder
	fmt.Fprintf(&b, "# CPU profile: %s\n# %s\n# go tool pprof -top -nodecount=40 (flat = CPU in the function itself, cum = with its callees)\n#\n# Cost by category (flat):\n", name, what)
	for _, c := range p.Categories {
		fmt.Fprintf(&b, "#   %5.1f%%  %s\n", c.Pct, c.Name)
	}
	b.WriteString("\n")
	b.WriteString(top)
	cum, err := pprofTop(ctx, raw, "-cum", "-nodecount=30")
	if err != nil {
		return profileResult{}, err
	}
	b.WriteString("\n# The same profile by cumulative time (go tool pprof -top -cum -nodecount=30):\n\n")
	b.WriteString(cum)
	p.Cum = pickComponents(entries)
	return p, os.WriteFile(filepath.Join(outDir, p.File), []byte(b.String()), 0o644)
}

func pprofTop(ctx context.Context, raw string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", append(append([]string{"tool", "pprof", "-top"}, args...), raw)...)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		return "", fmt.Errorf("go tool pprof: %v: %s", err, stderr)
	}
	return string(out), nil
}

var reTotal = regexp.MustCompile(`Duration: ([0-9.a-zµ]+), Total samples = [0-9.a-zµ]+ \(\s*([0-9.]+)%\)`)

// parseTop reads the rows of `go tool pprof -top` (flat, flat%, sum%, cum,
// cum%, function) and the cores the profile saw (Total samples as a
// percentage of its duration).
func parseTop(s string) (entries []topEntry, cores float64) {
	if m := reTotal.FindStringSubmatch(s); m != nil {
		pct, _ := strconv.ParseFloat(m[2], 64)
		cores = pct / 100
	}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || !strings.HasSuffix(f[1], "%") || !strings.HasSuffix(f[4], "%") {
			continue
		}
		flat, err1 := strconv.ParseFloat(strings.TrimSuffix(f[1], "%"), 64)
		cum, err2 := strconv.ParseFloat(strings.TrimSuffix(f[4], "%"), 64)
		if err1 != nil || err2 != nil {
			continue
		}
		entries = append(entries, topEntry{Func: strings.Join(f[5:], " "), FlatPct: flat, CumPct: cum})
	}
	return entries, cores
}

// costCategories group functions by what their CPU pays for; the first
// matching prefix wins.
var costCategories = []struct {
	name     string
	prefixes []string
}{
	{"syscalls: network reads/writes, epoll", []string{"syscall.", "internal/runtime/syscall", "runtime/internal/syscall", "internal/poll.", "runtime.netpoll", "runtime.epoll", "os.(*File)", "net."}},
	{"Go scheduler: goroutine park/wake, idle spinning, futex", []string{"runtime.futex", "runtime.usleep", "runtime.osyield", "runtime.procyield", "runtime.schedule", "runtime.findRunnable", "runtime.park_m", "runtime.mcall", "runtime.gopark", "runtime.goready", "runtime.ready", "runtime.runqgrab", "runtime.runqsteal", "runtime.stealWork", "runtime.notesleep", "runtime.notewakeup", "runtime.wakep", "runtime.startm", "runtime.stopm", "runtime.lock2", "runtime.unlock2", "runtime.lockWithRank", "runtime.casgstatus", "runtime.execute", "runtime.checkTimers", "runtime.resetspinning", "runtime.goschedImpl", "runtime.newproc", "runtime.gogo", "runtime.systemstack", "runtime.semrelease", "runtime.semacquire", "runtime.chansend", "runtime.chanrecv", "runtime.selectgo", "runtime.send", "runtime.recv", "runtime.(*timers)", "runtime.runtimer", "runtime.entersyscall", "runtime.exitsyscall", "runtime.reentersyscall", "runtime.mPark", "runtime.runqput", "runtime.globrunq", "runtime.acquirep", "runtime.releasep", "runtime.handoffp", "runtime.sysmon", "runtime.retake", "runtime.goexit", "runtime.mstart"}},
	{"GC and allocation", []string{"runtime.mallocgc", "runtime.gc", "runtime.scanobject", "runtime.scanObject", "runtime.tryDeferToSpanScan", "runtime.(*spanSet)", "runtime.(*spanInlineMarkBits)", "runtime.(*spanQueue)", "runtime.greyobject", "runtime.markBits", "runtime.findObject", "runtime.(*mspan)", "runtime.(*mheap)", "runtime.(*mcache)", "runtime.(*mcentral)", "runtime.sweepone", "runtime.(*gcWork)", "runtime.(*gcBits)", "runtime.wbBuf", "runtime.bgsweep", "runtime.bgscavenge", "runtime.memclrNoHeapPointers", "runtime.heapBits", "runtime.typePointers", "runtime.scanblock", "runtime.scanstack", "runtime.scanframeworker", "runtime.nextFreeFast", "runtime.newobject", "runtime.makeslice", "runtime.growslice", "runtime.(*gcControllerState)", "runtime.bulkBarrier", "runtime.markroot", "runtime.spanOf", "runtime.pageIndexOf", "runtime.(*sweepLocked)", "runtime.(*pageAlloc)", "runtime.(*scavenger", "runtime.deductAssistCredit", "runtime.(*mspan", "runtime.heapSetType", "runtime.rawstring", "runtime.rawbyteslice", "runtime.slicebytetostring", "runtime.concatstring", "runtime.mapassign", "runtime.makemap", "runtime.(*unwinder)", "runtime.funcInfo", "runtime.pcvalue", "runtime.step", "runtime.findfunc", "runtime.readvarint", "internal/runtime/gc"}},
	{"memory copies (memmove)", []string{"runtime.memmove", "runtime.memequal"}},
	{"fasthttp: HTTP parsing and connection handling", []string{"github.com/valyala/"}},
	{"Redis client (go-redis)", []string{"github.com/redis/go-redis"}},
	{"ZooKeeper client", []string{"github.com/go-zookeeper"}},
	{"JSON and text encoding", []string{"encoding/", "strconv.", "unicode/", "bytes.", "strings.", "fmt."}},
	{"metrics and logging (prometheus, zap)", []string{"github.com/prometheus", "go.uber.org/"}},
	{"idgen's own code", []string{"github.com/idgen/idgen"}},
	{"crypto (random numbers, hashes)", []string{"crypto/", "vendor/golang.org/x/crypto", "internal/chacha8rand", "runtime.vgetrandom", "internal/syscall/unix.GetRandom"}},
	{"sync and atomics", []string{"sync.", "sync/atomic", "internal/sync", "internal/runtime/atomic"}},
	{"time", []string{"time.", "runtime.nanotime", "runtime.walltime", "runtime.vdso"}},
	{"other Go runtime", []string{"runtime.", "internal/runtime"}},
	{"the bench's own loop", []string{"main."}},
}

// categorize sums the flat percentages of entries by costCategories;
// unmatched functions go to "other".
func categorize(entries []topEntry) []category {
	sums := map[string]float64{}
next:
	for _, e := range entries {
		fn := strings.TrimSuffix(e.Func, " (inline)")
		for _, c := range costCategories {
			for _, p := range c.prefixes {
				if strings.HasPrefix(fn, p) {
					sums[c.name] += e.FlatPct
					continue next
				}
			}
		}
		sums["other"] += e.FlatPct
	}
	var out []category
	for n, v := range sums {
		if v >= 0.05 {
			out = append(out, category{n, v})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Pct > out[j].Pct || out[i].Pct == out[j].Pct && out[i].Name < out[j].Name
	})
	return out
}

// components name the frames whose cumulative time answers "where does
// the CPU go": the largest cumulative share among the entries that match a
// prefix (callees included, so shares overlap).
var components = []struct{ label, prefix string }{
	{"socket writes", "net.(*conn).Write"},
	{"socket reads", "net.(*conn).Read"},
	{"idgen's request handler", "github.com/idgen/idgen/functions/httpapi.(*Service).Handle"},
	{"registry flusher (Redis round trips)", "github.com/idgen/idgen/shared/registry/redisstore.(*Store).flusher"},
	{"registry flusher (group commits)", "github.com/idgen/idgen/shared/registry/pebblestore.(*Store).flusher"},
	{"registry flusher (group commits)", "github.com/idgen/idgen/shared/registry/boltstore.(*Store).flusher"},
	{"ID generation (Generator)", "github.com/idgen/idgen/shared/generator.(*Generator).NextN"},
	{"ID generation (Generator)", "github.com/idgen/idgen/shared/generator.(*Generator).Next"},
	{"monotonic clock reads", "runtime.nanotime"},
	{"JSON encoding of the answer", "encoding/json."},
	{"metrics", "github.com/prometheus/client_golang/"},
	{"GC background workers", "runtime.gcBgMarkWorker"},
	{"scheduler looking for work", "runtime.findRunnable"},
}

// pickComponents returns the share of each component present in entries
// (a cumulative listing), largest first, one entry per label.
func pickComponents(entries []topEntry) []topEntry {
	var out []topEntry
	seen := map[string]bool{}
	for _, c := range components {
		if seen[c.label] {
			continue
		}
		best := 0.0
		for _, e := range entries {
			if strings.HasPrefix(e.Func, c.prefix) {
				best = max(best, e.CumPct)
			}
		}
		if best >= 0.5 {
			out = append(out, topEntry{Func: c.label, CumPct: best})
			seen[c.label] = true
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CumPct > out[j].CumPct })
	return out
}
