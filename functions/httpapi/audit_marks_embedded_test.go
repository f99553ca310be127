package httpapi_test

import (
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/functions/httpapi"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/registry/boltstore"
	"github.com/idgen/idgen/shared/registry/pebblestore"
	"github.com/idgen/idgen/shared/saga"
)

// errAuditFull is the error of failingAudit's refused entries.
var errAuditFull = errors.New("audit: no space left on device (test)")

// failingAudit refuses the next entries of the actions it is armed for,
// as the audit log does while its disk is full; every other entry, and
// Healthy, go to the real log.
type failingAudit struct {
	httpapi.Auditor
	mu   sync.Mutex
	left map[string]int // action → entries still to refuse
}

var _ httpapi.Auditor = (*failingAudit)(nil)

func (f *failingAudit) arm(action string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.left[action]++
}

func (f *failingAudit) Record(e audit.Event) error {
	f.mu.Lock()
	refuse := f.left[e.Action] > 0
	if refuse {
		f.left[e.Action]--
	}
	f.mu.Unlock()
	if refuse {
		return errAuditFull
	}
	return f.Auditor.Record(e)
}

// embeddedStack serves the stack with the registry of engine ("bolt": the
// stack's own store; "pebble": a Pebble store of its own) and the audit
// marks that cmd/idgen wires in embedded mode over that same store.
func embeddedStack(t *testing.T, engine string) (*harness, *failingAudit) {
	t.Helper()
	fa := &failingAudit{left: map[string]int{}}
	st := newStackDeps(t, newTestCore(t), httpapi.Config{Dev: true}, nil, func(d *httpapi.Deps) {
		var store saga.MarkStore
		switch engine {
		case "bolt":
			store = d.Registry.(*boltstore.Store)
		case "pebble":
			p := openPebble(t, pebblestore.Config{})
			d.Registry, store = p, p
		default:
			t.Fatalf("unknown engine %q", engine)
		}
		fa.Auditor = d.Audit
		d.Audit = fa
		d.CompensationMarks = embeddedMarks(store, "")
		d.CommitMarks = embeddedMarks(store, "idgen:commit:audited:")
	})
	return serveStack(t, st), fa
}

// TestEmbeddedAuditRetry: with an embedded store, a commit audited at once
// is not audited again by its retries; a commit or compensation whose
// audit entry is refused (a full audit disk) is stored and answered
// 503; the client's retry writes the entry, marked recovered, and is
// answered as a replay; later retries write nothing. The same holds for
// the deadline compensation of a late commit (answered 409 expired once
// its entry is written).
func TestEmbeddedAuditRetry(t *testing.T) {
	t.Parallel()
	for _, engine := range []string{"bolt", "pebble"} {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			h, fa := embeddedStack(t, engine)
			for _, tc := range []struct {
				name    string
				timeout time.Duration // of the issue; 0 = none
				path    string
				body    string // after the id
				action  string
				status  int    // of the retries
				outcome string // Idgen-Outcome of the retries
				reason  string // of the entry
				refuse  bool   // the first attempt's entry
			}{
				{name: "commit audited at once", path: "/commit", action: audit.ActionCommit, status: 200, outcome: "replayed"},
				{name: "commit", path: "/commit", action: audit.ActionCommit, status: 200, outcome: "replayed", refuse: true},
				{name: "compensate", path: "/compensate", body: `,"reason":"declined"`, action: audit.ActionCompensate, status: 200, outcome: "replayed", reason: "declined", refuse: true},
				{name: "late commit", timeout: 30 * time.Millisecond, path: "/commit", action: audit.ActionCompensate, status: 409, reason: saga.ReasonDeadline, refuse: true},
			} {
				t.Run(tc.name, func(t *testing.T) {
					issue := ""
					if tc.timeout > 0 {
						issue = `{"timeout_ms":` + strconv.FormatInt(tc.timeout.Milliseconds(), 10) + `}`
					}
					id := h.generateOne(t, issue).String()
					time.Sleep(3 * tc.timeout)
					body := `{"id":"` + id + `"` + tc.body + `}`
					recovered := ""
					if tc.refuse {
						fa.arm(tc.action)
						if r := h.post(t, tc.path, body); r.status != 503 || r.h("Retry-After") == "" {
							t.Fatalf("first attempt with the audit entry refused: %s, want 503 with Retry-After", r)
						}
						if n := countAction(auditLines(t, h.auditPath), tc.action, id); n != 0 {
							t.Fatalf("%d entries after the refused one, want 0", n)
						}
						recovered = "true"
					} else if r := h.post(t, tc.path, body); r.status != 200 || r.h("Idgen-Outcome") != "applied" {
						t.Fatalf("first attempt: %s, Idgen-Outcome %q; want 200 applied", r, r.h("Idgen-Outcome"))
					}
					for attempt := 1; attempt <= 2; attempt++ {
						r := h.post(t, tc.path, body)
						if r.status != tc.status || r.h("Idgen-Outcome") != tc.outcome {
							t.Fatalf("retry %d: %s, Idgen-Outcome %q; want %d %q", attempt, r, r.h("Idgen-Outcome"), tc.status, tc.outcome)
						}
						lines := auditLines(t, h.auditPath)
						if n := countAction(lines, tc.action, id); n != 1 {
							t.Fatalf("retry %d: %d %s entries, want exactly 1", attempt, n, tc.action)
						}
						for _, l := range lines {
							if l["action"] == tc.action && l["resource"] == id && (l["recovered"] != recovered || l["reason"] != tc.reason) {
								t.Fatalf("retry %d: entry %v, want recovered=%q reason=%q", attempt, l, recovered, tc.reason)
							}
						}
					}
				})
			}
		})
	}
}

// embeddedMarks is the marker cmd/idgen wires in embedded mode: the done
// marks in the store that holds the registry, under prefix (the
// compensations' default when empty).
func embeddedMarks(store saga.MarkStore, prefix string) saga.Marker {
	return &saga.StoreMarks{Store: store, Prefix: prefix}
}
