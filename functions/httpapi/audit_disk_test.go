package httpapi_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/idgen/idgen/functions/httpapi"
	"github.com/idgen/idgen/harness/tmpfs"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/audit"
)

// TestAuditDiskFull: the audit volume fills while commits and compensations
// run. The first whose entry does not fit is stored and answered 503; state
// changes are then refused (503) until space returns, and service resumes
// by itself, with no other audited event; the caller's retry writes the
// missing entry. At the end every line is whole and every effect has
// exactly one entry.
func TestAuditDiskFull(t *testing.T) {
	t.Parallel()
	dir := tmpfs.Mount(t, 64<<10)
	path := filepath.Join(dir, "audit.log")
	h := serveStack(t, newStackDeps(t, newTestCore(t), httpapi.Config{Dev: true}, nil, func(d *httpapi.Deps) {
		l, err := audit.OpenWith(path, "test", audit.Settings{RetryInterval: 20 * time.Millisecond, Wait: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close() })
		d.Audit = l
		d.CompensationMarks = &memMarks{marked: map[idcodec.ID]string{}}
		d.CommitMarks = &memMarks{marked: map[idcodec.ID]string{}}
	}))
	// Generated while the disk has room: /generate is refused with the log.
	ids := make([]string, 80)
	for i := range ids {
		ids[i] = h.generateOne(t, "").String()
	}
	for i, tc := range []struct{ path, action, body string }{
		{"/commit", audit.ActionCommit, ``},
		{"/compensate", audit.ActionCompensate, `,"reason":"declined"`},
	} {
		body := func(id string) string { return `{"id":"` + id + `"` + tc.body + `}` }
		filler := tmpfs.Fill(t, dir, 0)
		// Entries fit in the last page of the file until one does not.
		var done []string
		refused := ""
		for _, id := range ids[i*40 : (i+1)*40] {
			r := h.post(t, tc.path, body(id))
			if r.status == 200 {
				done = append(done, id)
				continue
			}
			if r.status != 503 || r.h("Retry-After") == "" {
				t.Fatalf("%s on a full audit disk: %s, want 200 or 503 with Retry-After", tc.path, r)
			}
			refused = id
			break
		}
		if refused == "" {
			t.Fatalf("%s: 40 entries fit on a full disk", tc.path)
		}
		t.Logf("%s: %d entries fit on the full disk before one did not", tc.path, len(done))
		if r := h.post(t, "/generate", ""); r.status != 503 {
			t.Fatalf("/generate while the audit log fails: %s, want 503", r)
		}
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		// Only refused calls until the log is healthy: it recovers by itself.
		deadline := time.Now().Add(5 * time.Second)
		for h.post(t, "/generate", "").status != 200 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: /generate still refused 5 s after space returned", tc.path)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if r := h.post(t, tc.path, body(refused)); r.status != 200 || r.h("Idgen-Outcome") != "replayed" {
			t.Fatalf("%s retry: %s, Idgen-Outcome %q; want 200 replayed", tc.path, r, r.h("Idgen-Outcome"))
		}
		lines := auditLines(t, path) // fails on a torn line
		for _, id := range append(done, refused) {
			if n := countAction(lines, tc.action, id); n != 1 {
				t.Errorf("%s %s: %d entries, want 1", tc.action, id, n)
			}
		}
		if got := recoveredFlag(t, path, tc.action, refused); got != "true" {
			t.Errorf("%s: the retry's entry has recovered=%q, want true", tc.path, got)
		}
		if n := countAction(lines, audit.ActionAuditResume, ""); n != i+1 {
			t.Errorf("%d audit.resume lines after %d outages", n, i+1)
		}
	}
}
