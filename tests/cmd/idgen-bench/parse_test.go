package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	out := `Running 5s test @ http://127.0.0.1:1/generate
  2 threads and 32 connections
  Latency Distribution
     50%  410.00us
  150000 requests in 5.00s, 20.00MB read
  Non-2xx or 3xx responses: 7
Requests/sec:  30000.00
pct 50 410
pct 99 2500
pct 99.9 9100
sum 150000 5000000 1 2 3 7 4
`
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.requests != 150000 || r.elapsed != 5*time.Second || math.Abs(r.rps-30000) > 1e-6 {
		t.Errorf("requests %v elapsed %v rps %v", r.requests, r.elapsed, r.rps)
	}
	if r.p50 != 410*time.Microsecond || r.p99 != 2500*time.Microsecond || r.p999 != 9100*time.Microsecond {
		t.Errorf("percentiles %v %v %v", r.p50, r.p99, r.p999)
	}
	if r.non2xx != 7 || r.sockErrors != 1+2+3+4 {
		t.Errorf("non2xx %d socket errors %d", r.non2xx, r.sockErrors)
	}
	if _, err := parseWrk("Requests/sec: 1\n"); err == nil {
		t.Error("output without the summary line parsed")
	}
}

// TestCheckAnswers: a non-2xx answer fails an idgen run; the strawman's
// refusals are kept, and its requests/s counts the answers that issued an ID.
func TestCheckAnswers(t *testing.T) {
	run := func() wrkResult {
		return wrkResult{requests: 1000, elapsed: 5 * time.Second, rps: 200, non2xx: 100}
	}
	w := run()
	if err := (&instance{key: "pebble"}).checkAnswers(&w); err == nil || !strings.Contains(err.Error(), "100 non-2xx answers of 1000") {
		t.Errorf("idgen with 100 refusals: err %v, want the count", err)
	}
	w = run()
	if err := (&instance{key: "naive", refuses: true}).checkAnswers(&w); err != nil {
		t.Fatalf("strawman: %v", err)
	}
	if math.Abs(w.rps-180) > 1e-9 {
		t.Errorf("strawman requests/s %v, want 180 (900 issued in 5 s)", w.rps)
	}
	w = wrkResult{requests: 1000, elapsed: 5 * time.Second, rps: 200}
	if err := (&instance{key: "pebble"}).checkAnswers(&w); err != nil || w.rps != 200 {
		t.Errorf("all 2xx: err %v, rps %v", err, w.rps)
	}
}

func TestParseTopAndCategories(t *testing.T) {
	out := `File: idgen
Type: cpu
Duration: 4s, Total samples = 6s (150.00%)
      flat  flat%   sum%        cum   cum%
     2.40s 40.00% 40.00%      2.40s 40.00%  internal/runtime/syscall/linux.Syscall6
     1.20s 20.00% 60.00%      1.50s 25.00%  runtime.mallocgc
     0.60s 10.00% 70.00%      0.60s 10.00%  runtime.futex
     0.60s 10.00% 80.00%      3.00s 50.00%  github.com/valyala/fasthttp.(*Server).serveConn
     0.60s 10.00% 90.00%      0.90s 15.00%  github.com/idgen/idgen/functions/httpapi.(*Service).Handle (inline)
     0.60s 10.00%   100%      0.60s 10.00%  somepkg.Unknown
`
	es, cores := parseTop(out)
	if len(es) != 6 || cores != 1.5 {
		t.Fatalf("%d entries, %v cores", len(es), cores)
	}
	if es[4].Func != "github.com/idgen/idgen/functions/httpapi.(*Service).Handle (inline)" || es[4].CumPct != 15 {
		t.Errorf("entry 4 = %+v", es[4])
	}
	cats := categorize(es)
	got := map[string]float64{}
	total := 0.0
	for _, c := range cats {
		got[c.Name] = c.Pct
		total += c.Pct
	}
	if math.Abs(total-100) > 1e-9 {
		t.Errorf("categories sum to %v%%", total)
	}
	for name, want := range map[string]float64{
		"syscalls: network reads/writes, epoll":                   40,
		"GC and allocation":                                       20,
		"Go scheduler: goroutine park/wake, idle spinning, futex": 10,
		"fasthttp: HTTP parsing and connection handling":          10,
		"idgen's own code":                                        10,
		"other":                                                   10,
	} {
		if got[name] != want {
			t.Errorf("category %q = %v, want %v (all: %v)", name, got[name], want, got)
		}
	}
	if cats[0].Name != "syscalls: network reads/writes, epoll" {
		t.Errorf("largest category = %q", cats[0].Name)
	}
}
