package apitest_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/idgen/idgen/api/apitest"
)

const id = "01938f2a-7b40-8000-8000-0000000003e9"

func header(kv ...string) http.Header {
	h := http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"req-1"}}
	for i := 0; i < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// checkCase is an answer and the verdict of the document on it.
type checkCase struct {
	name string
	x    apitest.Exchange
	// want is "" for an answer the document describes, else a part of
	// the violation's message.
	want string
}

func errBody(code string) []byte { return []byte(`{"error":{"code":"` + code + `","message":"m"}}`) }

// checkCases are answers of each kind, documented and not.
func checkCases() []checkCase {
	committed := []byte(`{"id":"` + id + `","state":"committed","committed_at":"2026-01-02T03:04:05.678Z"}`)
	return []checkCase{
		{"one ID", apitest.Exchange{Method: "POST", Target: "/generate", Status: 200, Header: header(), Body: []byte(`{"id":"` + id + `"}`)}, ""},
		{"batch", apitest.Exchange{Method: "POST", Target: "/generate", Status: 200, Header: header("Idempotent-Replayed", "true"), Body: []byte(`{"ids":["` + id + `"]}`)}, ""},
		{"commit", apitest.Exchange{Method: "POST", Target: "/commit", Status: 200, Header: header("Idgen-Outcome", "replayed"), Body: committed}, ""},
		{"expired", apitest.Exchange{Method: "POST", Target: "/commit", Status: 409, Header: header(), Body: errBody("expired")}, ""},
		{"health down", apitest.Exchange{Method: "GET", Target: "/health/ready", Status: 503, Header: header("Retry-After", "1"), Body: []byte(`{"status":"down"}`)}, ""},
		{"connection bound", apitest.Exchange{Method: "POST", Target: "/generate", Status: 503, Header: http.Header{"Content-Type": {"application/json"}, "Retry-After": {"1"}}, Body: errBody("unavailable")}, ""},
		{"unknown path", apitest.Exchange{Method: "GET", Target: "/nope?x=1", Status: 404, Header: header(), Body: errBody("not_found")}, ""},
		{"other method", apitest.Exchange{Method: "PUT", Target: "/generate", Status: 405, Header: header("Allow", "POST"), Body: errBody("method_not_allowed")}, ""},
		{"HEAD", apitest.Exchange{Method: "HEAD", Target: "/health", Status: 405, Header: header("Allow", "GET")}, ""},
		{"metrics", apitest.Exchange{Method: "GET", Target: "/metrics", Status: 200, Header: header("Content-Type", "text/plain; version=0.0.4; charset=utf-8"), Body: []byte("up 1\n")}, ""},

		{"undocumented status", apitest.Exchange{Method: "POST", Target: "/generate", Status: 409, Header: header(), Body: errBody("conflict")}, "POST /generate answered 409"},
		{"code of another status", apitest.Exchange{Method: "POST", Target: "/commit", Status: 409, Header: header(), Body: errBody("not_found")}, "POST /commit answered 409"},
		{"unknown code", apitest.Exchange{Method: "GET", Target: "/ids/" + id, Status: 404, Header: header(), Body: errBody("gone")}, "GET /ids/{id} answered 404"},
		{"extra field", apitest.Exchange{Method: "POST", Target: "/generate", Status: 200, Header: header(), Body: []byte(`{"id":"` + id + `","x":1}`)}, "doesn't match schema"},
		{"upper-case ID", apitest.Exchange{Method: "POST", Target: "/generate", Status: 200, Header: header(), Body: []byte(`{"id":"` + strings.ToUpper(id) + `"}`)}, "doesn't match schema"},
		{"batch over 1000", apitest.Exchange{Method: "POST", Target: "/generate", Status: 200, Header: header(), Body: []byte(`{"ids":[` + strings.Repeat(`"`+id+`",`, 1000) + `"` + id + `"]}`)}, "doesn't match schema"},
		{"no outcome", apitest.Exchange{Method: "POST", Target: "/commit", Status: 200, Header: header(), Body: committed}, `"Idgen-Outcome" missing`},
		{"bad outcome", apitest.Exchange{Method: "POST", Target: "/commit", Status: 200, Header: header("Idgen-Outcome", "null_compensation"), Body: committed}, `"Idgen-Outcome" doesn't match`},
		{"no request ID", apitest.Exchange{Method: "GET", Target: "/health/live", Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"status":"ok"}`)}, `"X-Request-Id" missing`},
		{"no challenge", apitest.Exchange{Method: "GET", Target: "/metrics", Status: 401, Header: header(), Body: errBody("unauthorized")}, `"WWW-Authenticate" missing`},
		{"401 on an open route", apitest.Exchange{Method: "GET", Target: "/health", Status: 401, Header: header("WWW-Authenticate", `Bearer realm="idgen"`), Body: errBody("unauthorized")}, "GET /health answered 401"},
		{"no Retry-After", apitest.Exchange{Method: "POST", Target: "/generate", Status: 429, Header: header(), Body: errBody("rate_limited")}, `"Retry-After" missing`},
		{"no Allow", apitest.Exchange{Method: "DELETE", Target: "/generate", Status: 405, Header: header(), Body: errBody("method_not_allowed")}, `"Allow" missing`},
		{"unknown path served", apitest.Exchange{Method: "GET", Target: "/nope", Status: 200, Header: header(), Body: []byte(`{}`)}, "GET /nope answered 200"},
		{"not JSON", apitest.Exchange{Method: "GET", Target: "/health/live", Status: 200, Header: header("Content-Type", "text/plain"), Body: []byte("ok")}, "Content-Type"},
		{"body not JSON", apitest.Exchange{Method: "POST", Target: "/generate", Status: 200, Header: header(), Body: []byte(`<html>`)}, "decode"},
		{"503 without Retry-After", apitest.Exchange{Method: "POST", Target: "/generate", Status: 503, Header: header(), Body: errBody("unavailable")}, `"Retry-After" missing`},
		{"Retry-After not a number", apitest.Exchange{Method: "POST", Target: "/generate", Status: 503, Header: header("Retry-After", "soon"), Body: errBody("unavailable")}, `"Retry-After"`},
		{"Retry-After 0", apitest.Exchange{Method: "POST", Target: "/generate", Status: 503, Header: header("Retry-After", "0"), Body: errBody("unavailable")}, `"Retry-After" doesn't match`},
		{"id and ids", apitest.Exchange{Method: "POST", Target: "/generate", Status: 200, Header: header(), Body: []byte(`{"id":"` + id + `","ids":["` + id + `"]}`)}, "doesn't match schema"},
		{"bad time", apitest.Exchange{Method: "POST", Target: "/commit", Status: 200, Header: header("Idgen-Outcome", "applied"), Body: []byte(`{"id":"` + id + `","state":"committed","committed_at":"yesterday"}`)}, "doesn't match schema"},
		{"HEAD of an unknown path", apitest.Exchange{Method: "HEAD", Target: "/nope", Status: 404, Header: header()}, ""},
	}
}

// TestCheck: answers the document describes pass; each kind of answer it
// does not describe is a *Violation naming the route, the status and why.
func TestCheck(t *testing.T) {
	for _, tt := range checkCases() {
		t.Run(tt.name, func(t *testing.T) {
			err := apitest.Check(tt.x)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("a documented answer is refused: %v", err)
			case tt.want != "" && err == nil:
				t.Errorf("an undocumented answer passes; want a violation with %q", tt.want)
			case tt.want != "":
				var v *apitest.Violation
				if !errors.As(err, &v) || v.Status != tt.x.Status || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("violation %v, want a *Violation of status %d with %q", err, tt.x.Status, tt.want)
				}
			}
		})
	}
}

// TestNewRefusesABrokenDocument: a document that is not valid OpenAPI, or
// lacks the answers of unknown paths, is refused.
func TestNewRefusesABrokenDocument(t *testing.T) {
	for _, doc := range []string{
		`{`,
		`{"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {"/x": {"get": {"responses": {"200": {}}}}}}`,
		`{"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {}}`,
	} {
		if _, err := apitest.New([]byte(doc)); err == nil {
			t.Errorf("New accepted %.60s", doc)
		}
	}
}

// recorder is a TB that keeps what Transport reports.
type recorder struct {
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestTransport: a client through Transport gets every answer unchanged,
// and an undocumented one is reported to the test.
func TestTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-Id", "req-1")
		switch r.URL.Path {
		case "/health/live":
			io.WriteString(w, `{"status":"ok"}`)
		default:
			w.WriteHeader(http.StatusTeapot)
			io.WriteString(w, `{"status":"ok"}`)
		}
	}))
	defer srv.Close()
	rec := &recorder{}
	client := &http.Client{Transport: apitest.Transport(srv.Client().Transport, rec)}
	defer client.CloseIdleConnections()
	for path, status := range map[string]int{"/health/live": 200, "/health": 418} {
		res, err := client.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || res.StatusCode != status || string(body) != `{"status":"ok"}` {
			t.Errorf("GET %s through Transport: %d %q %v", path, res.StatusCode, body, err)
		}
	}
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], "GET /health answered 418") {
		t.Errorf("Transport reported %q, want one violation of GET /health", rec.errs)
	}
}

// TestSampled: Sampled checks the first perKind 2xx answers of each kind
// and every other answer: a bad 2xx past the sample goes unchecked, a bad
// non-2xx never does.
func TestSampled(t *testing.T) {
	bad := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-Id", "req-1")
		if r.URL.Path == "/nowhere" {
			w.WriteHeader(http.StatusTeapot)
		}
		if bad {
			io.WriteString(w, `{"status":1}`)
			return
		}
		io.WriteString(w, `{"status":"ok"}`)
	}))
	defer srv.Close()
	rec := &recorder{}
	client := &http.Client{Transport: apitest.Sampled(srv.Client().Transport, rec, 2)}
	defer client.CloseIdleConnections()
	get := func(path string) {
		res, err := client.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	get("/health/live")
	get("/health/live") // two good 2xx: the sample is full
	bad = true
	get("/health/live") // bad, past the sample: not checked
	get("/nowhere")     // 418 with a bad body: always checked
	get("/nowhere")
	if len(rec.errs) != 2 {
		t.Fatalf("Sampled reported %d violations, want the two 418s: %q", len(rec.errs), rec.errs)
	}
}
