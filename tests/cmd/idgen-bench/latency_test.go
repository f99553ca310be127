package main

import (
	"math"
	"testing"
	"time"
)

// labInstances are instances as httpBench sets them up, without servers.
func labInstances() []*instance {
	return []*instance{
		{key: "ceiling", name: "ceiling: fasthttp constant ID"},
		{key: "pebble", name: "idgen embedded (pebble)", metrics: true, batch: true},
		{key: "redis", name: "idgen + Redis (ZooKeeper, no WAIT)", metrics: true, zk: true, batch: true},
		{key: "durable", name: "idgen + ZooKeeper + Redis durable (WAIT 1)", metrics: true, zk: true, batch: true},
		{key: "naive", name: "naive: per-request ZooKeeper CAS + Redis SETNX", metrics: true, zk: true},
	}
}

// measureFake gives every target three samples whose figures tell the
// target and its connection count apart: p99 = conns ms + round.
func measureFake(ts []*target) {
	for r := range 3 {
		for _, t := range ts {
			p99 := time.Duration(t.conns+r) * time.Millisecond
			t.samples = append(t.samples, sample{w: wrkResult{rps: float64(1000 * t.conns), p50: time.Millisecond, p99: p99, p999: 2 * p99},
				ids: 1000, flushes: 10})
		}
	}
}

func TestPlanLatencyRuns(t *testing.T) {
	cfg := config{conns: 64, latConns: 32}
	targets, lat := plan(labInstances(), cfg)
	if len(targets) != 5+3 {
		t.Fatalf("%d throughput targets, want 8", len(targets))
	}
	for _, tg := range targets {
		if tg.conns != 64 {
			t.Errorf("%s at %d connections, want 64", tg.name, tg.conns)
		}
	}
	if len(lat) != 2 || lat[0].key != "redis" || lat[1].key != "durable" {
		t.Fatalf("latency targets %v", lat)
	}
	for _, tg := range lat {
		if tg.conns != 32 || tg.ids != 1 || tg.body != "" || tg.name != tg.in.name+", 32 connections" {
			t.Errorf("latency target %+v", tg)
		}
	}
	measureFake(append(append([]*target(nil), targets...), lat...))
	res := &results{Connections: 64, LatencyConnections: 32}
	collect(res, targets, lat)
	if len(res.HTTP) != 8 || len(res.Coord) != 7 || len(res.Latency) != 2 || res.LatencyReused {
		t.Fatalf("HTTP %d, Coord %d, Latency %d, reused %v", len(res.HTTP), len(res.Coord), len(res.Latency), res.LatencyReused)
	}
	for _, h := range res.HTTP {
		if h.Conns != 64 || h.P99 != 65*time.Millisecond {
			t.Errorf("%s: %d connections, p99 %v", h.Key, h.Conns, h.P99)
		}
	}
	for i, key := range []string{"redis", "durable"} {
		h := res.Latency[i]
		if h.Key != key || h.Conns != 32 || h.P99 != 33*time.Millisecond || h.Name != lat[i].in.name || len(h.RoundsP99) != 3 || h.RoundsP99[2] != 34*time.Millisecond {
			t.Errorf("latency %d: %+v", i, h)
		}
	}
	// The round trips per ID: flushes ÷ IDs over the throughput runs, as
	// in the coordination table (no Redis client here: the figure is NaN,
	// and the goal not measured).
	if c, ok := res.coord("redis"); !ok || c.RegistryWritesPerID != 0.01 || !math.IsNaN(c.RedisRTPerID) {
		t.Errorf("coord redis: %+v", c)
	}
	for _, g := range res.goals() {
		if g.Name == "p99 ≤ 5 ms at 32 connections: idgen + Redis" && (g.Missing || g.Measured != "33.0 ms at 32 connections") {
			t.Errorf("%s: %+v", g.Name, g)
		}
		if g.Name == "Redis round trips per ID at saturation ≤ 0.05" && !g.Missing {
			t.Errorf("%s: %+v", g.Name, g)
		}
	}
}

// TestPlanLatencyReused: -latency-connections equal to -connections
// measures nothing twice and reuses the throughput runs.
func TestPlanLatencyReused(t *testing.T) {
	targets, lat := plan(labInstances(), config{conns: 32, latConns: 32})
	if len(lat) != 0 {
		t.Fatalf("%d latency targets, want none", len(lat))
	}
	measureFake(targets)
	res := &results{Connections: 32, LatencyConnections: 32}
	collect(res, targets, lat)
	if len(res.Latency) != 2 || !res.LatencyReused {
		t.Fatalf("Latency %d, reused %v", len(res.Latency), res.LatencyReused)
	}
	for i, key := range []string{"redis", "durable"} {
		h := res.Latency[i]
		if h.Key != key || h.Batch || h.Conns != 32 {
			t.Errorf("latency %d: %+v", i, h)
		}
		if m, _ := res.http(key); m.P99 != h.P99 || m.RPS != h.RPS {
			t.Errorf("%s: latency run %+v is not the throughput run %+v", key, h, m)
		}
	}
}
