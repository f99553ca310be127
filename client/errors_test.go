package client

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/idgen/idgen/api"
)

// Every code of the API has a sentinel of its own, and no other code has
// one.
func TestEveryCodeHasASentinel(t *testing.T) {
	seen := map[error]string{}
	for _, code := range api.Codes() {
		s, ok := sentinels[code]
		if !ok {
			t.Errorf("code %q has no sentinel", code)
			continue
		}
		if other, dup := seen[s]; dup {
			t.Errorf("codes %q and %q share a sentinel", code, other)
		}
		seen[s] = code
	}
	if len(sentinels) != len(api.Codes()) {
		t.Errorf("%d sentinels for %d codes", len(sentinels), len(api.Codes()))
	}
}

func TestErrorIs(t *testing.T) {
	for code := range sentinels {
		status, _ := api.Status(code)
		e := &Error{Status: status, Code: code, Message: "m"}
		wrapped := fmt.Errorf("client: op: giving up after 3 attempts: %w", e)
		for other, o := range sentinels {
			if got := errors.Is(wrapped, o); got != (other == code) {
				t.Errorf("errors.Is(%s error, sentinel of %s) = %v", code, other, got)
			}
		}
	}
	unknown := &Error{Status: 418, Code: "teapot"}
	for code, s := range sentinels {
		if errors.Is(unknown, s) {
			t.Errorf("an unknown code matches %s", code)
		}
	}
}

func TestAsError(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name   string
		status int
		header http.Header
		body   string
		want   Error
	}{
		{"API body", 409, http.Header{"X-Request-Id": {"r1"}}, `{"error":{"code":"expired","message":"too late"}}`,
			Error{Status: 409, Code: api.CodeExpired, Message: "too late", RequestID: "r1"}},
		{"503 with Retry-After seconds", 503, http.Header{"Retry-After": {"3"}}, `{"error":{"code":"unavailable","message":"m"}}`,
			Error{Status: 503, Code: api.CodeUnavailable, Message: "m", RetryAfter: 3 * time.Second}},
		{"429 with Retry-After date", 429, http.Header{"Retry-After": {now.Add(2 * time.Second).Format(http.TimeFormat)}}, ``,
			Error{Status: 429, Code: api.CodeRateLimited, Message: "Too Many Requests", RetryAfter: 2 * time.Second}},
		{"a proxy's page", 502, nil, "<html>gateway</html>",
			Error{Status: 502, Code: api.CodeInternal, Message: "Bad Gateway: <html>gateway</html>"}},
		{"a bare 409 names no code", 409, nil, "",
			Error{Status: 409, Message: "Conflict"}},
		{"garbage Retry-After", 503, http.Header{"Retry-After": {"soon"}}, ``,
			Error{Status: 503, Code: api.CodeUnavailable, Message: "Service Unavailable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.header {
				h[http.CanonicalHeaderKey(k)] = v
			}
			got := (&answer{status: tt.status, header: h, body: []byte(tt.body)}).asError(now)
			if *got != tt.want {
				t.Fatalf("asError = %+v, want %+v", *got, tt.want)
			}
		})
	}
}
