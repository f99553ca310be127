package main

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func response(status int, contentType, body string, headers ...string) wireAnswer {
	h := http.Header{}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		h.Set(headers[i], headers[i+1])
	}
	return wireAnswer{status: status, header: h, body: []byte(body)}
}

// TestParseGenerate: what counts as a contract answer of /generate, and
// what is a bad one (a wrong 200 in form, or an idgen answer other than
// 200 or 503 with Retry-After). HAProxy's own pages are not idgen's.
func TestParseGenerate(t *testing.T) {
	a1, a2 := testID(1).String(), testID(2).String()
	other := "019ac0a1-5a10-8000-8100-0000000003e9" // shard 1
	js := "application/json"
	for _, tc := range []struct {
		name   string
		resp   wireAnswer
		count  int
		ids    int
		bad    string // substring of the verdict; "" = contract answer
		fromLB bool
	}{
		{"single", response(200, js, `{"id":"`+a1+`"}`, backendHeader, instA), 0, 1, "", false},
		{"batch", response(200, js, `{"ids":["`+a1+`","`+a2+`"]}`), 2, 2, "", false},
		{"503 with Retry-After", response(503, js, `{"error":{"code":"unavailable","message":"m"}}`, "Retry-After", "1"), 0, 0, "", false},
		{"haproxy 503", response(503, "text/html", "<html>503</html>"), 0, 0, "", true},
		{"haproxy 504", response(504, "text/html", "<html>504</html>"), 0, 0, "", true},
		{"503 without Retry-After", response(503, js, `{"error":{"code":"unavailable","message":"m"}}`), 0, 0, "without Retry-After", false},
		{"500 not JSON", response(500, js, `oops`), 0, 0, "not a JSON error", false},
		{"batch short", response(200, js, `{"ids":["`+a1+`"]}`), 2, 0, "200 for count 2", false},
		{"single as batch", response(200, js, `{"ids":["`+a1+`"]}`), 0, 0, "200 for count 0", false},
		{"not increasing", response(200, js, `{"ids":["`+a2+`","`+a1+`"]}`), 2, 0, "increasing", false},
		{"repeated in batch", response(200, js, `{"ids":["`+a1+`","`+a1+`"]}`), 2, 0, "increasing", false},
		{"wrong shard", response(200, js, `{"id":"`+other+`"}`), 0, 0, "shard", false},
		{"garbage id", response(200, js, `{"id":"nope"}`), 0, 0, "does not parse", false},
		{"200 html", response(200, "text/html", "<html></html>"), 0, 0, "not the JSON", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := parseGenerate(tc.resp, tc.count, shard)
			if tc.bad == "" && a.bad != "" || tc.bad != "" && !strings.Contains(a.bad, tc.bad) {
				t.Fatalf("verdict %q, want %q", a.bad, tc.bad)
			}
			if len(a.ids) != tc.ids || a.fromLB != tc.fromLB {
				t.Fatalf("%d IDs (fromLB %v), want %d (%v)", len(a.ids), a.fromLB, tc.ids, tc.fromLB)
			}
		})
	}
	if !contractStatus(200) || !contractStatus(503) || contractStatus(500) || contractStatus(409) {
		t.Fatal("contractStatus")
	}
}

// TestHAProxyConfig: the load balancer checks /health/ready, redispatches
// retries and names the backend that answered.
func TestHAProxyConfig(t *testing.T) {
	cfg := haproxyConfig("127.0.0.1:9000", []string{instA, instB}, map[string]string{instA: "127.0.0.1:1", instB: "127.0.0.1:2"}, defaultHAProxyTimeouts)
	for _, want := range []string{
		"bind 127.0.0.1:9000", "http-check send meth GET uri /health/ready", "http-check expect status 200",
		"option redispatch", "retries 2", "retry-on conn-failure empty-response junk-response response-timeout 503",
		"server idgen-a 127.0.0.1:1 check", "server idgen-b 127.0.0.1:2 check", "set-header X-Chaos-Backend %[srv_name]",
		"fall 2 rise 2", "timeout server 8000ms",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
	if d := defaultHAProxyTimeouts.worstCase(); d < 3*defaultHAProxyTimeouts.Server {
		t.Errorf("worst case %v below three server timeouts", d)
	}
}

func msDur(ms int) time.Duration { return time.Duration(ms) * time.Millisecond }
