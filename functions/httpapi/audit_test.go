package httpapi_test

import (
	"bufio"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func auditLines(t *testing.T, path string) []map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var raw map[string]any
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			t.Fatalf("audit line is not JSON: %s", sc.Text())
		}
		// The hash chain's fields (shared/platform/audit/chain.go) belong
		// to the log, not to the entry.
		delete(raw, "writer")
		delete(raw, "seq")
		delete(raw, "prev")
		m := make(map[string]string, len(raw))
		for k, v := range raw {
			switch v := v.(type) {
			case string:
				m[k] = v
			case bool:
				m[k] = strconv.FormatBool(v)
			default:
				t.Fatalf("audit line is not flat (%s is %T): %s", k, v, sc.Text())
			}
		}
		out = append(out, m)
	}
	return out
}

func countAction(lines []map[string]string, action, resource string) int {
	n := 0
	for _, l := range lines {
		if l["action"] == action && (resource == "" || l["resource"] == resource) {
			n++
		}
	}
	return n
}

// TestAuditOncePerEffectiveTransition: repeats of a transition are answered
// but audited once; auth failures and scope denials are audited without the
// token.
func TestAuditOncePerEffectiveTransition(t *testing.T) {
	h, mint := authHarness(t)
	tok := mint("alice", "ids:generate ids:commit ids:compensate", time.Hour)
	hdr := map[string]string{"Authorization": "Bearer " + tok, "X-Request-ID": "req-audit-1"}
	r := h.do(t, call{method: "POST", path: "/generate", header: hdr})
	id := strings.TrimSuffix(strings.TrimPrefix(string(r.body), `{"id":"`), `"}`)
	for i := 0; i < 3; i++ {
		if r := h.do(t, call{method: "POST", path: "/commit", body: `{"id":"` + id + `"}`, header: hdr}); r.status != 200 {
			t.Fatalf("commit: %s", r)
		}
	}
	for i := 0; i < 3; i++ {
		if r := h.do(t, call{method: "POST", path: "/compensate", body: `{"id":"` + id + `","reason":"declined"}`, header: hdr}); r.status != 200 {
			t.Fatalf("compensate: %s", r)
		}
	}
	h.do(t, call{method: "POST", path: "/generate", header: map[string]string{"Authorization": "Bearer not.a.token"}})
	h.do(t, call{method: "GET", path: "/metrics", header: hdr})
	lines := auditLines(t, h.auditPath)
	if n := countAction(lines, "id.commit", id); n != 1 {
		t.Fatalf("%d commit entries, want 1", n)
	}
	if n := countAction(lines, "id.compensate", id); n != 1 {
		t.Fatalf("%d compensate entries, want 1", n)
	}
	if countAction(lines, "auth.failure", "/generate") != 1 || countAction(lines, "auth.scope_denied", "/metrics") != 1 {
		t.Fatalf("auth entries missing: %v", lines)
	}
	raw, _ := os.ReadFile(h.auditPath)
	if strings.Contains(string(raw), tok) || strings.Contains(string(raw), "not.a.token") {
		t.Fatal("a token reached the audit log")
	}
	for _, l := range lines {
		if l["action"] == "id.commit" && (l["actor"] != "alice" || l["request_id"] != "req-audit-1" || l["source"] == "" || l["instance"] == "") {
			t.Fatalf("commit entry lacks fields: %v", l)
		}
	}
}

// recoveredFlag is the "recovered" field of the last entry of action on
// resource ("" when absent).
func recoveredFlag(t *testing.T, path, action, resource string) string {
	t.Helper()
	got := ""
	for _, l := range auditLines(t, path) {
		if l["action"] == action && l["resource"] == resource {
			got = l["recovered"]
		}
	}
	return got
}
