package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idgen/idgen/api"
	"github.com/idgen/idgen/functions/httpapi"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/platform/logring"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/saga"
)

// TestCompensateEnvelope: POST /compensate takes the failure envelope's
// fields with the rules of saga.Event.Validate; a refusal is the
// JSON error and changes nothing (no transition, no audit entry).
func TestCompensateEnvelope(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, tc := range []struct {
		name   string
		fields string // JSON members after "id"
		status int
		want   string // a refusal's message contains it
	}{
		{"reason only", `"reason":"declined"`, 200, ""},
		{"no reason", ``, 200, ""},
		{"envelope", `"event_id":"evt-1","reason":"declined","occurred_at":"2026-01-02T03:04:05.678Z","source":"payments/v2"`, 200, ""},
		{"event_id without reason", `"event_id":"evt-2"`, 200, ""},
		{"event_id 128 bytes", `"reason":"r","event_id":"` + strings.Repeat("e", saga.MaxEventID) + `"`, 200, ""},
		{"event_id 129 bytes", `"reason":"r","event_id":"` + strings.Repeat("e", saga.MaxEventID+1) + `"`, 400, "event_id must be at most 128 bytes"},
		{"event_id 43 three-byte runes", `"reason":"r","event_id":"` + strings.Repeat("€", 43) + `"`, 400, "event_id"},
		{"event_id a number", `"reason":"r","event_id":7`, 400, "event_id"},
		{"occurred_at with offset", `"reason":"r","occurred_at":"2026-01-02T05:04:05+02:00"`, 200, ""},
		{"occurred_at words", `"reason":"r","occurred_at":"yesterday"`, 400, "occurred_at"},
		{"occurred_at without zone", `"reason":"r","occurred_at":"2026-01-02T03:04:05"`, 400, "RFC 3339"},
		{"occurred_at a date", `"reason":"r","occurred_at":"2026-01-02"`, 400, "RFC 3339"},
		{"source 64 bytes", `"reason":"r","source":"` + strings.Repeat("s", saga.MaxSource) + `"`, 200, ""},
		{"source 65 bytes", `"reason":"r","source":"` + strings.Repeat("s", saga.MaxSource+1) + `"`, 400, "source must be"},
		{"source with a space", `"reason":"r","source":"pay ments"`, 400, "source must be"},
		{"source with !", `"reason":"r","source":"payments!"`, 400, "source must be"},
		{"source not ASCII", `"reason":"r","source":"paiements-é"`, 400, "source must be"},
		{"reason 257 bytes", `"reason":"` + strings.Repeat("r", saga.MaxReason+1) + `"`, 400, "reason is longer than 256 bytes"},
		{"unknown field", `"reason":"r","extra":1`, 400, `unknown field "extra"`},
		{"field of another case", `"reason":"r","Event_ID":"evt"`, 400, `unknown field "Event_ID"`},
		{"event_id twice", `"event_id":"a","event_id":"b"`, 400, "appears twice"},
		{"caller field", `"reason":"r","caller":"root"`, 400, `unknown field "caller"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := h.generateOne(t, "").String()
			body := `{"id":"` + id + `"`
			if tc.fields != "" {
				body += "," + tc.fields
			}
			body += "}"
			r := h.post(t, "/compensate", body)
			if tc.status == 200 {
				if r.status != 200 || r.h("Idgen-Outcome") != "applied" {
					t.Fatalf("%s: %s, Idgen-Outcome %q; want 200 applied", body, r, r.h("Idgen-Outcome"))
				}
				if v := h.view(t, id); v.State != "compensated" || len(v.History) != 2 || v.History[1].Actor != "dev" {
					t.Fatalf("after %s: %+v", body, v)
				}
				return
			}
			assertError(t, r, tc.status, "invalid_request")
			var e struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(r.body, &e); err != nil || !strings.Contains(e.Error.Message, tc.want) || strings.Contains(e.Error.Message, "malformed event") {
				t.Errorf("error body %s, want a message with %q (and without the sentinel's prefix)", r.body, tc.want)
			}
			if v := h.view(t, id); v.State != "pending" || len(v.History) != 1 {
				t.Errorf("refused %s changed the record: %+v", body, v)
			}
			if n := countAction(auditLines(t, h.auditPath), "id.compensate", id); n != 0 {
				t.Errorf("refused %s wrote %d audit entries", body, n)
			}
		})
	}
	// The exact error body of an unknown field.
	id := h.generateOne(t, "").String()
	r := h.post(t, "/compensate", `{"id":"`+id+`","extra":1}`)
	if want := `{"error":{"code":"invalid_request","message":"malformed JSON body: unknown field \"extra\""}}`; r.status != 400 || string(r.body) != want {
		t.Errorf("unknown field: %s, want 400 %s", r, want)
	}
	// /commit takes none of the envelope's fields.
	for _, f := range []string{`"event_id":"e"`, `"source":"s"`, `"occurred_at":"2026-01-02T03:04:05Z"`} {
		assertError(t, h.post(t, "/commit", `{"id":"`+id+`",`+f+`}`), 400, "invalid_request")
	}
	if v := h.view(t, id); v.State != "pending" {
		t.Errorf("refused commits changed the record: %+v", v)
	}
}

// TestCompensateAuditEntry: the audit entry of an HTTP compensation, field
// by field: the envelope's event_id and source are its request_id and
// source, the token's subject its actor; the log line carries both the
// HTTP request ID and the event_id. Repeats answer the same bytes and write
// nothing. Without the optional fields the entry has the request's ID and
// address, as before.
func TestCompensateAuditEntry(t *testing.T) {
	h, mint := authHarness(t)
	tok := mint("alice", "ids:generate ids:read ids:compensate", time.Hour)
	hdr := func(rid string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + tok, "X-Request-ID": rid}
	}
	r := h.do(t, call{method: "POST", path: "/generate", header: hdr("req-gen")})
	id := strings.TrimSuffix(strings.TrimPrefix(string(r.body), `{"id":"`), `"}`)
	body := `{"event_id":"evt-42","id":"` + id + `","reason":"card declined","occurred_at":"2026-01-02T03:04:05Z","source":"payments/v2"}`
	before := time.Now().Add(-time.Second)
	first := h.do(t, call{method: "POST", path: "/compensate", body: body, header: hdr("req-http-1")})
	if first.status != 200 || first.h("Idgen-Outcome") != "applied" || first.h("X-Request-ID") != "req-http-1" {
		t.Fatalf("compensate: %s, Idgen-Outcome %q", first, first.h("Idgen-Outcome"))
	}
	decodeExact(t, first.body, "id", "state", "compensated_at", "reason")

	var entries []map[string]string
	for _, l := range auditLines(t, h.auditPath) {
		if l["action"] == "id.compensate" {
			entries = append(entries, l)
		}
	}
	if len(entries) != 1 {
		t.Fatalf("%d compensate entries, want 1: %v", len(entries), entries)
	}
	got := entries[0]
	at, err := time.Parse(time.RFC3339Nano, got["time"])
	if err != nil || at.Before(before) || at.After(time.Now().Add(time.Second)) {
		t.Errorf("time %q", got["time"])
	}
	delete(got, "time")
	want := map[string]string{
		"actor": "alice", "action": "id.compensate", "resource": id, "outcome": "applied",
		"reason": "card declined", "source": "payments/v2", "request_id": "evt-42", "instance": "test",
	}
	if len(got) != len(want) {
		t.Errorf("entry %v, want exactly %v (and time)", got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("entry %s = %q, want %q", k, got[k], w)
		}
	}
	var v api.IDRecord
	if r := h.do(t, call{method: "GET", path: "/ids/" + id, header: hdr("req-get")}); r.status != 200 || json.Unmarshal(r.body, &v) != nil {
		t.Fatalf("GET /ids: %s", r)
	}
	if len(v.History) != 2 || v.History[1].Actor != "alice" || v.History[1].Reason != "card declined" {
		t.Errorf("history %+v, want alice's compensation", v.History)
	}

	// The log line of the request: its own request ID, and the envelope.
	var line map[string]any
	for _, e := range h.ring.Entries(logring.Query{RequestID: "req-http-1"}) {
		var m map[string]any
		if json.Unmarshal(e.JSON, &m) == nil && m["msg"] == "saga transition" {
			line = m
		}
	}
	if line == nil || line["event_id"] != "evt-42" || line["source"] != "payments/v2" || line["occurred_at"] != "2026-01-02T03:04:05Z" || line["outcome"] != "applied" {
		t.Errorf("log line of req-http-1: %v", line)
	}

	// Repeats, the same event and another one: the same bytes, no entry.
	for i, b := range []string{body, `{"id":"` + id + `","reason":"other","event_id":"evt-43","source":"orders"}`, `{"id":"` + id + `"}`} {
		again := h.do(t, call{method: "POST", path: "/compensate", body: b, header: hdr("req-http-repeat")})
		if again.status != 200 || again.h("Idgen-Outcome") != "replayed" || !bytes.Equal(again.body, first.body) {
			t.Errorf("repeat %d: %s, Idgen-Outcome %q; want 200 replayed with body %s", i+1, again, again.h("Idgen-Outcome"), first.body)
		}
	}
	if n := countAction(auditLines(t, h.auditPath), "id.compensate", id); n != 1 {
		t.Errorf("%d compensate entries after the repeats, want 1", n)
	}

	// Without event_id and source: the request's ID and address.
	unknown := neverIssued(4242).String()
	if r := h.do(t, call{method: "POST", path: "/compensate", body: `{"id":"` + unknown + `","reason":"upstream failed"}`, header: hdr("req-http-2")}); r.status != 200 || r.h("Idgen-Outcome") != "null_compensation" {
		t.Fatalf("null compensation: %s, Idgen-Outcome %q", r, r.h("Idgen-Outcome"))
	}
	for _, l := range auditLines(t, h.auditPath) {
		if l["action"] == "id.compensate" && l["resource"] == unknown {
			if l["request_id"] != "req-http-2" || l["source"] == "" || l["source"] == "unknown" || l["actor"] != "alice" || l["outcome"] != "null_compensation" {
				t.Errorf("entry without the optional fields: %v", l)
			}
		}
	}
}

// memMarks is an in-memory saga.Marker: per ID the token of the
// lease or "done". Leases never expire.
type memMarks struct {
	mu     sync.Mutex
	marked map[idcodec.ID]string
}

var _ saga.Marker = (*memMarks)(nil)

func (m *memMarks) Mark(_ context.Context, id idcodec.ID, _ string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.marked[id] = "done"
	return nil
}

func (m *memMarks) Claim(_ context.Context, id idcodec.ID, token string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch v := m.marked[id]; v {
	case "", token:
		m.marked[id] = token
		return true, nil
	case "done":
		return false, nil
	}
	return false, saga.ErrAuditBusy
}

func (m *memMarks) Release(_ context.Context, id idcodec.ID, token string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.marked[id] == token {
		delete(m.marked, id)
	}
	return nil
}

// done reports whether id is marked done.
func (m *memMarks) done(id idcodec.ID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.marked[id] == "done"
}

// TestAuditRecovery: with Deps.CompensationMarks (CommitMarks for
// commits), a client's retry writes the audit entry of a transition that
// an attempt stored and never audited (its WAIT timed out, its instance
// died), once, however young; never for another actor's, and not again for
// one that HTTP applied and audited (marked done); while another attempt
// holds the claim the retry is answered 503.
func TestAuditRecovery(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		path   string
		action string
		change registry.Change // the transition the attempt stored, but for its actor and time
		other  string          // another actor
		marks  func(d *httpapi.Deps, m saga.Marker)
	}{
		{"/compensate", "id.compensate", registry.Change{To: registry.Compensated, Reason: "declined"}, "system",
			func(d *httpapi.Deps, m saga.Marker) { d.CompensationMarks = m }},
		{"/commit", "id.commit", registry.Change{To: registry.Committed}, "someone-else",
			func(d *httpapi.Deps, m saga.Marker) { d.CommitMarks = m }},
	} {
		t.Run(strings.TrimPrefix(tc.path, "/"), func(t *testing.T) {
			t.Parallel()
			marks := &memMarks{marked: map[idcodec.ID]string{}}
			h := serveStack(t, newStackDeps(t, newTestCore(t), httpapi.Config{Dev: true}, nil, func(d *httpapi.Deps) { tc.marks(d, marks) }))
			ctx := context.Background()
			body := func(id string) string {
				if tc.change.Reason == "" {
					return `{"id":"` + id + `"}`
				}
				return `{"id":"` + id + `","reason":"` + tc.change.Reason + `"}`
			}
			// died stores the transition of an attempt by actor that never
			// audited it.
			died := func(actor string, age time.Duration) string {
				t.Helper()
				id := h.generateOne(t, "")
				ch := tc.change
				ch.Actor, ch.NowMS = actor, time.Now().Add(-age).UnixMilli()
				if _, _, err := h.store.Transition(ctx, id, ch); err != nil {
					t.Fatal(err)
				}
				return id.String()
			}
			retry := func(id string) {
				t.Helper()
				if r := h.post(t, tc.path, body(id)); r.status != 200 || r.h("Idgen-Outcome") != "replayed" {
					t.Fatalf("retry: %s, Idgen-Outcome %q", r, r.h("Idgen-Outcome"))
				}
			}
			entries := func(id string) int { return countAction(auditLines(t, h.auditPath), tc.action, id) }

			old := died("dev", time.Minute)
			for range 3 {
				retry(old)
			}
			if n := entries(old); n != 1 {
				t.Errorf("%s a minute old: %d entries after 3 retries, want 1 (recovered once)", tc.action, n)
			}
			if got := recoveredFlag(t, h.auditPath, tc.action, old); got != "true" {
				t.Errorf("the recovered %s entry has recovered=%q, want true", tc.action, got)
			}
			young := died("dev", 0)
			retry(young)
			retry(young)
			if n := entries(young); n != 1 {
				t.Errorf("a young %s: %d entries after 2 retries, want 1 (recovered once)", tc.action, n)
			}
			other := died(tc.other, time.Minute)
			retry(other)
			if n := entries(other); n != 0 {
				t.Errorf("another actor's %s: %d entries, want 0", tc.action, n)
			}
			// A transition of HTTP itself is marked: its repeats write nothing.
			id := h.generateOne(t, "").String()
			if r := h.post(t, tc.path, body(id)); r.status != 200 || r.h("Idgen-Outcome") != "applied" {
				t.Fatalf("%s: %s", tc.path, r)
			}
			retry(id)
			if n := entries(id); n != 1 {
				t.Errorf("an audited HTTP %s: %d entries after a repeat, want 1", tc.action, n)
			}
			if got := recoveredFlag(t, h.auditPath, tc.action, id); got != "" {
				t.Errorf("the applied %s entry has recovered=%q, want none", tc.action, got)
			}
			parsed, _ := idcodec.Parse(id)
			if !marks.done(parsed) {
				t.Errorf("the applied %s left no done mark", tc.action)
			}
			// Another attempt holds the claim of an unaudited transition, young
			// or old: a retry is answered 503 with Retry-After (the transition
			// stands), and once the claim is released, the next retry writes
			// the entry.
			for _, age := range []time.Duration{0, time.Minute} {
				held := died("dev", age)
				underOtherClaim(t, h, marks, tc.path, body(held), held, entries, retry)
			}
		})
	}
}

// underOtherClaim: while another attempt holds the claim on id's entry, a
// retry (body to path) is answered 503 with Retry-After and writes no
// entry; once the claim is released, retry writes exactly one.
func underOtherClaim(t *testing.T, h *harness, marks *memMarks, path, body, id string, entries func(string) int, retry func(string)) {
	t.Helper()
	parsed, _ := idcodec.Parse(id)
	ctx := context.Background()
	if won, err := marks.Claim(ctx, parsed, "other-attempt"); err != nil || !won {
		t.Fatalf("claim: %v, %v", won, err)
	}
	if r := h.post(t, path, body); r.status != 503 || r.h("Retry-After") == "" || entries(id) != 0 {
		t.Fatalf("retry under another claim: %s, Retry-After %q, %d entries; want 503 with Retry-After, no entry", r, r.h("Retry-After"), entries(id))
	}
	if err := marks.Release(ctx, parsed, "other-attempt"); err != nil {
		t.Fatal(err)
	}
	retry(id)
	if n := entries(id); n != 1 {
		t.Errorf("after the claim was released: %d entries, want 1", n)
	}
}

// failFirst fails the first record of action (the sink failed once).
type failFirst struct {
	httpapi.Auditor
	action string
	failed atomic.Bool
}

func (f *failFirst) Record(e audit.Event) error {
	if e.Action == f.action && f.failed.CompareAndSwap(false, true) {
		return errors.New("disk full")
	}
	return f.Auditor.Record(e)
}

// TestAuditEntryNotWritten: a compensation or commit whose audit entry
// could not be written is stored but answered 503 with Retry-After (fail
// closed); the retry writes the entry, marked recovered.
func TestAuditEntryNotWritten(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ path, action, body string }{
		{"/compensate", audit.ActionCompensate, `,"reason":"declined"`},
		{"/commit", audit.ActionCommit, ``},
	} {
		t.Run(tc.path, func(t *testing.T) {
			h := serveStack(t, newStackDeps(t, newTestCore(t), httpapi.Config{Dev: true}, nil, func(d *httpapi.Deps) {
				d.CompensationMarks = &memMarks{marked: map[idcodec.ID]string{}}
				d.CommitMarks = &memMarks{marked: map[idcodec.ID]string{}}
				d.Audit = &failFirst{Auditor: d.Audit, action: tc.action}
			}))
			id := h.generateOne(t, "").String()
			body := `{"id":"` + id + `"` + tc.body + `}`
			if r := h.post(t, tc.path, body); r.status != 503 || r.h("Retry-After") == "" {
				t.Fatalf("first attempt: %s, Retry-After %q; want 503 with Retry-After", r, r.h("Retry-After"))
			}
			if r := h.post(t, tc.path, body); r.status != 200 || r.h("Idgen-Outcome") != "replayed" {
				t.Fatalf("retry: %s, Idgen-Outcome %q; want 200 replayed", r, r.h("Idgen-Outcome"))
			}
			if n := countAction(auditLines(t, h.auditPath), tc.action, id); n != 1 {
				t.Fatalf("%d entries, want 1", n)
			}
			if got := recoveredFlag(t, h.auditPath, tc.action, id); got != "true" {
				t.Fatalf("recovered=%q, want true", got)
			}
		})
	}
}
