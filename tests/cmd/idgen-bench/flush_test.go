package main

import (
	"math"
	"strings"
	"testing"
)

// Flush latency comes from the server's histogram: bucket deltas between
// two scrapes, the mean from sum/count, and the p99 as the upper bound of
// the bucket that holds it.
func TestFlushLatencyFromHistogram(t *testing.T) {
	before := map[string]float64{
		`idgen_registry_flush_seconds_bucket{le="0.0001"}`: 10,
		`idgen_registry_flush_seconds_bucket{le="0.0002"}`: 20,
		`idgen_registry_flush_seconds_bucket{le="0.0004"}`: 30,
		`idgen_registry_flush_seconds_bucket{le="+Inf"}`:   30,
		`idgen_registry_batch_size_bucket{le="1"}`:         5,
	}
	after := map[string]float64{
		`idgen_registry_flush_seconds_bucket{le="0.0001"}`: 10,   // +0
		`idgen_registry_flush_seconds_bucket{le="0.0002"}`: 920,  // +900
		`idgen_registry_flush_seconds_bucket{le="0.0004"}`: 1025, // +995
		`idgen_registry_flush_seconds_bucket{le="+Inf"}`:   1030, // +1000
		`idgen_registry_batch_size_bucket{le="1"}`:         9,
	}
	d := bucketDeltas(before, after, "idgen_registry_flush_seconds_bucket")
	if len(d) != 4 || d[0.0002] != 900 || d[math.Inf(1)] != 1000 {
		t.Fatalf("deltas = %v", d)
	}
	if q := bucketQuantile(d, 0.99); q != 0.0004 {
		t.Fatalf("p99 bound = %v, want 0.0004", q)
	}
	if q := bucketQuantile(d, 0.5); q != 0.0002 {
		t.Fatalf("p50 bound = %v, want 0.0002", q)
	}
	d[0.0004] = 980 // 2% past the last finite bucket
	if q := bucketQuantile(d, 0.99); !math.IsInf(q, 1) {
		t.Fatalf("p99 past the last finite bucket = %v, want +Inf", q)
	}
	if q := bucketQuantile(map[float64]float64{0.1: 0, math.Inf(1): 0}, 0.99); !math.IsNaN(q) {
		t.Fatalf("no observations: %v, want NaN", q)
	}

	tg := &target{in: &instance{metrics: true}, key: "pebble", name: "idgen embedded (pebble)",
		samples: []sample{{ids: 1000, flushes: 40, flushSecs: 0.02, flushBuckets: d}, {ids: 1000, flushes: 60, flushSecs: 0.03, flushBuckets: d}}}
	c := tg.coord()
	if math.Abs(c.FlushMeanMS-0.5) > 1e-9 {
		t.Fatalf("mean flush = %v ms, want 0.5", c.FlushMeanMS)
	}
	naive := (&target{in: &instance{metrics: true}, key: "naive", samples: []sample{{ids: 10, flushes: 10}}}).coord()
	if !math.IsNaN(naive.FlushMeanMS) || !math.IsNaN(naive.FlushP99MS) {
		t.Fatalf("no flush histogram: mean %v, p99 %v; want NaN", naive.FlushMeanMS, naive.FlushP99MS)
	}
	var b strings.Builder
	writeMarkdown(&b, &results{Coord: []coordResult{c}})
	if !strings.Contains(b.String(), "| flush latency mean | flush latency p99 ≤ |") || !strings.Contains(b.String(), "| 0.50 ms | > last bucket |") {
		t.Fatalf("coordination table:\n%s", b.String())
	}
}
