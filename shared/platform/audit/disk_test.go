package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/harness/tmpfs"
)

// wholeLines parses every line of path as JSON, failing on a torn one
// (no trailing newline, or not JSON), and counts the lines per resource.
func wholeLines(t *testing.T, path string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return perResource(parseLines(t, b))
}

// chained fails the test unless every chain in b is whole: the lines of
// failed writes that were cut back left no gap in seq or prev.
func chained(t *testing.T, b []byte) {
	t.Helper()
	v := NewVerifier(VerifyOptions{})
	if err := v.Add("log", bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if rep := v.Finish(); rep.Broken != nil {
		t.Fatalf("chain broken: %v", rep.Broken)
	}
}

// parseLines parses every line of b, failing on a torn one.
func parseLines(t *testing.T, b []byte) []Event {
	t.Helper()
	chained(t, b)
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("the file ends in a torn line: %q", b[bytes.LastIndexByte(b, '\n')+1:])
	}
	var out []Event
	for _, line := range bytes.Split(bytes.TrimSuffix(b, []byte{'\n'}), []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("torn or invalid line %q: %v", line, err)
		}
		out = append(out, e)
	}
	return out
}

// perResource counts the lines per resource; the log's own lines (start,
// stop, resume) count under their action.
func perResource(evs []Event) map[string]int {
	per := map[string]int{}
	for _, e := range evs {
		if e.Actor == "system" {
			per[e.Action]++
			continue
		}
		per[e.Resource]++
	}
	return per
}

// TestFullDisk fills a real (tmpfs) disk under the log: the entry that
// does not fit is refused whole (no torn line), the log reports itself
// unhealthy, and once space returns it turns healthy by itself, with no new
// entry to write; a caller's retry of each refused entry then writes it
// once.
func TestFullDisk(t *testing.T) {
	dir := tmpfs.Mount(t, 64<<10)
	path := filepath.Join(dir, "audit.log")
	l, err := Open(path, "inst-1")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	filler := tmpfs.Fill(t, dir, 0)

	// Entries fit in the last page of the file until one does not.
	var refused []Event
	for i := 0; i < 200 && len(refused) == 0; i++ {
		e := Event{Actor: "alice", Action: ActionCommit, Resource: fmt.Sprintf("id-%03d", i), Outcome: "applied", Reason: string(bytes.Repeat([]byte{'r'}, 100))}
		if err := l.Record(e); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("record %d: %v, want ENOSPC", i, err)
			}
			refused = append(refused, e)
		}
	}
	if len(refused) == 0 {
		t.Fatal("200 entries fit on a full disk")
	}
	wholeLines(t, path)
	if l.Healthy() == nil {
		t.Fatal("Healthy() = nil on a full disk")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// No Record from here until the log is healthy: it notices by itself,
	// within a retry interval (default 1 s).
	proc.Eventually(t, 5*time.Second, "Healthy() = nil after space returned", func() bool { return l.Healthy() == nil })
	if per := wholeLines(t, path); per[refused[0].Resource] != 0 || per[ActionAuditResume] != 1 {
		t.Fatalf("after the recovery: %d lines of the refused entry (want 0: its caller owns it), %d audit.resume (want 1)", per[refused[0].Resource], per[ActionAuditResume])
	}

	// The callers own their refused entries: their retries write them.
	for _, e := range refused {
		if err := l.Record(e); err != nil {
			t.Fatalf("retry of %s: %v", e.Resource, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	per := wholeLines(t, path)
	for i := 0; fmt.Sprintf("id-%03d", i) <= refused[0].Resource; i++ {
		if r := fmt.Sprintf("id-%03d", i); per[r] != 1 {
			t.Errorf("%s: %d lines, want 1", r, per[r])
		}
	}
	if per[ActionAuditResume] != 1 {
		t.Errorf("%d audit.resume lines, want 1 (lines per resource: %v)", per[ActionAuditResume], per)
	}
}

// TestOpenTornTail: a process that died mid-write leaves a final line
// without its newline; Open cuts it off instead of appending after it.
func TestOpenTornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	prior := chain{writer: newWriterID()}
	whole := string(prior.appendLine(nil, []byte(`{"time":"2024-01-01T00:00:00.000Z","actor":"a","action":"id.commit","resource":"id-1","outcome":"applied","instance":"i"`)))
	torn := `{"time":"2024-01-01T00:00:01.000Z","actor":"a","action":"id.commit","resource":"id-2","outcome":"appl`
	if err := os.WriteFile(path, []byte(whole+torn), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Open(path, "i")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Record(Event{Action: ActionCommit, Resource: "id-3", Outcome: "applied"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	per := wholeLines(t, path)
	if per["id-1"] != 1 || per["id-2"] != 0 || per["id-3"] != 1 {
		t.Fatalf("lines per resource %v: want id-1 kept, the torn id-2 cut, id-3 written", per)
	}
	b, _ := os.ReadFile(path)
	if start := parseLines(t, b)[1]; start.Action != ActionAuditStart || !strings.Contains(start.Reason, fmt.Sprintf("%d bytes", len(torn))) {
		t.Fatalf("audit.start line %+v: want the size of the cut line in its reason", start)
	}
}
