package httpapi_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestHealth: /health, /health/live and /health/ready answer 200 ok with the
// serve.go checks; after SetDraining readiness and /health answer 503 down
// with Retry-After while liveness stays 200.
func TestHealth(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	type health struct {
		Status string `json:"status"`
		Checks map[string]struct {
			Status string `json:"status"`
			Error  string `json:"error"`
		} `json:"checks"`
	}
	read := func(t *testing.T, path string, status int, keys ...string) health {
		t.Helper()
		r := h.get(t, path)
		if r.status != status {
			t.Fatalf("GET %s: %s, want status %d", path, r, status)
		}
		assertJSON(t, r)
		decodeExact(t, r.body, keys...)
		var v health
		if err := json.Unmarshal(r.body, &v); err != nil {
			t.Fatal(err)
		}
		if status == 503 && r.h("Retry-After") == "" {
			t.Errorf("GET %s: 503 without Retry-After", path)
		}
		return v
	}

	t.Run("serving", func(t *testing.T) {
		v := read(t, "/health", 200, "status", "checks")
		if v.Status != "ok" || len(v.Checks) != 2 || v.Checks["store"].Status != "ok" || v.Checks["ranges"].Status != "ok" {
			t.Errorf("/health %+v, want ok with store and ranges ok", v)
		}
		if v := read(t, "/health/live", 200, "status"); v.Status != "ok" {
			t.Errorf("/health/live %+v", v)
		}
		if v := read(t, "/health/ready", 200, "status"); v.Status != "ok" {
			t.Errorf("/health/ready %+v", v)
		}
	})

	h.svc.SetDraining()
	t.Run("draining", func(t *testing.T) {
		if v := read(t, "/health/ready", 503, "status"); v.Status != "down" {
			t.Errorf("/health/ready %+v, want down", v)
		}
		v := read(t, "/health", 503, "status", "checks")
		if v.Status != "down" || v.Checks["shutdown"].Status != "down" || v.Checks["store"].Status != "ok" {
			t.Errorf("/health %+v, want down with a shutdown check", v)
		}
		if v := read(t, "/health/live", 200, "status"); v.Status != "ok" {
			t.Errorf("/health/live %+v, want ok while draining", v)
		}
		// Draining only steers load balancers away; requests in flight and
		// stragglers are still served.
		h.generateOne(t, "")
	})
}

// TestMetrics: /metrics is Prometheus text with the request histogram
// labelled by route and status, and the count of issued IDs.
func TestMetrics(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.generateOne(t, "")
	h.post(t, "/generate", `{"count":4}`)
	h.get(t, "/nope")
	h.get(t, "/generate")
	h.get(t, "/ids/not-an-id")

	r := h.get(t, "/metrics")
	if r.status != 200 || !strings.HasPrefix(r.h("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d, Content-Type %q", r.status, r.h("Content-Type"))
	}
	for _, tc := range []struct {
		series string
		want   float64
	}{
		{`idgen_http_request_duration_seconds_count{route="/generate",status="200"}`, 2},
		{`idgen_http_request_duration_seconds_count{route="/generate",status="405"}`, 1},
		{`idgen_http_request_duration_seconds_count{route="other",status="404"}`, 1},
		{`idgen_http_request_duration_seconds_count{route="/ids/{id}",status="400"}`, 1},
		{`idgen_ids_issued_total`, 5},
		{`idgen_registry_collisions_total`, 0},
		{`idgen_range_claims_total`, 1},
	} {
		t.Run(tc.series, func(t *testing.T) {
			if got := h.metric(t, tc.series); got != tc.want {
				t.Errorf("%s = %v, want %v", tc.series, got, tc.want)
			}
		})
	}
	for _, name := range []string{
		`idgen_http_request_duration_seconds_bucket{route="/generate",status="200",le="`,
		"\nidgen_range_headroom ", "\nidgen_registry_batch_size_count ", "\ngo_goroutines ",
	} {
		if !strings.Contains(string(r.body), name) {
			t.Errorf("/metrics has no %q", name)
		}
	}
}

// TestLogs: /logs serves the ring's entries newest last; ?request_id= keeps
// the lines of one request (the commit's "saga transition" among them);
// ?level= and ?limit= filter.
func TestLogs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ids := []string{h.generateOne(t, "").String(), h.generateOne(t, "").String()}
	for i, rid := range []string{"logs-test-1", "logs-test-2"} {
		r := h.do(t, call{method: "POST", path: "/commit", body: `{"id":"` + ids[i] + `"}`, header: map[string]string{"X-Request-ID": rid}})
		if r.status != 200 || r.h("X-Request-ID") != rid {
			t.Fatalf("commit: %s, X-Request-ID %q", r, r.h("X-Request-ID"))
		}
	}

	type entry map[string]any
	entries := func(t *testing.T, query string) []entry {
		t.Helper()
		r := h.get(t, "/logs"+query)
		if r.status != 200 {
			t.Fatalf("GET /logs%s: %s", query, r)
		}
		assertJSON(t, r)
		var v struct {
			Entries []entry `json:"entries"`
		}
		decodeExact(t, r.body, "entries")
		if err := json.Unmarshal(r.body, &v); err != nil || v.Entries == nil {
			t.Fatalf("GET /logs%s body %s: %v", query, r.body, err)
		}
		return v.Entries
	}

	t.Run("by request ID", func(t *testing.T) {
		es := entries(t, "?request_id=logs-test-1")
		transitions := 0
		for _, e := range es {
			if e["request_id"] != "logs-test-1" {
				t.Errorf("entry of another request: %v", e)
			}
			if e["msg"] == "saga transition" {
				transitions++
				if e["level"] != "info" || e["id"] != ids[0] || e["state"] != "committed" || e["outcome"] != "applied" {
					t.Errorf("saga transition entry %v", e)
				}
			}
		}
		// The request's access line ("request") carries its request ID too.
		if len(es) < 2 {
			t.Errorf("%d entries for the request, want its saga transition and request lines: %v", len(es), es)
		}
		if transitions != 1 {
			t.Errorf("%d saga transition entries for the request, want 1 (entries %v)", transitions, es)
		}
		if len(entries(t, "?request_id=no-such-request")) != 0 {
			t.Errorf("entries for an unknown request ID")
		}
	})

	t.Run("newest last", func(t *testing.T) {
		pos := map[string]int{}
		for i, e := range entries(t, "?level=info") {
			if e["msg"] == "saga transition" {
				pos[e["request_id"].(string)] = i
			}
		}
		p1, ok1 := pos["logs-test-1"]
		p2, ok2 := pos["logs-test-2"]
		if !ok1 || !ok2 || p1 >= p2 {
			t.Errorf("saga transitions at %v, want logs-test-1 before logs-test-2", pos)
		}
	})

	t.Run("level", func(t *testing.T) {
		rank := map[string]int{"debug": 0, "info": 1, "warn": 2, "error": 3}
		for _, lvl := range []string{"debug", "info", "warn", "error"} {
			for _, e := range entries(t, "?level="+lvl) {
				if rank[e["level"].(string)] < rank[lvl] {
					t.Errorf("?level=%s returned a %s entry", lvl, e["level"])
				}
			}
		}
		if len(entries(t, "?level=warn")) >= len(entries(t, "?level=info")) {
			t.Errorf("warn level shows no fewer entries than info (access lines and saga transitions are info)")
		}
	})

	t.Run("limit", func(t *testing.T) {
		// Each call's own access line is logged after its answer is
		// made, so the second call sees the first's as its newest entry:
		// limit keeps the newest.
		last := entries(t, "?level=info&limit=2")
		all := entries(t, "?level=info&limit=1000")
		if len(all) < 3 || len(last) != 2 {
			t.Fatalf("%d info entries, %d with limit 2", len(all), len(last))
		}
		if e := all[len(all)-1]; e["msg"] != "request" || e["route"] != "/logs" {
			t.Fatalf("newest entry %v, want the access line of the call with limit 2", e)
		}
		a, _ := json.Marshal(all[len(all)-3 : len(all)-1])
		b, _ := json.Marshal(last)
		if string(a) != string(b) {
			t.Errorf("limit 2 gave %s, want the newest two %s", b, a)
		}
		if n := len(entries(t, "?limit=1")); n != 1 {
			t.Errorf("limit 1 gave %d entries", n)
		}
		if n := len(entries(t, "")); n > 100 {
			t.Errorf("default limit gave %d entries, want at most 100", n)
		}
	})
}

// TestRequestID: X-Request-ID is echoed when valid, generated (unique) when
// absent or unusable, on success and error answers alike.
func TestRequestID(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	generated := map[string]bool{}
	for _, tc := range []struct {
		name  string
		given string // "" = header absent
		echo  bool
		c     call
	}{
		{"given on success", "req-123", true, call{method: "GET", path: "/health/live"}},
		{"given on error", "req-456_x.y:z", true, call{method: "GET", path: "/nope"}},
		{"given on generate", "gen-1", true, call{method: "POST", path: "/generate", body: "{}"}},
		{"128 characters", strings.Repeat("r", 128), true, call{method: "GET", path: "/health/live"}},
		{"absent on success", "", false, call{method: "GET", path: "/health/live"}},
		{"absent on error", "", false, call{method: "POST", path: "/commit", body: "{}"}},
		{"absent again", "", false, call{method: "GET", path: "/health/live"}},
		{"129 characters", strings.Repeat("r", 129), false, call{method: "GET", path: "/health/live"}},
		{"with a space", "a b", false, call{method: "GET", path: "/health/live"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c
			if tc.given != "" {
				c.header = map[string]string{"X-Request-ID": tc.given}
			}
			got := h.do(t, c).h("X-Request-ID")
			if tc.echo {
				if got != tc.given {
					t.Errorf("X-Request-ID %q, want %q echoed", got, tc.given)
				}
				return
			}
			if got == "" || got == tc.given || len(got) > 128 {
				t.Errorf("X-Request-ID %q, want a generated ID", got)
			}
			if generated[got] {
				t.Errorf("generated X-Request-ID %q twice", got)
			}
			generated[got] = true
		})
	}
}

// TestInstances: /instances lists the members the Membership reports.
func TestInstances(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := h.get(t, "/instances")
	if r.status != 200 {
		t.Fatalf("GET /instances: %s", r)
	}
	var v struct {
		Instances []map[string]any `json:"instances"`
	}
	decodeExact(t, r.body, "instances")
	if err := json.Unmarshal(r.body, &v); err != nil || len(v.Instances) != 1 {
		t.Fatalf("body %s", r.body)
	}
	in := v.Instances[0]
	if in["worker"] != 0.0 || in["address"] != "idgen.test" || in["started_at"] == nil {
		t.Errorf("instance %v", in)
	}
}
