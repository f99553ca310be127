package httpapi_test

import (
	"bytes"
	"encoding/json"
	"mime"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/idgen/idgen/shared/idcodec"
)

// decodeExact decodes body into a map and checks that its keys are exactly keys.
func decodeExact(t testing.TB, body []byte, keys ...string) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	if len(m) != len(keys) {
		t.Fatalf("body %s: want exactly the keys %v", body, keys)
	}
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			t.Fatalf("body %s: want exactly the keys %v", body, keys)
		}
	}
	return m
}

// parseOurs parses s as an ID of ours in canonical lowercase form.
func parseOurs(t testing.TB, s string) idcodec.ID {
	t.Helper()
	id, err := idcodec.Parse(s)
	if err != nil {
		t.Fatalf("ID %q: %v", s, err)
	}
	if id.String() != s {
		t.Errorf("ID %q is not canonical lowercase (%s)", s, id)
	}
	if !id.Valid() || id[6]>>4 != 8 || id[8]>>6 != 0b10 {
		t.Errorf("ID %s: not version 8 / variant 10", s)
	}
	if f := id.Decompose(); f.Worker != 0 || f.Shard != 0 {
		t.Errorf("ID %s: worker %d shard %d, want 0 and 0 (FixedWorker(0), shard 0)", s, f.Worker, f.Shard)
	}
	return id
}

func assertJSON(t testing.TB, r *reply) {
	t.Helper()
	if mt, _, err := mime.ParseMediaType(r.h("Content-Type")); err != nil || mt != "application/json" {
		t.Errorf("Content-Type %q, want application/json", r.h("Content-Type"))
	}
}

// TestGenerateSingle: an empty body or an object without count answers
// {"id"} with a fresh, registered, pending ID.
func TestGenerateSingle(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	seen := map[idcodec.ID]bool{}
	for _, tc := range []struct {
		name string
		c    call
	}{
		{"empty body, no Content-Type", call{method: "POST", path: "/generate", ctype: "-"}},
		{"empty body, JSON Content-Type", call{method: "POST", path: "/generate", ctype: "application/json"}},
		{"whitespace body", call{method: "POST", path: "/generate", body: " \r\n\t", ctype: "application/json"}},
		{"empty object", call{method: "POST", path: "/generate", body: "{}"}},
		{"object with spaces", call{method: "POST", path: "/generate", body: " { } \n"}},
		{"JSON with charset", call{method: "POST", path: "/generate", body: "{}", ctype: "application/json; charset=utf-8"}},
		{"count null", call{method: "POST", path: "/generate", body: `{"count":null}`}},
		{"with timeout", call{method: "POST", path: "/generate", body: `{"timeout_ms":60000}`}},
		{"with metadata", call{method: "POST", path: "/generate", body: `{"metadata":{"order":"A-1"}}`}},
		{"metadata null", call{method: "POST", path: "/generate", body: `{"metadata":null}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(t, tc.c)
			if r.status != 200 {
				t.Fatalf("status %d, want 200 (body %s)", r.status, r.body)
			}
			assertJSON(t, r)
			if r.h("Idempotent-Replayed") != "" {
				t.Errorf("Idempotent-Replayed %q on a request without Idempotency-Key", r.h("Idempotent-Replayed"))
			}
			var s string
			if err := json.Unmarshal(decodeExact(t, r.body, "id")["id"], &s); err != nil {
				t.Fatalf("id: %v", err)
			}
			id := parseOurs(t, s)
			if seen[id] {
				t.Fatalf("ID %s returned twice", id)
			}
			seen[id] = true
			if v := h.view(t, s); v.State != "pending" {
				t.Errorf("state %q, want pending", v.State)
			}
		})
	}
}

// TestGenerateBatch: {"count": n} answers {"ids"} of n registered IDs in
// strictly increasing order: one timestamp, contiguous counters.
func TestGenerateBatch(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	seen := map[idcodec.ID]bool{}
	for _, n := range []int{1, 2, 5, 1000} {
		t.Run("n="+strconv.Itoa(n), func(t *testing.T) {
			r := h.post(t, "/generate", `{"count":`+strconv.Itoa(n)+`}`)
			if r.status != 200 {
				t.Fatalf("status %d, want 200 (body %.300s)", r.status, r.body)
			}
			assertJSON(t, r)
			var texts []string
			if err := json.Unmarshal(decodeExact(t, r.body, "ids")["ids"], &texts); err != nil {
				t.Fatalf("ids: %v", err)
			}
			if len(texts) != n {
				t.Fatalf("%d ids, want %d", len(texts), n)
			}
			ids := make([]idcodec.ID, n)
			for i, s := range texts {
				ids[i] = parseOurs(t, s)
				if seen[ids[i]] {
					t.Fatalf("ID %s returned twice", s)
				}
				seen[ids[i]] = true
				if i == 0 {
					continue
				}
				if bytes.Compare(ids[i-1][:], ids[i][:]) >= 0 || texts[i-1] >= texts[i] {
					t.Fatalf("ids[%d]=%s not above ids[%d]=%s", i, texts[i], i-1, texts[i-1])
				}
				prev, cur := ids[i-1].Decompose(), ids[i].Decompose()
				if cur.Counter != prev.Counter+1 || cur.TimestampMS != prev.TimestampMS {
					t.Errorf("ids[%d] %+v does not follow ids[%d] %+v (one timestamp, contiguous counters)", i, cur, i-1, prev)
				}
			}
			for _, i := range []int{0, n / 2, n - 1} {
				if v := h.view(t, texts[i]); v.State != "pending" {
					t.Errorf("ids[%d]: state %q, want pending", i, v.State)
				}
			}
		})
	}
}

// TestGetID checks every field of GET /ids/{id} for a fresh ID, and that the
// uppercase form of the ID reads the same record.
func TestGetID(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	before := time.Now()
	id := h.generateOne(t, "{}")
	after := time.Now()
	f := id.Decompose()

	lower := h.get(t, "/ids/"+id.String())
	upper := h.get(t, "/ids/"+strings.ToUpper(id.String()))
	if lower.status != 200 || upper.status != 200 {
		t.Fatalf("GET lowercase: %s; uppercase: %s", lower, upper)
	}
	assertJSON(t, lower)
	if !bytes.Equal(lower.body, upper.body) {
		t.Errorf("uppercase ID answers differently:\n%s\n%s", lower.body, upper.body)
	}
	// Only the documented fields; no deadline, tombstone or metadata here.
	decodeExact(t, lower.body, "id", "timestamp", "worker", "shard", "counter", "state", "issued_at", "subject", "history")

	var v idView
	if err := json.Unmarshal(lower.body, &v); err != nil {
		t.Fatal(err)
	}
	ms := regexp.MustCompile(msRFC3339)
	if v.ID != id.String() {
		t.Errorf("id %q, want %q", v.ID, id)
	}
	if !ms.MatchString(v.Timestamp) {
		t.Errorf("timestamp %q is not RFC 3339 UTC with milliseconds", v.Timestamp)
	}
	if ts, err := time.Parse(time.RFC3339Nano, v.Timestamp); err != nil || ts.UnixMilli() != int64(f.TimestampMS) {
		t.Errorf("timestamp %q, want %v (decoded from the ID)", v.Timestamp, id.Time())
	}
	if v.Worker == nil || *v.Worker != 0 || v.Shard == nil || *v.Shard != 0 {
		t.Errorf("worker %v shard %v, want 0 and 0", v.Worker, v.Shard)
	}
	if v.Counter == nil || *v.Counter != f.Counter {
		t.Errorf("counter %v, want %d", v.Counter, f.Counter)
	}
	if v.State != "pending" {
		t.Errorf("state %q, want pending", v.State)
	}
	if v.IssuedAt == nil || !ms.MatchString(*v.IssuedAt) {
		t.Fatalf("issued_at %v, want RFC 3339 UTC with milliseconds", v.IssuedAt)
	}
	issued, _ := time.Parse(time.RFC3339Nano, *v.IssuedAt)
	if issued.Before(before.Truncate(time.Millisecond)) || issued.After(after) {
		t.Errorf("issued_at %v not within the request [%v, %v]", issued, before, after)
	}
	if d := issued.Sub(id.Time()); d < -time.Second || d > time.Second {
		t.Errorf("issued_at %v is %v away from the ID's timestamp", issued, d)
	}
	if len(v.History) != 1 || v.History[0].State != "pending" || v.History[0].At != *v.IssuedAt || v.History[0].Actor != "dev" {
		t.Errorf("history %+v, want one pending step at issued_at by dev", v.History)
	}
}

// TestCommit: pending → committed; the repeat answers the same bytes with
// Idgen-Outcome replayed; a compensation after it still succeeds; a commit
// after that is refused with 409.
func TestCommit(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	id := h.generateOne(t, "").String()
	body := `{"id":"` + id + `"}`

	first := h.post(t, "/commit", body)
	if first.status != 200 || first.h("Idgen-Outcome") != "applied" {
		t.Fatalf("commit: %s, Idgen-Outcome %q; want 200 applied", first, first.h("Idgen-Outcome"))
	}
	assertJSON(t, first)
	m := decodeExact(t, first.body, "id", "state", "committed_at")
	if string(m["id"]) != `"`+id+`"` || string(m["state"]) != `"committed"` {
		t.Errorf("commit body %s", first.body)
	}
	var at string
	_ = json.Unmarshal(m["committed_at"], &at)
	if !regexp.MustCompile(msRFC3339).MatchString(at) {
		t.Errorf("committed_at %q", at)
	}

	// The uppercase form names the same ID; the answer stays the same.
	for _, b := range []string{body, `{"id":"` + strings.ToUpper(id) + `"}`} {
		again := h.post(t, "/commit", b)
		if again.status != 200 || again.h("Idgen-Outcome") != "replayed" || !bytes.Equal(again.body, first.body) {
			t.Errorf("repeat commit: %s, Idgen-Outcome %q; want 200 replayed with body %s", again, again.h("Idgen-Outcome"), first.body)
		}
	}
	v := h.view(t, id)
	if v.State != "committed" || len(v.History) != 2 || v.History[1].State != "committed" || v.History[1].At != at {
		t.Errorf("after commit: state %s history %+v", v.State, v.History)
	}

	comp := h.post(t, "/compensate", `{"id":"`+id+`","reason":"refund"}`)
	if comp.status != 200 || comp.h("Idgen-Outcome") != "applied" {
		t.Fatalf("compensate a committed ID: %s, Idgen-Outcome %q", comp, comp.h("Idgen-Outcome"))
	}
	m = decodeExact(t, comp.body, "id", "state", "committed_at", "compensated_at", "reason")
	if string(m["state"]) != `"compensated"` || string(m["reason"]) != `"refund"` || string(m["committed_at"]) != `"`+at+`"` {
		t.Errorf("compensate body %s", comp.body)
	}
	assertError(t, h.post(t, "/commit", body), 409, "conflict")
	if v := h.view(t, id); v.State != "compensated" || len(v.History) != 3 {
		t.Errorf("after compensate: state %s history %+v", v.State, v.History)
	}
}

// TestCompensate: pending → compensated; every repeat, even with another
// reason, answers the first answer's bytes with Idgen-Outcome replayed; a
// commit is then refused with 409 and changes nothing.
func TestCompensate(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	id := h.generateOne(t, "").String()

	first := h.post(t, "/compensate", `{"id":"`+id+`","reason":"payment failed"}`)
	if first.status != 200 || first.h("Idgen-Outcome") != "applied" {
		t.Fatalf("compensate: %s, Idgen-Outcome %q; want 200 applied", first, first.h("Idgen-Outcome"))
	}
	assertJSON(t, first)
	m := decodeExact(t, first.body, "id", "state", "compensated_at", "reason")
	if string(m["id"]) != `"`+id+`"` || string(m["state"]) != `"compensated"` || string(m["reason"]) != `"payment failed"` {
		t.Errorf("compensate body %s", first.body)
	}
	for _, b := range []string{
		`{"id":"` + id + `","reason":"payment failed"}`,
		`{"id":"` + id + `","reason":"another reason"}`,
		`{"id":"` + id + `"}`,
	} {
		again := h.post(t, "/compensate", b)
		if again.status != 200 || again.h("Idgen-Outcome") != "replayed" || !bytes.Equal(again.body, first.body) {
			t.Errorf("repeat %s: %s, Idgen-Outcome %q; want 200 replayed with body %s", b, again, again.h("Idgen-Outcome"), first.body)
		}
	}
	before := h.get(t, "/ids/"+id).body
	assertError(t, h.post(t, "/commit", `{"id":"`+id+`"}`), 409, "conflict")
	if after := h.get(t, "/ids/"+id).body; !bytes.Equal(before, after) {
		t.Errorf("refused commit changed the record:\n%s\n%s", before, after)
	}
	v := h.view(t, id)
	if v.State != "compensated" || len(v.History) != 2 || v.History[1].Reason != "payment failed" || v.History[1].Actor != "dev" {
		t.Errorf("state %s history %+v", v.State, v.History)
	}
}

// TestNullCompensation: compensating an ID the registry does not hold
// succeeds (a tombstone, Idgen-Outcome null_compensation), repeats answer the
// same, and a late commit is refused (hanging).
func TestNullCompensation(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	id := neverIssued(99).String()
	body := `{"id":"` + id + `","reason":"upstream failed"}`

	first := h.post(t, "/compensate", body)
	if first.status != 200 || first.h("Idgen-Outcome") != "null_compensation" {
		t.Fatalf("null compensation: %s, Idgen-Outcome %q; want 200 null_compensation", first, first.h("Idgen-Outcome"))
	}
	m := decodeExact(t, first.body, "id", "state", "compensated_at", "reason")
	if string(m["state"]) != `"compensated"` {
		t.Errorf("body %s", first.body)
	}
	again := h.post(t, "/compensate", body)
	if again.status != 200 || again.h("Idgen-Outcome") != "replayed" || !bytes.Equal(again.body, first.body) {
		t.Errorf("repeat: %s, Idgen-Outcome %q; want 200 replayed with body %s", again, again.h("Idgen-Outcome"), first.body)
	}
	assertError(t, h.post(t, "/commit", `{"id":"`+id+`"}`), 409, "conflict")

	v := h.view(t, id)
	if v.State != "compensated" || !v.Tombstone || v.IssuedAt != nil || len(v.History) != 1 || v.History[0].Reason != "upstream failed" {
		t.Errorf("tombstone view %+v", v)
	}
}

// TestMetadataRoundTrip: metadata comes back from GET /ids as the same JSON
// object (compacted); exactly 1 KiB compacted is accepted.
func TestMetadataRoundTrip(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	exact := `{"k":"` + strings.Repeat("x", 1<<10-8) + `"}` // 1024 bytes
	if len(exact) != 1<<10 {
		t.Fatalf("fixture is %d bytes", len(exact))
	}
	for _, tc := range []struct{ name, meta string }{
		{"nested with spaces", `{ "order" : "A-1", "amount": {"value": 12.5, "currency": "EUR"}, "tags": ["a", "b"], "ok": true, "none": null }`},
		{"html characters", `{"note":"<b>&</b>"}`},
		{"unicode", `{"name":"Zoë 🚀"}`},
		{"empty object", `{}`},
		{"exactly 1 KiB", exact},
		{"1 KiB after compaction", `{ "k" : "` + strings.Repeat("x", 1<<10-8) + `" }`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := h.generateOne(t, `{"metadata":`+tc.meta+`}`)
			v := h.view(t, id.String())
			var want, got any
			if err := json.Unmarshal([]byte(tc.meta), &want); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(v.Metadata, &got); err != nil {
				t.Fatalf("metadata %s: %v", v.Metadata, err)
			}
			wb, _ := json.Marshal(want)
			gb, _ := json.Marshal(got)
			if !bytes.Equal(wb, gb) {
				t.Errorf("metadata %s, want %s", v.Metadata, tc.meta)
			}
		})
	}
}

// TestDeadline: timeout_ms is recorded as a deadline exactly timeout_ms after
// issued_at, for single IDs and every ID of a batch. (The sweeper that acts on
// it lives in cmd/idgen and is tested there.)
func TestDeadline(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	check := func(t *testing.T, id string, timeout time.Duration) {
		t.Helper()
		v := h.view(t, id)
		if !regexp.MustCompile(msRFC3339).MatchString(v.Deadline) || v.IssuedAt == nil {
			t.Fatalf("deadline %q issued_at %v", v.Deadline, v.IssuedAt)
		}
		dl, _ := time.Parse(time.RFC3339Nano, v.Deadline)
		is, _ := time.Parse(time.RFC3339Nano, *v.IssuedAt)
		if dl.Sub(is) != timeout {
			t.Errorf("deadline %s - issued_at %s = %v, want %v", v.Deadline, *v.IssuedAt, dl.Sub(is), timeout)
		}
		if v.State != "pending" {
			t.Errorf("state %q, want pending (nothing in this package compensates)", v.State)
		}
	}
	t.Run("200 ms", func(t *testing.T) {
		id := h.generateOne(t, `{"timeout_ms":200}`)
		time.Sleep(300 * time.Millisecond)
		check(t, id.String(), 200*time.Millisecond)
	})
	t.Run("7 days", func(t *testing.T) {
		check(t, h.generateOne(t, `{"timeout_ms":604800000}`).String(), 7*24*time.Hour)
	})
	t.Run("batch", func(t *testing.T) {
		r := h.post(t, "/generate", `{"count":3,"timeout_ms":1500}`)
		var v struct{ IDs []string }
		if r.status != 200 || json.Unmarshal(r.body, &v) != nil || len(v.IDs) != 3 {
			t.Fatalf("batch: %s", r)
		}
		for _, id := range v.IDs {
			check(t, id, 1500*time.Millisecond)
		}
	})
	t.Run("none without timeout", func(t *testing.T) {
		if v := h.view(t, h.generateOne(t, "").String()); v.Deadline != "" {
			t.Errorf("deadline %q without timeout_ms", v.Deadline)
		}
	})
}
