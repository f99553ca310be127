package httpapi_test

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/idgen/idgen/shared/idcodec"
)

// fuzzStack is a stack whose log lines at warn and above are collected
// rather than sent to f.Log (F's methods must not run inside the target).
// Unknown errors (500) are logged at error, unavailability (503) at warn, so
// the targets also assert that nothing was logged there.
func fuzzStack(f *testing.F) (*stack, *observer.ObservedLogs) {
	core, logs := observer.New(zap.WarnLevel)
	return newStack(f, core), logs
}

// handleRaw runs one request through Service.Handle, as the Lambda adapter
// does, and checks the answer against the contract; ctype "" sends no
// Content-Type.
func handleRaw(t testing.TB, st *stack, method, uri string, body []byte, ctype string, header map[string]string) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI(uri)
	req.SetBody(body)
	if ctype != "" {
		req.Header.SetContentType(ctype)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	var c fasthttp.RequestCtx
	c.Init(&req, nil, nil)
	st.svc.Handle(&c)
	checkCtx(t, &c)
	return &c
}

func issuedNow(t *testing.T, st *stack) float64 {
	t.Helper()
	mfs, err := st.metrics.Registry.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "idgen_ids_issued_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no idgen_ids_issued_total")
	return 0
}

// checkAnswer asserts what every answer has: a JSON Content-Type and an
// X-Request-ID; for 4xx the uniform error body. It returns the status.
func checkAnswer(t *testing.T, c *fasthttp.RequestCtx, logs *observer.ObservedLogs) int {
	t.Helper()
	status := c.Response.StatusCode()
	if status >= 500 || (status != 200 && status < 400) {
		t.Fatalf("status %d (body %s), want 200 or 4xx", status, c.Response.Body())
	}
	if ct := string(c.Response.Header.ContentType()); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if len(c.Response.Header.Peek("X-Request-ID")) == 0 {
		t.Errorf("no X-Request-ID")
	}
	if status != 200 {
		checkErrorBody(t, c.Response.Body(), "")
	}
	for _, e := range logs.TakeAll() {
		t.Errorf("logged at %s: %s %v", e.Level, e.Message, e.ContextMap())
	}
	return status
}

// FuzzGenerateBody sends arbitrary bodies (and Content-Types and
// Idempotency-Keys) to POST /generate: never a panic, never 5xx; 200 answers
// hold registered IDs of ours, as many as asked and with an accepted
// timeout; refusals take no counter and issue nothing.
func FuzzGenerateBody(f *testing.F) {
	for _, s := range []string{
		``, `{}`, ` {} `, `null`, `{"count":5}`, `{"count":1000}`, `{"count":0}`, `{"count":1001}`,
		`{"count":-1}`, `{"count":"x"}`, `{"count":1e3}`, `{"count":2.0}`, `{"timeout_ms":200}`,
		`{"timeout_ms":0}`, `{"timeout_ms":604800001}`, `{"metadata":{"a":[1,{"b":null}]}}`,
		`{"metadata":"x"}`, `{"metadata":{}}`, `{"metadata":{"a":"` + strings.Repeat("x", 1100) + `"}}`,
		`{"COUNT":3}`, `{"count":1,"count":2}`, `{}{}`, `{} x`, `{"count":`, `[]`, `"\u0000"`,
		`{"metadata":{"k":"\ud800"}}`, "\xff\xfe{}", `{"unknown":1}`, `{"timeout_ms":1E700}`, `{"count":1E700}`,
		`{"metadata":{"a":1E700}}`, `{"metadata":{"a":-1e-700}}`,
	} {
		f.Add([]byte(s), "application/json", "")
	}
	f.Add([]byte(`{}`), "", "")
	f.Add([]byte(`{}`), "text/plain", "")
	f.Add([]byte(`{}`), "application/json; charset=utf-8", "key-1")
	f.Add([]byte(`{"count":2}`), "application/json", "key-1")
	f.Add([]byte(`{}`), "application/json", "bad key")
	f.Add([]byte(`{}`), "application/json", strings.Repeat("k", 256))

	st, logs := fuzzStack(f)
	f.Fuzz(func(t *testing.T, body []byte, ctype, key string) {
		var header map[string]string
		if key != "" {
			header = map[string]string{"Idempotency-Key": key}
		}
		headroom, issued := st.gen.Stats().Headroom, issuedNow(t, st)
		c := handleRaw(t, st, "POST", "/generate", body, ctype, header)
		status := checkAnswer(t, c, logs)
		if status != 200 {
			if status != 422 { // a key reused with another body burns the counters it took
				if after := st.gen.Stats().Headroom; after < headroom {
					t.Errorf("refused request (%d) took %d counters", status, headroom-after)
				}
			}
			if after := issuedNow(t, st); after != issued {
				t.Errorf("refused request (%d) moved idgen_ids_issued_total by %v", status, after-issued)
			}
			return
		}

		var ans struct {
			ID  *string  `json:"id"`
			IDs []string `json:"ids"`
		}
		if err := json.Unmarshal(c.Response.Body(), &ans); err != nil {
			t.Fatalf("200 body %s: %v", c.Response.Body(), err)
		}
		texts := ans.IDs
		if ans.ID != nil {
			texts = []string{*ans.ID}
		}
		// What the service should have understood (the same lenient
		// decoder, so field case and duplicates agree).
		var req struct {
			Count     *int   `json:"count"`
			TimeoutMS *int64 `json:"timeout_ms"`
		}
		if json.Unmarshal(body, &req) == nil {
			want := 1
			if req.Count != nil {
				want = *req.Count
			}
			if len(texts) != want || (req.Count != nil) != (ans.ID == nil) {
				t.Errorf("body %q: answer %s, want %d IDs", body, c.Response.Body(), want)
			}
			if req.TimeoutMS != nil && (*req.TimeoutMS < 1 || *req.TimeoutMS > 7*24*3600*1000) {
				t.Errorf("body %q: timeout_ms %d accepted, outside 1..604800000", body, *req.TimeoutMS)
			}
		}
		for _, s := range texts {
			id, err := idcodec.Parse(s)
			if err != nil || id.String() != s {
				t.Fatalf("answered ID %q: %v", s, err)
			}
			g := handleRaw(t, st, "GET", "/ids/"+s, nil, "", nil)
			if g.Response.StatusCode() != 200 {
				t.Errorf("answered ID %s not registered: %d %s", s, g.Response.StatusCode(), g.Response.Body())
			}
		}
	})
}

// FuzzGetIDPath sends arbitrary text as GET /ids/{id}. The answer follows
// from the path as sent, never from a decoded or normalised form: a path
// with percent-encoding, a backslash, a byte outside printable ASCII, an
// empty or a dot segment is 400 invalid_request; otherwise the rest is the
// ID: 404 for an ID of ours never issued, 400 invalid_id for anything else.
// Never a 5xx, never another route.
func FuzzGetIDPath(f *testing.F) {
	for _, s := range []string{
		"not-a-uuid", uuidV4, neverIssued(1).String(), strings.ToUpper(neverIssued(2).String()),
		"00000000-0000-8000-8000-000000000000", "ffffffff-ffff-8fff-bfff-ffffffffffff",
		"0f8fad5b-d9cb-869f-a165-70867728950", "0f8fad5b-d9cb-869f-a165-70867728950e/x", "%2e%2e",
		"../generate", "0f8fad5b+d9cb+869f+a165+70867728950e", "0f8fad5b-d9cb-869f-c165-70867728950e",
		"/" + neverIssued(3).String(), "%2f" + neverIssued(4).String(), neverIssued(5).String() + "/", "a\\b", "\xff", "?x",
	} {
		f.Add(s)
	}
	st, logs := fuzzStack(f)
	f.Fuzz(func(t *testing.T, s string) {
		c := handleRaw(t, st, "GET", "/ids/"+s, nil, "", nil)
		status := checkAnswer(t, c, logs)
		// The path as sent: "?" and "#" end it; a control byte makes the
		// whole target unparsable (no path).
		raw := string(c.URI().PathOriginal())
		rest, ok := strings.CutPrefix(raw, "/ids/")
		if !ok && raw != "" {
			t.Fatalf("path as sent %q lost its prefix", raw)
		}
		want, code := 404, "not_found"
		switch _, err := idcodec.Parse(rest); {
		case raw == "" || ambiguousPath(raw) || !queryUTF8(c):
			want, code = 400, "invalid_request"
		case err != nil:
			want, code = 400, "invalid_id"
		}
		if status != want {
			t.Fatalf("GET %q: %d %s, want %d", raw, status, c.Response.Body(), want)
		}
		checkErrorBody(t, c.Response.Body(), code)
	})
}

// queryUTF8 reports whether every query parameter, decoded, is UTF-8 (the
// rule of every route, checked before the ID).
func queryUTF8(c *fasthttp.RequestCtx) bool {
	ok := true
	for k, v := range c.QueryArgs().All() {
		ok = ok && utf8.Valid(k) && utf8.Valid(v)
	}
	return ok
}

// ambiguousPath reports whether a raw path could name another resource once
// decoded or normalised (the test's own statement of the rule).
func ambiguousPath(raw string) bool {
	for i := 0; i < len(raw); i++ {
		if ch := raw[i]; ch < 0x21 || ch > 0x7e || ch == '%' || ch == '\\' {
			return true
		}
	}
	for _, seg := range strings.Split(raw[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// FuzzTransitionBody sends arbitrary bodies to /commit and /compensate:
// never a panic, never 5xx, only the statuses of the contract.
func FuzzTransitionBody(f *testing.F) {
	id := neverIssued(3).String()
	for _, s := range []string{
		``, `{}`, `null`, `{"id":null}`, `{"id":5}`, `{"id":"nope"}`, `{"id":"` + uuidV4 + `"}`,
		`{"id":"` + id + `"}`, `{"id":"` + id + `","reason":"x"}`, `{"id":"` + id + `","reason":"` + strings.Repeat("r", 300) + `"}`,
		`{"id":"` + id + `"}{}`, `{"ID":"` + strings.ToUpper(id) + `"}`, `{"id":"` + id + `","x":1}`,
		`{"event_id":"e-1","id":"` + id + `","reason":"x","occurred_at":"2026-01-02T03:04:05Z","source":"payments"}`,
		`{"id":"` + id + `","event_id":7}`, `{"id":"` + id + `","source":"a b"}`, `{"id":"` + id + `","occurred_at":"now"}`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	st, logs := fuzzStack(f)
	f.Fuzz(func(t *testing.T, body []byte, compensate bool) {
		path := "/commit"
		if compensate {
			path = "/compensate"
		}
		c := handleRaw(t, st, "POST", path, body, "application/json", nil)
		switch status := checkAnswer(t, c, logs); status {
		case 200:
			var v struct{ ID, State string }
			if err := json.Unmarshal(c.Response.Body(), &v); err != nil {
				t.Fatalf("200 body %s: %v", c.Response.Body(), err)
			}
			if (compensate && v.State != "compensated") || (!compensate && v.State != "committed") {
				t.Errorf("%s answered state %q", path, v.State)
			}
		case 400, 404, 409:
		default:
			t.Errorf("%s: status %d (body %s) is not one of 200, 400, 404, 409", path, status, c.Response.Body())
		}
	})
}
