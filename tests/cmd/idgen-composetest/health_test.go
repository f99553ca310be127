package main

import (
	"strings"
	"testing"
	"time"
)

// The fields parseInspect reads, in the layout `docker inspect` prints
// (Docker 20.10 here): two idgen containers and a one-shot one without a
// healthcheck.
const inspectSample = `[
 {"Id": "aaa111", "Name": "/idgenct1_idgen_1",
  "State": {"Status": "running", "Health": {"Status": "unhealthy", "FailingStreak": 3,
   "Log": [
    {"Start": "2026-11-27T09:00:00.000000000Z", "End": "2026-11-27T09:00:00.020000000Z", "ExitCode": 0, "Output": "ok"},
    {"Start": "2026-11-27T09:00:05.000000000Z", "End": "2026-11-27T09:00:08.000000000Z", "ExitCode": -1, "Output": "Health check exceeded timeout (3s)\n"}]}}},
 {"Id": "bbb222", "Name": "/idgenct1_idgen_2",
  "State": {"Status": "running", "Health": {"Status": "healthy", "FailingStreak": 0, "Log": []}}},
 {"Id": "ccc333", "Name": "/idgenct1_keygen_1", "State": {"Status": "exited"}}
]`

func TestParseInspect(t *testing.T) {
	cs, err := parseInspect([]byte(inspectSample))
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 3 {
		t.Fatalf("got %d containers, want 3", len(cs))
	}
	a := cs[0]
	if a.Name != "idgenct1_idgen_1" || a.Health != "unhealthy" || a.Streak != 3 || a.State != "running" {
		t.Errorf("first container: %+v", a)
	}
	if want := "exit -1 after 3s: Health check exceeded timeout (3s)"; a.Probe != want {
		t.Errorf("probe = %q, want %q", a.Probe, want)
	}
	if cs[1].Health != "healthy" || cs[1].Probe != "" {
		t.Errorf("second container: %+v", cs[1])
	}
	if cs[2].Health != "" {
		t.Errorf("a container without a healthcheck has health %q", cs[2].Health)
	}
	if _, err := parseInspect([]byte("Error: No such object: x")); err == nil {
		t.Error("non-JSON output parsed without error")
	}
}

func TestHealthWatchRecordsTransitionsOnce(t *testing.T) {
	var w healthWatch
	c := containerHealth{ID: "a", Name: "idgen_1", State: "running", Health: "healthy"}
	poll := func(sec int, health string) {
		c.Health = health
		w.observe(time.Duration(sec)*time.Second, []containerHealth{c})
	}
	poll(1, "starting")
	poll(2, "healthy")
	poll(3, "unhealthy")
	poll(4, "unhealthy") // still unhealthy: no second event
	poll(5, "healthy")
	poll(6, "healthy")
	ev := w.report()
	if len(ev) != 2 {
		t.Fatalf("events = %q, want 2 (unhealthy, healthy again)", ev)
	}
	if !strings.HasPrefix(ev[0], "3s idgen_1 unhealthy after") || !strings.HasPrefix(ev[1], "5s idgen_1 healthy again") {
		t.Errorf("events = %q", ev)
	}
	// A container first seen unhealthy is reported too; a stopped one,
	// which Docker always calls unhealthy, is not.
	w.observe(7*time.Second, []containerHealth{
		{ID: "b", Name: "idgen_2", State: "running", Health: "unhealthy"},
		{ID: "c", Name: "idgen_3", State: "exited", Health: "unhealthy"},
	})
	if ev := w.report(); len(ev) != 3 || !strings.Contains(ev[2], "7s idgen_2 unhealthy") {
		t.Errorf("events = %q", ev)
	}
}
