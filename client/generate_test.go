package client

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestGenerateBody(t *testing.T) {
	tests := []struct {
		req  GenerateRequest
		n    int
		want string
	}{
		{GenerateRequest{}, 0, `{}`},
		{GenerateRequest{}, 3, `{"count":3}`},
		{GenerateRequest{Timeout: 1500 * time.Microsecond}, 0, `{"timeout_ms":2}`},
		{GenerateRequest{Timeout: time.Nanosecond}, 0, `{"timeout_ms":1}`},
		{GenerateRequest{Timeout: -time.Nanosecond}, 0, `{"timeout_ms":-1}`},
		{GenerateRequest{Metadata: map[string]string{"b": "2", "a": "1"}}, 0, `{"metadata":{"a":"1","b":"2"}}`},
	}
	for _, tt := range tests {
		r, err := generateCall(tt.req, tt.n)
		if err != nil || string(r.body) != tt.want || r.path != "/generate" {
			t.Errorf("generateCall(%+v, %d) = %s %s, %v; want %s", tt.req, tt.n, r.path, r.body, err, tt.want)
		}
		if u, err := uuid.Parse(r.idemKey); err != nil || u.Version() != 7 {
			t.Errorf("key %q is not a UUIDv7", r.idemKey)
		}
	}
	r, _ := generateCall(GenerateRequest{IdempotencyKey: "mine"}, 0)
	if r.idemKey != "mine" {
		t.Errorf("key %q, want the caller's", r.idemKey)
	}
}
