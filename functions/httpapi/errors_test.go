package httpapi_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// badCase is a request the API must refuse with status and code.
type badCase struct {
	name   string
	call   call
	status int
	code   string
	allow  string // expected Allow header (405 only)
}

// overflowMS are timeout_ms values far above the 7-day maximum whose
// multiplication by time.Millisecond overflows int64: 2^58+1000 wraps to
// exactly 1 s, 2^62 wraps to 0.
const (
	overflowToOneSecond = 1<<58 + 1000
	overflowToZero      = 1 << 62
)

// badGenerate are the refused POST /generate requests; none may change state.
func badGenerate() []badCase {
	gen := func(name, body string, status int, code string) badCase {
		return badCase{name: name, call: call{method: "POST", path: "/generate", body: body}, status: status, code: code}
	}
	bigMeta := `{"metadata":{"k":"` + strings.Repeat("x", 1<<10) + `"}}`
	cases := []badCase{
		{name: "text/plain body", call: call{method: "POST", path: "/generate", body: "{}", ctype: "text/plain"}, status: 415, code: "unsupported_media_type"},
		{name: "xml body", call: call{method: "POST", path: "/generate", body: "<count>1</count>", ctype: "application/xml"}, status: 415, code: "unsupported_media_type"},
		{name: "unparsable content type", call: call{method: "POST", path: "/generate", body: "{}", ctype: "application/json; ;;"}, status: 415, code: "unsupported_media_type"},
		gen("malformed JSON", `{"count":`, 400, "invalid_request"),
		gen("trailing comma", `{"count":1,}`, 400, "invalid_request"),
		gen("array body", `[]`, 400, "invalid_request"),
		gen("string body", `"x"`, 400, "invalid_request"),
		gen("not JSON", `count=1`, 400, "invalid_request"),
		gen("unknown field", `{"cnt":1}`, 400, "invalid_request"),
		gen("unknown field beside known", `{"count":1,"extra":true}`, 400, "invalid_request"),
		gen("trailing object", `{}{}`, 400, "invalid_request"),
		gen("trailing garbage", `{"count":2} x`, 400, "invalid_request"),
		gen("trailing second body", `{"count":1} {"count":2}`, 400, "invalid_request"),
		gen("count 0", `{"count":0}`, 400, "invalid_request"),
		gen("count 1001", `{"count":1001}`, 400, "invalid_request"),
		gen("count -1", `{"count":-1}`, 400, "invalid_request"),
		gen("count string", `{"count":"x"}`, 400, "invalid_request"),
		gen("count numeric string", `{"count":"5"}`, 400, "invalid_request"),
		gen("count fraction", `{"count":1.5}`, 400, "invalid_request"),
		gen("count bool", `{"count":true}`, 400, "invalid_request"),
		gen("count huge", `{"count":99999999999999999999}`, 400, "invalid_request"),
		gen("timeout_ms 0", `{"timeout_ms":0}`, 400, "invalid_request"),
		gen("timeout_ms negative", `{"timeout_ms":-5}`, 400, "invalid_request"),
		gen("timeout_ms 7 days + 1", `{"timeout_ms":604800001}`, 400, "invalid_request"),
		gen("timeout_ms string", `{"timeout_ms":"1000"}`, 400, "invalid_request"),
		gen("timeout_ms overflowing to 1s", fmt.Sprintf(`{"timeout_ms":%d}`, overflowToOneSecond), 400, "invalid_request"),
		gen("timeout_ms overflowing to 0", fmt.Sprintf(`{"timeout_ms":%d}`, overflowToZero), 400, "invalid_request"),
		gen("timeout_ms max int64", `{"timeout_ms":9223372036854775807}`, 400, "invalid_request"),
		gen("metadata string", `{"metadata":"secret"}`, 400, "invalid_request"),
		gen("metadata array", `{"metadata":[1,2]}`, 400, "invalid_request"),
		gen("metadata number", `{"metadata":1}`, 400, "invalid_request"),
		gen("metadata bool", `{"metadata":true}`, 400, "invalid_request"),
		gen("metadata over 1 KiB", bigMeta, 400, "invalid_request"),
		{name: "Idempotency-Key 256 chars", call: call{method: "POST", path: "/generate", body: "{}", header: map[string]string{"Idempotency-Key": strings.Repeat("k", 256)}}, status: 400, code: "invalid_request"},
		{name: "Idempotency-Key with a space", call: call{method: "POST", path: "/generate", body: "{}", header: map[string]string{"Idempotency-Key": "a b"}}, status: 400, code: "invalid_request"},
	}
	return cases
}

// TestErrorPaths checks every refusal of the API: exact status, code, the
// uniform error body, Content-Type and X-Request-ID.
func TestErrorPaths(t *testing.T) {
	t.Parallel()
	h := newHarness(t)

	compensated := h.generateOne(t, "")
	if r := h.post(t, "/compensate", `{"id":"`+compensated.String()+`"}`); r.status != 200 {
		t.Fatalf("compensate: %s", r)
	}
	pending := h.generateOne(t, "")
	unknown := neverIssued(42).String()
	badVariant := []byte(pending.String())
	badVariant[19] = '0' // variant 00: well-formed UUID, not ours

	cases := []badCase{
		// routing
		{name: "unknown route", call: call{method: "GET", path: "/nope"}, status: 404, code: "not_found"},
		{name: "root", call: call{method: "GET", path: "/"}, status: 404, code: "not_found"},
		{name: "unknown route POST", call: call{method: "POST", path: "/generate/more", body: "{}"}, status: 404, code: "not_found"},
		{name: "ids without id", call: call{method: "GET", path: "/ids/"}, status: 400, code: "invalid_request"}, // an empty segment
		{name: "GET /generate", call: call{method: "GET", path: "/generate"}, status: 405, code: "method_not_allowed", allow: "POST"},
		{name: "PUT /generate", call: call{method: "PUT", path: "/generate", body: "{}"}, status: 405, code: "method_not_allowed", allow: "POST"},
		{name: "GET /commit", call: call{method: "GET", path: "/commit"}, status: 405, code: "method_not_allowed", allow: "POST"},
		{name: "GET /compensate", call: call{method: "GET", path: "/compensate"}, status: 405, code: "method_not_allowed", allow: "POST"},
		{name: "POST /ids/{id}", call: call{method: "POST", path: "/ids/" + pending.String(), body: "{}"}, status: 405, code: "method_not_allowed", allow: "GET"},
		{name: "DELETE /ids/{id}", call: call{method: "DELETE", path: "/ids/" + pending.String()}, status: 405, code: "method_not_allowed", allow: "GET"},
		{name: "POST /health", call: call{method: "POST", path: "/health", body: "{}"}, status: 405, code: "method_not_allowed", allow: "GET"},
		{name: "POST /logs", call: call{method: "POST", path: "/logs", body: "{}"}, status: 405, code: "method_not_allowed", allow: "GET"},
		{name: "PUT /metrics", call: call{method: "PUT", path: "/metrics", body: "{}"}, status: 405, code: "method_not_allowed", allow: "GET"},
		{name: "POST /instances", call: call{method: "POST", path: "/instances", body: "{}"}, status: 405, code: "method_not_allowed", allow: "GET"},

		// GET /ids/{id}
		{name: "id not a uuid", call: call{method: "GET", path: "/ids/not-a-uuid"}, status: 400, code: "invalid_id"},
		{name: "id too short", call: call{method: "GET", path: "/ids/" + pending.String()[:35]}, status: 400, code: "invalid_id"},
		{name: "id with braces", call: call{method: "GET", path: "/ids/{" + pending.String() + "}"}, status: 400, code: "invalid_request"}, // sent percent-encoded
		{name: "id without dashes", call: call{method: "GET", path: "/ids/" + strings.ReplaceAll(pending.String(), "-", "") + "0000"}, status: 400, code: "invalid_id"},
		{name: "id non-hex", call: call{method: "GET", path: "/ids/" + "zzzzzzzz" + pending.String()[8:]}, status: 400, code: "invalid_id"},
		{name: "id with trailing path", call: call{method: "GET", path: "/ids/" + pending.String() + "/x"}, status: 400, code: "invalid_id"},
		{name: "uuid v4 (not ours)", call: call{method: "GET", path: "/ids/" + uuidV4}, status: 400, code: "invalid_id"},
		{name: "v8 with wrong variant", call: call{method: "GET", path: "/ids/" + string(badVariant)}, status: 400, code: "invalid_id"},
		{name: "id never issued", call: call{method: "GET", path: "/ids/" + unknown}, status: 404, code: "not_found"},

		// POST /commit and /compensate
		{name: "commit without body", call: call{method: "POST", path: "/commit"}, status: 400, code: "invalid_request"},
		{name: "commit missing id", call: call{method: "POST", path: "/commit", body: `{}`}, status: 400, code: "invalid_request"},
		{name: "commit null id", call: call{method: "POST", path: "/commit", body: `{"id":null}`}, status: 400, code: "invalid_request"},
		{name: "commit numeric id", call: call{method: "POST", path: "/commit", body: `{"id":5}`}, status: 400, code: "invalid_request"},
		{name: "commit malformed id", call: call{method: "POST", path: "/commit", body: `{"id":"nope"}`}, status: 400, code: "invalid_id"},
		{name: "commit uuid v4", call: call{method: "POST", path: "/commit", body: `{"id":"` + uuidV4 + `"}`}, status: 400, code: "invalid_id"},
		{name: "commit unknown field", call: call{method: "POST", path: "/commit", body: `{"id":"` + pending.String() + `","force":true}`}, status: 400, code: "invalid_request"},
		{name: "commit with reason", call: call{method: "POST", path: "/commit", body: `{"id":"` + pending.String() + `","reason":"x"}`}, status: 400, code: "invalid_request"},
		{name: "commit text/plain", call: call{method: "POST", path: "/commit", body: `{"id":"` + pending.String() + `"}`, ctype: "text/plain"}, status: 415, code: "unsupported_media_type"},
		{name: "commit no content type", call: call{method: "POST", path: "/commit", body: `{"id":"` + pending.String() + `"}`, ctype: "-"}, status: 415, code: "unsupported_media_type"},
		{name: "commit trailing data", call: call{method: "POST", path: "/commit", body: `{"id":"` + pending.String() + `"} {}`}, status: 400, code: "invalid_request"},
		{name: "commit unknown id", call: call{method: "POST", path: "/commit", body: `{"id":"` + unknown + `"}`}, status: 404, code: "not_found"},
		{name: "commit after compensate", call: call{method: "POST", path: "/commit", body: `{"id":"` + compensated.String() + `"}`}, status: 409, code: "conflict"},
		{name: "compensate missing id", call: call{method: "POST", path: "/compensate", body: `{"reason":"x"}`}, status: 400, code: "invalid_request"},
		{name: "compensate malformed id", call: call{method: "POST", path: "/compensate", body: `{"id":"nope"}`}, status: 400, code: "invalid_id"},
		{name: "compensate reason too long", call: call{method: "POST", path: "/compensate", body: `{"id":"` + pending.String() + `","reason":"` + strings.Repeat("r", 257) + `"}`}, status: 400, code: "invalid_request"},
		{name: "compensate reason not a string", call: call{method: "POST", path: "/compensate", body: `{"id":"` + pending.String() + `","reason":7}`}, status: 400, code: "invalid_request"},

		// GET /logs
		{name: "logs bogus level", call: call{method: "GET", path: "/logs?level=bogus"}, status: 400, code: "invalid_request"},
		{name: "logs limit 0", call: call{method: "GET", path: "/logs?limit=0"}, status: 400, code: "invalid_request"},
		{name: "logs limit 1001", call: call{method: "GET", path: "/logs?limit=1001"}, status: 400, code: "invalid_request"},
		{name: "logs limit negative", call: call{method: "GET", path: "/logs?limit=-1"}, status: 400, code: "invalid_request"},
		{name: "logs limit not a number", call: call{method: "GET", path: "/logs?limit=ten"}, status: 400, code: "invalid_request"},
	}
	for _, g := range badGenerate() {
		g.name = "generate " + g.name
		cases = append(cases, g)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(t, tc.call)
			assertError(t, r, tc.status, tc.code)
			if tc.status == 405 {
				if got := r.h("Allow"); got != tc.allow {
					t.Errorf("Allow %q, want %q", got, tc.allow)
				}
			}
		})
	}

	// The refused saga requests left the pending ID as it was.
	if v := h.view(t, pending.String()); v.State != "pending" || len(v.History) != 1 {
		t.Errorf("pending ID after refused requests: state %s, %d history steps; want pending, 1", v.State, len(v.History))
	}
}

// bodySizes are request bodies around Config.MaxBody (64 KiB, the
// server's limit too) and the status each gets.
var bodySizes = []struct {
	name   string
	size   int
	status int
}{
	{"exactly 64 KiB", maxBody, 200},
	{"64 KiB + 1", maxBody + 1, 413},
	{"256 KiB", 256 << 10, 413},
	{"1 MiB", 1 << 20, 413},
}

// paddedBody is a valid JSON body of size bytes: {} padded with spaces.
func paddedBody(size int) string { return "{}" + strings.Repeat(" ", size-2) }

// TestBodyTooLarge sends a body over 64 KiB through the fasthttp server
// configured like serve.go: 413 body_too_large in the uniform error form. A
// body of exactly 64 KiB is still served.
func TestBodyTooLarge(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, tc := range bodySizes {
		t.Run(tc.name, func(t *testing.T) {
			r := h.raw(t, call{method: "POST", path: "/generate", body: paddedBody(tc.size)})
			if r.status != tc.status {
				t.Fatalf("status %d, want %d (body %.200s)", r.status, tc.status, r.body)
			}
			if tc.status != 413 {
				return
			}
			if ct := r.h("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			checkErrorBody(t, r.body, "body_too_large")
			// Contract: X-Request-ID is accepted or generated and echoed on
			// every answer. The refusal comes from the server's ErrorHandler
			// (serve.go, replicated in newServer), which runs before
			// Service.Handle and sets no request ID.
			if r.h("X-Request-ID") == "" {
				t.Errorf("413 answer has no X-Request-ID: the fasthttp ErrorHandler bypasses Service.Handle's request-ID logic")
			}
		})
	}
}

// TestHandleEnforcesMaxBody calls Handle directly, as the Lambda adapter
// does (no fasthttp.Server in front): Config.MaxBody, documented as "the
// largest request body, default 64 KiB", must refuse a larger body with 413.
func TestHandleEnforcesMaxBody(t *testing.T) {
	t.Parallel()
	st := newStack(t, newTestCore(t))
	for _, tc := range bodySizes {
		t.Run(tc.name, func(t *testing.T) {
			c := handle(t, st, call{method: "POST", path: "/generate", body: paddedBody(tc.size)})
			if got := c.Response.StatusCode(); got != tc.status {
				t.Fatalf("status %d, want %d (body %.200s); Config.MaxBody is never checked by Handle", got, tc.status, c.Response.Body())
			}
			if tc.status == 413 {
				checkErrorBody(t, c.Response.Body(), "body_too_large")
			}
		})
	}
}

// TestBadInputChangesNoState sends every refused /generate request and
// checks after each that nothing was issued or burnt: idgen_ids_issued_total
// did not move, and the next good ID's counter follows the previous good
// one's by exactly 1 (all within the first claimed range). Refused saga
// requests leave the record as it was.
func TestBadInputChangesNoState(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	prev := h.generateOne(t, "").Decompose().Counter
	issued := h.issuedTotal(t)
	for _, tc := range badGenerate() {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(t, tc.call)
			if r.status < 400 || r.status > 499 {
				t.Errorf("status %d, want 4xx (body %s)", r.status, r.body)
			}
			if got := h.issuedTotal(t); got != issued {
				t.Errorf("idgen_ids_issued_total %v after a refused request, want %v", got, issued)
			}
			next := h.generateOne(t, "").Decompose().Counter
			if next != prev+1 {
				t.Errorf("next counter %d, want %d: the refused request took %d counters", next, prev+1, next-prev-1)
			}
			prev = next
			issued = h.issuedTotal(t)
		})
	}

	t.Run("saga refusals", func(t *testing.T) {
		id := h.generateOne(t, "").String()
		before := h.get(t, "/ids/"+id).body
		for _, c := range []call{
			{method: "POST", path: "/commit", body: `{"id":"` + id + `","reason":"x"}`},
			{method: "POST", path: "/commit", body: `{"id":"` + id + `"}`, ctype: "text/plain"},
			{method: "POST", path: "/commit", body: `{"id":"` + id + `"} {"id":"` + id + `"}`},
			{method: "POST", path: "/compensate", body: `{"id":"` + id + `","reason":"` + strings.Repeat("r", 257) + `"}`},
			{method: "POST", path: "/compensate", body: `{"id":"` + id + `","extra":1}`},
			{method: "POST", path: "/compensate", body: `{"id":"` + id + `"}{}`},
			{method: "GET", path: "/compensate?id=" + id},
		} {
			if r := h.do(t, c); r.status < 400 || r.status > 499 {
				t.Errorf("%s %s %s: status %d, want 4xx", c.method, c.path, c.body, r.status)
			}
		}
		if after := h.get(t, "/ids/"+id).body; string(after) != string(before) {
			t.Errorf("record changed by refused requests:\nbefore %s\nafter  %s", before, after)
		}
	})

	t.Run("refused null compensation leaves no tombstone", func(t *testing.T) {
		id := neverIssued(7).String()
		r := h.post(t, "/compensate", `{"id":"`+id+`","reason":"`+strings.Repeat("r", 257)+`"}`)
		assertError(t, r, 400, "invalid_request")
		assertError(t, h.get(t, "/ids/"+id), 404, "not_found")
	})
}

// handle runs one request through Service.Handle without a server and
// checks the answer against the contract.
func handle(t testing.TB, st *stack, c call) *fasthttp.RequestCtx {
	t.Helper()
	var req fasthttp.Request
	c.prepare(&req)
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	st.svc.Handle(&ctx)
	checkCtx(t, &ctx)
	return &ctx
}
