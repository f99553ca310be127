package httpapi_test

import (
	"strings"
	"testing"
)

// TestStrictJSON: what encoding/json alone would let through is refused,
// and nothing is issued for it.
func TestStrictJSON(t *testing.T) {
	h := newHarness(t)
	deep := strings.Repeat(`{"a":`, 20) + "1" + strings.Repeat("}", 20)
	tests := []struct{ name, path, body string }{
		{"duplicate count", "/generate", `{"count":1,"count":1000}`},
		{"duplicate inside metadata", "/generate", `{"metadata":{"a":1,"a":2}}`},
		{"case variant of count", "/generate", `{"COUNT":3}`},
		{"case variant of id", "/commit", `{"ID":"019ab697-e800-8007-8200-0000000003e9"}`},
		{"nested too deep", "/generate", `{"metadata":` + deep + `}`},
		{"duplicate id", "/compensate", `{"id":"019ab697-e800-8007-8200-0000000003e9","id":"019ab697-e800-8007-8200-0000000003ea"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.issuedTotal(t)
			r := h.post(t, tt.path, tt.body)
			if r.status != 400 || !strings.Contains(string(r.body), `"code":"invalid_request"`) {
				t.Fatalf("%s: %s", tt.body, r)
			}
			if h.issuedTotal(t) != before {
				t.Fatal("refused body issued IDs")
			}
		})
	}
	// Still fine: nested metadata within the limit, keys repeated at
	// different levels.
	if r := h.post(t, "/generate", `{"metadata":{"a":{"a":{"count":1}},"count":2}}`); r.status != 200 {
		t.Fatalf("legal body refused: %s", r)
	}
}
