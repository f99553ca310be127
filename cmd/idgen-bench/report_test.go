package main

import (
	"encoding/xml"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"time"
)

// sampleResults is a run whose targets are known: idgen + Redis at 0.6×
// the ceiling (PASS, moonshot MISS), p99 3 ms (PASS), durable p99 8 ms
// (MISS), batches 1.5M IDs/s (MISS by 25%), 60× naive (PASS), hot path at
// 0.1× NewV7 (PASS).
func sampleResults() *results {
	ms := time.Millisecond
	nan := math.NaN()
	cpu := cpuUse{Server: 0.8, Redis: 0.3, ZK: 0.01, Wrk: 0.6, Rest: 0.2}
	return &results{
		Machine: machine{CPU: "Test CPU @ 3.0GHz", Cores: 2, GOMAXPROCS: 2, GoVersion: "go1.26.0", Kernel: "Linux 6.1", LoadAvg: "0.1 0.2 0.3",
			Wrk: "wrk 4.1.0", Redis: "Redis server v=7.0.15", IdgenGo: "go1.26.0", IdgenBuild: "abcdef123456"},
		Command: "go run ./cmd/idgen-bench -idgen bin/idgen", Started: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC), Elapsed: 5 * time.Minute,
		Rounds: 3, Duration: 5 * time.Second, Warmup: 2 * time.Second, Connections: 32, Benchtime: time.Second,
		InProcess: []peerResult{
			{Name: "idgen hot path", SerialNs: 5, ParallelNs: 3},
			{Name: "google/uuid NewV7", SerialNs: 50, SerialAllocs: 0, ParallelNs: 40},
			{Name: "sony/sonyflake", SerialNs: 39000, ParallelNs: 39000},
		},
		HTTP: []httpResult{
			{Key: "ceiling", Inst: "ceiling", Name: "ceiling: fasthttp constant ID", IDsPerReq: 1, RPS: 100000, P50: ms / 4, P99: 2 * ms, P999: 4 * ms, CPU: cpu, RoundsRPS: []float64{1e5, 1e5, 1e5}},
			{Key: "pebble", Inst: "pebble", Name: "idgen embedded (pebble)", IDsPerReq: 1, RPS: 20000, P50: ms, P99: 4 * ms, P999: 8 * ms, CPU: cpu, RoundsRPS: []float64{2e4, 2e4, 2e4}},
			{Key: "pebble-tls-jwt", Inst: "pebble-tls-jwt", Name: "idgen embedded (pebble), TLS + JWT (ES256)", IDsPerReq: 1, RPS: 15000, P50: 2 * ms, P99: 5 * ms, P999: 9 * ms,
				CPU: cpuUse{Server: 0.9, Wrk: 0.7, Rest: 0.2}, RoundsRPS: []float64{1.4e4, 1.5e4, 1.6e4}},
			{Key: "redis", Inst: "redis", Name: "idgen + Redis (ZooKeeper, no WAIT)", IDsPerReq: 1, RPS: 60000, P50: ms / 2, P99: 3 * ms, P999: 6 * ms, CPU: cpu},
			{Key: "durable", Inst: "durable", Name: "idgen + ZooKeeper + Redis durable (WAIT 1)", IDsPerReq: 1, RPS: 20000, P50: ms, P99: 8 * ms, P999: 12 * ms, CPU: cpu},
			{Key: "naive", Inst: "naive", Name: "naive: per-request ZooKeeper CAS + Redis SETNX", IDsPerReq: 1, RPS: 1000, P50: 30 * ms, P99: 300 * ms, P999: 500 * ms, CPU: cpu},
			{Key: "redis-batch", Inst: "redis", Name: "idgen + Redis (ZooKeeper, no WAIT), count=1000", Batch: true, IDsPerReq: 1000, RPS: 1500, P50: 20 * ms, P99: 40 * ms, P999: 50 * ms, CPU: cpu},
		},
		Auth: []authResult{
			{Name: "HS256", BaselineNs: 4000, BaselineAllocs: 46, FirstNs: 7000, FirstAllocs: 56, CachedNs: 450, CachedAllocs: 1, ParallelNs: 350, ParallelAllocs: 1},
			{Name: "ES256", BaselineNs: 4200, BaselineAllocs: 46, FirstNs: 92000, FirstAllocs: 73, CachedNs: 500, CachedAllocs: 1, ParallelNs: 450, ParallelAllocs: 1},
		},
		Coord: []coordResult{
			{Key: "redis", Name: "idgen + Redis (ZooKeeper, no WAIT)", IDs: 900000, ZKWritesPer1M: 1.1, RangeClaimsPer1M: 1.1, CASConflictsPerID: 0, RegistryWritesPerID: 0.05, RedisRTPerID: 0.05, RedisCmdsPerID: 0.06, BytesPerID: 42},
			{Key: "pebble", Name: "idgen embedded (pebble)", IDs: 1000, ZKWritesPer1M: nan, RangeClaimsPer1M: 0, CASConflictsPerID: nan, RegistryWritesPerID: 0.1, RedisRTPerID: nan, RedisCmdsPerID: nan, BytesPerID: nan},
		},
		ColdStart: []coldResult{{Key: "redis", Name: "idgen + Redis (ZooKeeper, no WAIT)", Median: 40 * ms, Min: 30 * ms, Max: 60 * ms}},
		Profiles: []profileResult{{Key: "durable", Name: "idgen + ZooKeeper + Redis durable (WAIT 1)", File: "profile-durable.txt", Context: "during a run.", Cores: 0.9,
			Categories: []category{{"syscalls: network reads/writes, epoll", 45}, {"GC and allocation", 20}},
			Top:        []topEntry{{"internal/runtime/syscall/linux.Syscall6", 45, 45}},
			Cum:        []topEntry{{"github.com/redis/go-redis/v9.(*baseClient).process", 1, 30}}}},
		Notes: []string{"a note"},
	}
}

func TestGoals(t *testing.T) {
	gs := sampleResults().goals()
	want := map[string]bool{
		"idgen + Redis ≥ 0.5× the ceiling (requests/s)":                   true,
		"moonshot: idgen + Redis ≥ 0.7× the ceiling":                      false,
		"p99 ≤ 5 ms at 32 connections: idgen + Redis":                     true,
		"p99 ≤ 5 ms at 32 connections: durable (WAIT 1)":                  false,
		"≥ 2M IDs/s in batches (idgen + Redis, count=1000, one instance)": false,
		"≥ 20× the naive design (idgen + Redis ÷ naive, requests/s)":      true,
		"hot path ≤ 1/5 of NewV7 (ns/ID, serial)":                         true,
	}
	if len(gs) != len(want) {
		t.Fatalf("%d goals, want %d", len(gs), len(want))
	}
	for _, g := range gs {
		pass, ok := want[g.Name]
		if !ok {
			t.Errorf("unexpected goal %q", g.Name)
			continue
		}
		if g.Missing || g.Pass != pass {
			t.Errorf("%s: pass %v missing %v, want pass %v", g.Name, g.Pass, g.Missing, pass)
		}
		if g.Pass != (g.Ratio >= 1) {
			t.Errorf("%s: ratio %v disagrees with pass %v", g.Name, g.Ratio, g.Pass)
		}
	}
	empty := (&results{Connections: 32}).goals()
	for _, g := range empty {
		if !g.Missing || g.Pass {
			t.Errorf("%s: with no data: missing %v pass %v", g.Name, g.Missing, g.Pass)
		}
	}
}

func TestWriteMarkdown(t *testing.T) {
	var b strings.Builder
	writeMarkdown(&b, sampleResults())
	md := b.String()
	for _, want := range []string{
		"| CPU | Test CPU @ 3.0GHz |",
		"| cores | 2 (GOMAXPROCS 2) |",
		"go1.26.0",
		"2026-11-26 12:00 UTC",
		"`go run ./cmd/idgen-bench -idgen bin/idgen`",
		"![throughput ratios and latency percentiles](chart.svg)",
		"| idgen + Redis ≥ 0.5× the ceiling (requests/s) | 0.60× (60,000 vs 100,000 req/s) | 1.20 | **PASS** |",
		"| moonshot: idgen + Redis ≥ 0.7× the ceiling | 0.60× | 0.86 | **MISS (moonshot)** |",
		"| p99 ≤ 5 ms at 32 connections: durable (WAIT 1) | 8.00 ms at 32 connections | 0.62 | **MISS** |",
		"| ≥ 2M IDs/s in batches (idgen + Redis, count=1000, one instance) | 1,500,000 IDs/s | 0.75 | **MISS** |",
		"| ≥ 20× the naive design (idgen + Redis ÷ naive, requests/s) | 60.0× (60,000 vs 1,000 req/s) | 3.00 | **PASS** |",
		"| hot path ≤ 1/5 of NewV7 (ns/ID, serial) | 0.100× (5.0 vs 50.0 ns/ID; parallel 3.0 vs 40.0) | 2.00 | **PASS** |",
		"short by 25% (needs 1.33× more)",
		"over by 60% (1.60× the goal)",
		"[profile-durable.txt](profile-durable.txt)): the profiled process got 0.90 cores; its CPU went to syscalls: network reads/writes, epoll 45%",
		"| ceiling: fasthttp constant ID | 100,000 | 1.00× | 0.25 ms | 2.00 ms | 4.00 ms | 0 | 100,000 / 100,000 / 100,000 |",
		"| idgen + Redis (ZooKeeper, no WAIT) | 1,500 | 1,500,000 | 15.00× |",
		"| idgen embedded (pebble) | 1,000 | — | 0.0 | — | 0.1000 | — | — | — |",
		"| idgen + Redis (ZooKeeper, no WAIT) | 40.0 ms | 30.0 ms | 60.0 ms |",
		"- a note",
		"## Cost of TLS + JWT",
		"| idgen embedded (pebble): TLS + JWT ÷ plain | 15,000 | 20,000 | **0.75×** | 2.00 ms / 1.00 ms | 5.00 ms / 4.00 ms | 60.0 / 55.5 |",
		"Requests/s per round: TLS + JWT 14,000 / 15,000 / 16,000; plain 20,000 / 20,000 / 20,000. Ratio round by round (each pair ran back to back): 0.70× / 0.75× / 0.80×.",
		"| ES256 | 4200 (46) | 92000 (73) | 500 (1) | 450 (1) |",
		"A TLS + JWT request took 60.0 µs of server CPU against 55.5 µs plain (+4.5 µs). Of that, the token check (cached ES256) is 0.50 µs (0.8% of the request)",
		"A caller's first request with a new token pays 92 µs once.",
		"Load average when the run started: 0.1 0.2 0.3 (2 cores)",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("results.md lacks %q", want)
		}
	}
	// The goal that passes has no miss line; the ones that miss have one.
	if strings.Contains(md, "- **idgen + Redis ≥ 0.5× the ceiling") || !strings.Contains(md, "- **p99 ≤ 5 ms at 32 connections: durable (WAIT 1)**") {
		t.Error("miss explanations do not match the goals")
	}
	if strings.Contains(md, "NaN") || strings.Contains(md, "Inf") {
		t.Error("results.md prints NaN or Inf")
	}
	if t.Failed() {
		t.Log(md)
	}
}

func TestWriteSVG(t *testing.T) {
	r := sampleResults()
	var b strings.Builder
	writeSVG(&b, r)
	svg := b.String()
	// Well-formed XML with an <svg> root.
	d := xml.NewDecoder(strings.NewReader(svg))
	var root string
	rects, texts := 0, []string{}
	inText := false
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("chart.svg is not well-formed: %v\n%s", err, svg)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = e.Name.Local
			}
			switch e.Name.Local {
			case "rect":
				rects++
				for _, a := range e.Attr {
					if a.Name.Local == "width" && strings.HasPrefix(a.Value, "-") {
						t.Errorf("negative bar width %s", a.Value)
					}
				}
			case "text":
				inText = true
			}
		case xml.CharData:
			if inText {
				texts = append(texts, string(e))
			}
		case xml.EndElement:
			inText = false
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q", root)
	}
	all := strings.Join(texts, "\n")
	for _, want := range []string{"ceiling: fasthttp constant ID", "naive: per-request ZooKeeper CAS + Redis SETNX", "0.60×  60,000 req/s",
		"p99 3.00 ms", "target 0.5×", "moonshot 0.7×", "p99 target 5 ms", "1,500,000 IDs/s", "target 2M IDs/s", "5.0 ns, 0 allocs", "target: 1/5 of NewV7"} {
		if !strings.Contains(all, want) {
			t.Errorf("chart has no label %q", want)
		}
	}
	// Background, 6 single-ID bars, 6×3 percentile bars, 3 legend boxes, 1 batch bar, 3 in-process bars.
	if want := 1 + 6 + 18 + 3 + 1 + 3; rects != want {
		t.Errorf("%d rects, want %d", rects, want)
	}
	if strings.Contains(svg, "NaN") || strings.Contains(svg, "Inf") {
		t.Error("chart.svg holds NaN or Inf")
	}
}
