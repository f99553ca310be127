package audit

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// readLines is the entries of the log at path, each line one JSON object.
func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range fileLines(t, path) {
		out = append(out, lineFields(t, line))
	}
	return out
}

func TestRecordDurableLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path, "inst-1")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Record(Event{Actor: "alice", Action: ActionCommit, Resource: "id-x", Outcome: OutcomeSuccess, RequestID: "r"}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// Acknowledged lines are in the file before Close.
	if n := len(readLines(t, path)); n != 51 {
		t.Fatalf("%d lines after 50 acknowledged records + start", n)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	if lines[0]["action"] != ActionAuditStart || lines[len(lines)-1]["action"] != ActionAuditStop {
		t.Fatalf("start/stop lines missing: %v ... %v", lines[0], lines[len(lines)-1])
	}
	for _, m := range lines {
		ts, _ := m["time"].(string)
		if _, err := time.Parse(timeLayout, ts); err != nil || !strings.HasSuffix(ts, "Z") || m["instance"] != "inst-1" {
			t.Fatalf("line %v: time %q must be UTC ms; instance set", m, ts)
		}
	}
	if err := l.Record(Event{Action: "x"}); err != ErrClosed {
		t.Fatalf("after close: %v", err)
	}
}

func TestFailureReported(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := OpenWith(path, "i", Settings{RetryInterval: 10 * time.Millisecond, Wait: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// Simulate a sink that fails (revoked file).
	l.sink.Close()
	if err := l.Record(Event{Action: ActionCompensate}); err == nil {
		t.Fatal("write to a closed file succeeded")
	}
	if l.Healthy() == nil {
		t.Fatal("Healthy() = nil after a failed write")
	}
}
