package httpapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/valyala/fasthttp"

	"github.com/idgen/idgen/api"
	"github.com/idgen/idgen/functions/httpapi"
)

// sourceIP is the client address API Gateway reports in the test events.
const sourceIP = "203.0.113.7"

// v2Event is an HTTP API (payload format 2.0) event on the $default stage
// as API Gateway builds it: lowercase header names, the query in
// rawQueryString, a JSON body as plain text.
func v2Event(method, target, body string, header map[string]string) events.APIGatewayV2HTTPRequest {
	path, query, _ := strings.Cut(target, "?")
	h := map[string]string{
		"host":            "abc123.execute-api.eu-west-1.amazonaws.com",
		"user-agent":      "curl/8.5.0",
		"x-forwarded-for": sourceIP,
		"accept":          "application/json,text/plain", // repeated header, joined by API Gateway
	}
	if body != "" {
		h["content-type"] = "application/json"
	}
	for k, v := range header {
		h[strings.ToLower(k)] = v
	}
	return events.APIGatewayV2HTTPRequest{
		Version:        "2.0",
		RouteKey:       "$default",
		RawPath:        path,
		RawQueryString: query,
		Headers:        h,
		Body:           body,
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RouteKey:   "$default",
			AccountID:  "123456789012",
			Stage:      "$default",
			RequestID:  "JKJaXmPLvHcESHA=",
			APIID:      "abc123",
			DomainName: "abc123.execute-api.eu-west-1.amazonaws.com",
			TimeEpoch:  time.Now().UnixMilli(),
			HTTP: events.APIGatewayV2HTTPRequestContextHTTPDescription{
				Method: method, Path: path, Protocol: "HTTP/1.1", SourceIP: sourceIP, UserAgent: "curl/8.5.0",
			},
		},
	}
}

// invoke runs ev through the adapter, checks the answer against the
// contract and returns it as a reply (the body base64-decoded when
// flagged) plus the raw v2 response.
func invoke(t testing.TB, st *stack, ev events.APIGatewayV2HTTPRequest) (*reply, events.APIGatewayV2HTTPResponse) {
	t.Helper()
	res, err := st.svc.HandleAPIGatewayV2(context.Background(), ev)
	if err != nil {
		t.Fatalf("%s %s: HandleAPIGatewayV2 returned a Go error for a valid event: %v", ev.RequestContext.HTTP.Method, ev.RawPath, err)
	}
	body := []byte(res.Body)
	if res.IsBase64Encoded {
		if body, err = base64.StdEncoding.DecodeString(res.Body); err != nil {
			t.Fatalf("response body flagged base64 is not: %v", err)
		}
	}
	r := &reply{status: res.StatusCode, body: body}
	for k, v := range res.Headers {
		r.header.Set(k, v)
	}
	checkV2Answer(t, ev, res)
	return r, res
}

// checkV2Answer checks the answer to ev against the contract.
func checkV2Answer(t testing.TB, ev events.APIGatewayV2HTTPRequest, res events.APIGatewayV2HTTPResponse) {
	t.Helper()
	body := []byte(res.Body)
	if res.IsBase64Encoded {
		var err error
		if body, err = base64.StdEncoding.DecodeString(res.Body); err != nil {
			t.Errorf("response body flagged base64 is not: %v", err)
			return
		}
	}
	var h fasthttp.ResponseHeader
	for k, v := range res.Headers {
		h.Set(k, v)
	}
	// The path as the adapter routes it: rawPath, made absolute.
	target := ev.RawPath
	if !strings.HasPrefix(target, "/") {
		target = "/" + target
	}
	if ev.RawQueryString != "" {
		target += "?" + ev.RawQueryString
	}
	checkContract(t, ev.RequestContext.HTTP.Method, target, res.StatusCode, &h, body)
}

// TestAPIGatewayV2Routes sends the requests of the server tests as HTTP API
// v2 events: the same routes, statuses and JSON bodies come back.
func TestAPIGatewayV2Routes(t *testing.T) {
	t.Parallel()
	st := newStack(t, newTestCore(t))
	issued, _ := invoke(t, st, v2Event("POST", "/generate", "", nil))
	if issued.status != 200 {
		t.Fatalf("POST /generate: %s", issued)
	}
	var one struct{ ID string }
	if err := json.Unmarshal(decodeExact(t, issued.body, "id")["id"], &one.ID); err != nil {
		t.Fatal(err)
	}
	parseOurs(t, one.ID)

	b64 := func(ev events.APIGatewayV2HTTPRequest) events.APIGatewayV2HTTPRequest {
		ev.Body, ev.IsBase64Encoded = base64.StdEncoding.EncodeToString([]byte(ev.Body)), true
		return ev
	}
	for _, tc := range []struct {
		name   string
		ev     events.APIGatewayV2HTTPRequest
		status int
		code   string       // error code; "" = success
		check  func(*reply) // on success
	}{
		{name: "generate JSON body", ev: v2Event("POST", "/generate", `{"timeout_ms":60000}`, nil), status: 200, check: func(r *reply) {
			var s string
			_ = json.Unmarshal(decodeExact(t, r.body, "id")["id"], &s)
			parseOurs(t, s)
		}},
		{name: "generate base64 body with count", ev: b64(v2Event("POST", "/generate", `{"count":3}`, nil)), status: 200, check: func(r *reply) {
			var ids []string
			if err := json.Unmarshal(decodeExact(t, r.body, "ids")["ids"], &ids); err != nil || len(ids) != 3 {
				t.Fatalf("ids %s: want 3 (%v)", r.body, err)
			}
			for _, s := range ids {
				parseOurs(t, s)
			}
		}},
		{name: "bad JSON", ev: v2Event("POST", "/generate", `{"count":`, nil), status: 400, code: "invalid_request"},
		{name: "bad JSON base64", ev: b64(v2Event("POST", "/generate", `{"count":"x"}`, nil)), status: 400, code: "invalid_request"},
		{name: "malformed base64", ev: func() events.APIGatewayV2HTTPRequest {
			ev := v2Event("POST", "/generate", "not base64!", nil)
			ev.IsBase64Encoded = true
			return ev
		}(), status: 400, code: "invalid_request"},
		{name: "wrong Content-Type", ev: v2Event("POST", "/generate", `{}`, map[string]string{"content-type": "text/plain"}), status: 415, code: "unsupported_media_type"},
		{name: "GET /ids/{id}", ev: v2Event("GET", "/ids/"+one.ID, "", nil), status: 200, check: func(r *reply) {
			var v api.IDRecord
			if err := json.Unmarshal(r.body, &v); err != nil || v.ID != one.ID || v.State != "pending" {
				t.Errorf("GET /ids/%s: %s (%v), want the pending record", one.ID, r.body, err)
			}
		}},
		{name: "GET /ids/{id} uppercase", ev: v2Event("GET", "/ids/"+strings.ToUpper(one.ID), "", nil), status: 200},
		{name: "GET /ids/ malformed", ev: v2Event("GET", "/ids/nope", "", nil), status: 400, code: "invalid_id"},
		{name: "GET /ids/ never issued", ev: v2Event("GET", "/ids/"+neverIssued(1).String(), "", nil), status: 404, code: "not_found"},
		{name: "unknown route", ev: v2Event("GET", "/nope", "", nil), status: 404, code: "not_found"},
		{name: "wrong method", ev: v2Event("GET", "/generate", "", nil), status: 405, code: "method_not_allowed", check: nil},
		{name: "logs bogus level", ev: v2Event("GET", "/logs?level=bogus", "", nil), status: 400, code: "invalid_request"},
		{name: "logs limit 0", ev: v2Event("GET", "/logs?level=info&limit=0", "", nil), status: 400, code: "invalid_request"},
		{name: "logs good query", ev: v2Event("GET", "/logs?level=debug&limit=5", "", nil), status: 200, check: func(r *reply) {
			var v struct{ Entries []json.RawMessage }
			if err := json.Unmarshal(r.body, &v); err != nil || len(v.Entries) == 0 || len(v.Entries) > 5 {
				t.Errorf("/logs?limit=5: %d entries (%v), want 1..5", len(v.Entries), err)
			}
		}},
		{name: "health", ev: v2Event("GET", "/health/ready", "", nil), status: 200},
		{name: "commit without body", ev: v2Event("POST", "/commit", "", nil), status: 400, code: "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, raw := invoke(t, st, tc.ev)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d (body %.300s)", r.status, tc.status, r.body)
			}
			if raw.IsBase64Encoded {
				t.Errorf("JSON answer sent base64 encoded")
			}
			if tc.code != "" {
				assertError(t, r, tc.status, tc.code)
				return
			}
			assertJSON(t, r)
			if tc.check != nil {
				tc.check(r)
			}
		})
	}
	if r, _ := invoke(t, st, v2Event("GET", "/generate", "", nil)); r.h("Allow") != "POST" {
		t.Errorf("405 answer: Allow %q, want POST", r.h("Allow"))
	}
}

// TestAPIGatewayV2MaxBody: the decoded body is held to Config.MaxBody on
// every route, as the server's MaxRequestBodySize does, plain or base64.
func TestAPIGatewayV2MaxBody(t *testing.T) {
	t.Parallel()
	st := newStack(t, newTestCore(t))
	for _, tc := range []struct {
		name   string
		path   string
		size   int
		base64 bool
		status int
	}{
		{"exactly 64 KiB", "/generate", maxBody, false, 200},
		{"exactly 64 KiB base64", "/generate", maxBody, true, 200},
		{"64 KiB + 1", "/generate", maxBody + 1, false, 413},
		{"64 KiB + 1 base64", "/generate", maxBody + 1, true, 413},
		{"1 MiB", "/generate", 1 << 20, false, 413},
		{"on a GET route", "/health", maxBody + 1, false, 413},
		{"on an unknown route", "/nope", maxBody + 1, false, 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := v2Event("POST", tc.path, paddedBody(tc.size), map[string]string{"X-Request-ID": "big-1"})
			if tc.base64 {
				ev.Body, ev.IsBase64Encoded = base64.StdEncoding.EncodeToString([]byte(ev.Body)), true
			}
			r, _ := invoke(t, st, ev)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d (body %.200s)", r.status, tc.status, r.body)
			}
			if tc.status == 413 {
				assertError(t, r, 413, "body_too_large")
				if r.h("X-Request-ID") != "big-1" {
					t.Errorf("413: X-Request-ID %q, want big-1 echoed", r.h("X-Request-ID"))
				}
			}
		})
	}
}

// TestAPIGatewayV2RequestID: a given X-Request-ID is echoed; without one the
// request takes API Gateway's requestContext.requestId, so the logs and API
// Gateway's access log share it.
func TestAPIGatewayV2RequestID(t *testing.T) {
	t.Parallel()
	st := newStack(t, newTestCore(t))
	for _, tc := range []struct {
		name, given, want string
		ev                events.APIGatewayV2HTTPRequest
	}{
		{"given on success", "req-lambda-1", "req-lambda-1", v2Event("POST", "/generate", "", nil)},
		{"given on error", "req-lambda-2", "req-lambda-2", v2Event("GET", "/nope", "", nil)},
		{"absent: API Gateway's", "", "JKJaXmPLvHcESHA=", v2Event("GET", "/health/live", "", nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.given != "" {
				tc.ev.Headers["x-request-id"] = tc.given
			}
			if r, _ := invoke(t, st, tc.ev); r.h("X-Request-ID") != tc.want {
				t.Errorf("X-Request-ID %q, want %q", r.h("X-Request-ID"), tc.want)
			}
		})
	}
	// The request's log lines carry the ID: the same logger as the server.
	r, _ := invoke(t, st, v2Event("GET", "/logs?request_id=req-lambda-1", "", nil))
	if r.status != 200 || !strings.Contains(string(r.body), "req-lambda-1") {
		t.Errorf("/logs?request_id=req-lambda-1: %.300s, want the request's log lines", r.body)
	}
}

// TestAPIGatewayV2SamePath: headers (Idempotency-Key, Authorization), the
// source IP and the metrics go through the server's code: a replay is
// answered from the registry, auth is enforced, the audit line names
// sourceIp, and the request counts in /metrics.
func TestAPIGatewayV2SamePath(t *testing.T) {
	t.Parallel()
	h, mint := authHarness(t)
	st := h.stack
	tok := "Bearer " + mint("alice", "ids:generate ids:commit ids:read ops:read", time.Hour)

	if r, _ := invoke(t, st, v2Event("POST", "/generate", "", nil)); r.status != 401 {
		t.Fatalf("no token: %s, want 401", r)
	}
	hdr := map[string]string{"Authorization": tok, "Idempotency-Key": "order-77"}
	first, _ := invoke(t, st, v2Event("POST", "/generate", `{"count":2}`, hdr))
	again, _ := invoke(t, st, v2Event("POST", "/generate", `{"count":2}`, hdr))
	if first.status != 200 || again.status != 200 || string(first.body) != string(again.body) {
		t.Fatalf("idempotent replay: %s then %s, want the same 200", first, again)
	}
	if again.h("Idempotent-Replayed") != "true" {
		t.Errorf("replay: Idempotent-Replayed %q, want true", again.h("Idempotent-Replayed"))
	}
	var batch struct{ IDs []string }
	_ = json.Unmarshal(first.body, &batch)
	if len(batch.IDs) != 2 {
		t.Fatalf("batch %s", first.body)
	}
	commit := v2Event("POST", "/commit", `{"id":"`+batch.IDs[0]+`"}`, map[string]string{"Authorization": tok, "X-Request-ID": "commit-lambda"})
	if r, _ := invoke(t, st, commit); r.status != 200 {
		t.Fatalf("commit: %s", r)
	}
	found := false
	for _, l := range auditLines(t, st.auditPath) {
		if l["action"] == "id.commit" && l["request_id"] == "commit-lambda" {
			found = true
			if l["source"] != sourceIP || l["actor"] != "alice" {
				t.Errorf("audit line %v: want source %s, actor alice", l, sourceIP)
			}
		}
	}
	if !found {
		t.Errorf("no audit line for the commit")
	}
	if v := h.metric(t, `idgen_ids_issued_total`); v != 2 {
		t.Errorf("idgen_ids_issued_total %v, want 2 (one batch, then its replay)", v)
	}
	r, raw := invoke(t, st, v2Event("GET", "/metrics", "", map[string]string{"Authorization": tok}))
	if r.status != 200 || raw.IsBase64Encoded || !strings.Contains(raw.Body, "idgen_") {
		t.Errorf("/metrics: status %d, base64 %v, want the text exposition as text", r.status, raw.IsBase64Encoded)
	}
}

// TestAPIGatewayV2EventJSON decodes an event as the Lambda runtime receives
// it (API Gateway's documented example, trimmed) and encodes the answer as
// API Gateway reads it.
func TestAPIGatewayV2EventJSON(t *testing.T) {
	t.Parallel()
	st := newStack(t, newTestCore(t))
	const event = `{
	  "version": "2.0",
	  "routeKey": "$default",
	  "rawPath": "/generate",
	  "rawQueryString": "",
	  "cookies": ["cookie1=a", "cookie2=b"],
	  "headers": {"content-type": "application/json", "header1": "value1,value2", "x-request-id": "from-json"},
	  "requestContext": {
	    "accountId": "123456789012", "apiId": "api-id", "domainName": "id.execute-api.us-east-1.amazonaws.com",
	    "domainPrefix": "id",
	    "http": {"method": "POST", "path": "/generate", "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "agent"},
	    "requestId": "id", "routeKey": "$default", "stage": "$default", "time": "12/Mar/2020:19:03:58 +0000", "timeEpoch": 1583348638390
	  },
	  "body": "eyJjb3VudCI6Mn0=",
	  "isBase64Encoded": true
	}`
	var ev events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal([]byte(event), &ev); err != nil {
		t.Fatal(err)
	}
	res, err := st.svc.HandleAPIGatewayV2(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	checkV2Answer(t, ev, res)
	out, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		StatusCode      int               `json:"statusCode"`
		Headers         map[string]string `json:"headers"`
		Body            string            `json:"body"`
		IsBase64Encoded bool              `json:"isBase64Encoded"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	header := func(name string) string { // HTTP header names are case-insensitive
		for k, v := range got.Headers {
			if strings.EqualFold(k, name) {
				return v
			}
		}
		return ""
	}
	if got.StatusCode != 200 || got.IsBase64Encoded || header("X-Request-ID") != "from-json" || !strings.HasPrefix(header("Content-Type"), "application/json") {
		t.Fatalf("response %s", out)
	}
	var ids struct{ IDs []string }
	if err := json.Unmarshal([]byte(got.Body), &ids); err != nil || len(ids.IDs) != 2 {
		t.Fatalf("body %q: want 2 ids (%v)", got.Body, err)
	}
}

// TestAPIGatewayV2NotAnHTTPEvent: an event of another trigger is the one
// case answered with a Go error (the function is miswired); HEAD answers
// carry no body.
func TestAPIGatewayV2NotAnHTTPEvent(t *testing.T) {
	t.Parallel()
	st := newStack(t, newTestCore(t))
	for _, ev := range []events.APIGatewayV2HTTPRequest{
		{},                                     // e.g. an SQS event decoded into this type
		{Version: "1.0", RawPath: "/generate"}, // payload format 1.0
	} {
		if _, err := st.svc.HandleAPIGatewayV2(context.Background(), ev); !errors.Is(err, httpapi.ErrNotHTTPEvent) {
			t.Errorf("event %+v: err %v, want ErrNotHTTPEvent", ev, err)
		}
	}
	r, raw := invoke(t, st, v2Event("HEAD", "/health", "", nil))
	if r.status != 405 || raw.Body != "" {
		t.Errorf("HEAD /health: %d %q, want 405 without a body", r.status, raw.Body)
	}
}

// FuzzAPIGatewayV2 sends arbitrary paths, queries and bodies (plain or
// flagged base64) as v2 events: never a Go error, never a panic or 5xx;
// every refusal is the JSON error with a request ID.
func FuzzAPIGatewayV2(f *testing.F) {
	for _, s := range []struct {
		method, path, query, body string
		b64                       bool
	}{
		{"POST", "/generate", "", "", false},
		{"POST", "/generate", "", "eyJjb3VudCI6Mn0=", true},
		{"POST", "/generate", "", `{"count":`, false},
		{"POST", "/generate", "", "not base64!", true},
		{"GET", "/ids/" + uuidV4, "", "", false},
		{"GET", "/ids/a?b#c d", "", "", false},
		{"GET", "/logs", "level=bogus&limit=%zz", "", false},
		{"GET", "ids/%2e%2e/generate", "", "", false},
		{"DELETE", "/subjects/x/key", "", "", false},
		{"POST", "/compensate", "a=1", `{"id":"x","reason":"r"}`, false},
		{"GET", "", "", "", false},
	} {
		f.Add(s.method, s.path, s.query, s.body, s.b64)
	}
	st, logs := fuzzStack(f)
	f.Fuzz(func(t *testing.T, method, path, query, body string, b64 bool) {
		switch method {
		case "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH":
		default:
			method = "POST"
		}
		ev := v2Event(method, "/", body, nil)
		ev.RawPath, ev.RawQueryString, ev.RequestContext.HTTP.Path, ev.IsBase64Encoded = path, query, path, b64
		res, err := st.svc.HandleAPIGatewayV2(context.Background(), ev)
		if err != nil {
			t.Fatalf("Go error for a client request: %v", err)
		}
		checkV2Answer(t, ev, res)
		if res.StatusCode >= 500 || (res.StatusCode != 200 && res.StatusCode < 400) {
			t.Fatalf("%s %q?%q: status %d (body %.200s)", method, path, query, res.StatusCode, res.Body)
		}
		rid := ""
		for k, v := range res.Headers {
			if strings.EqualFold(k, "X-Request-ID") {
				rid = v
			}
		}
		if rid == "" {
			t.Errorf("no X-Request-ID")
		}
		if res.StatusCode != 200 && method != "HEAD" {
			checkErrorBody(t, []byte(res.Body), "")
		}
		for _, e := range logs.TakeAll() {
			t.Errorf("logged at %s: %s %v", e.Level, e.Message, e.ContextMap())
		}
	})
}
