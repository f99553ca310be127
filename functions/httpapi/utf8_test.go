package httpapi_test

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestInvalidUTF8Refused: a string input that is not valid UTF-8, as raw
// bytes or as a JSON escape of a lone UTF-16 surrogate (which
// encoding/json would turn into U+FFFD without a word), is 400
// invalid_request and stores nothing: no ID issued, no transition, no
// audit entry. Valid text, escaped or not, is stored and served back as
// valid JSON, unchanged.
func TestInvalidUTF8Refused(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, tc := range []struct {
		name string
		c    call
	}{
		{"metadata value with a raw 0xff", call{method: "POST", path: "/generate", body: "{\"metadata\":{\"a\":\"x\xffy\"}}"}},
		{"metadata key with a raw 0xff", call{method: "POST", path: "/generate", body: "{\"metadata\":{\"\xff\":1}}"}},
		{"metadata value cut inside a rune", call{method: "POST", path: "/generate", body: "{\"metadata\":{\"a\":\"\xe2\x82\"}}"}},
		{"metadata with an overlong encoding", call{method: "POST", path: "/generate", body: "{\"metadata\":{\"a\":\"\xc0\xaf\"}}"}},
		{"metadata with an encoded surrogate", call{method: "POST", path: "/generate", body: "{\"metadata\":{\"a\":\"\xed\xa0\x80\"}}"}},
		{"metadata with a lone high surrogate escape", call{method: "POST", path: "/generate", body: `{"metadata":{"a":"\ud800"}}`}},
		{"metadata with a lone low surrogate escape", call{method: "POST", path: "/generate", body: `{"metadata":{"a":"\udc00"}}`}},
		{"metadata with a high surrogate before a letter", call{method: "POST", path: "/generate", body: `{"metadata":{"a":"\ud83dx"}}`}},
		{"metadata with a high surrogate before an escape", call{method: "POST", path: "/generate", body: `{"metadata":{"a":"\ud83d\u0041"}}`}},
		{"metadata with two high surrogates", call{method: "POST", path: "/generate", body: `{"metadata":{"a":"\uD83D\uD83D"}}`}},
		{"metadata key with a lone surrogate escape", call{method: "POST", path: "/generate", body: `{"metadata":{"\udfff":1}}`}},
		{"surrogate escape after an escaped backslash pair", call{method: "POST", path: "/generate", body: `{"metadata":{"a":"\\\ud800"}}`}},
		{"compensate reason with a raw 0xfe", call{method: "POST", path: "/compensate", body: "{\"id\":\"ID\",\"reason\":\"\xfe\"}"}},
		{"compensate reason with a lone surrogate", call{method: "POST", path: "/compensate", body: `{"id":"ID","reason":"\ud800"}`}},
		{"compensate event_id with a lone surrogate", call{method: "POST", path: "/compensate", body: `{"id":"ID","reason":"r","event_id":"\udbff"}`}},
		{"query value", call{method: "GET", path: "/logs?request_id=%ff"}},
		{"query value cut inside a rune", call{method: "GET", path: "/logs?level=info&request_id=a%e2%82"}},
		{"query key", call{method: "GET", path: "/logs?%ff=1"}},
		{"Idempotency-Key", call{method: "POST", path: "/generate", header: map[string]string{"Idempotency-Key": "k\xffk"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := h.generateOne(t, "").String()
			tc.c.body = strings.ReplaceAll(tc.c.body, "ID", id)
			issued := h.issuedTotal(t)
			audited := len(auditLines(t, h.auditPath))
			assertError(t, h.raw(t, tc.c), 400, "invalid_request")
			if n := h.issuedTotal(t); n != issued {
				t.Errorf("IDs issued for a refused request: %v -> %v", issued, n)
			}
			if v := h.view(t, id); v.State != "pending" || len(v.History) != 1 {
				t.Errorf("a refused request changed %s: %+v", id, v)
			}
			if n := len(auditLines(t, h.auditPath)); n != audited {
				t.Errorf("audit entries %d -> %d for a refused request", audited, n)
			}
		})
	}
	// Valid text is kept as sent and served back as valid JSON.
	for _, tc := range []struct{ name, metadata, want string }{
		{"surrogate pair escape", `{"a":"\ud83d\ude00"}`, "\U0001F600"},
		{"upper-case surrogate pair escape", `{"a":"\uD83D\uDE00"}`, "\U0001F600"},
		{"raw four-byte rune", "{\"a\":\"\U0001F600\"}", "\U0001F600"},
		{"escaped backslash before u", `{"a":"\\ud800"}`, `\ud800`},
		{"replacement character", `{"a":"\ufffd"}`, "\uFFFD"},
	} {
		t.Run("kept: "+tc.name, func(t *testing.T) {
			id := h.generateOne(t, `{"metadata":`+tc.metadata+`}`)
			r := h.get(t, "/ids/"+id.String())
			if r.status != 200 || !utf8.Valid(r.body) || !json.Valid(r.body) {
				t.Fatalf("GET /ids/%s: %d, valid UTF-8 %v, valid JSON %v: %q", id, r.status, utf8.Valid(r.body), json.Valid(r.body), r.body)
			}
			var v struct{ Metadata map[string]string }
			if err := json.Unmarshal(r.body, &v); err != nil || v.Metadata["a"] != tc.want {
				t.Fatalf("metadata %q (%v), want a=%q", v.Metadata, err, tc.want)
			}
		})
	}
}
