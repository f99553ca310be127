package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/client"
	"github.com/idgen/idgen/shared/idcodec"
)

// sent is one request the fake idgen received.
type sent struct {
	key, body string
}

// fakeIdgen answers each /generate with next(); it keeps what it was sent.
type fakeIdgen struct {
	mu   sync.Mutex
	reqs []sent
	next func(w http.ResponseWriter)
}

func (f *fakeIdgen) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, sent{r.Header.Get("Idempotency-Key"), string(b)})
	next := f.next
	f.mu.Unlock()
	next(w)
}

func answerWith(status int, ctype, body string, header ...string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", ctype)
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// TestGenerateThroughClient: the driver's /generate goes through the Go
// client (its body, an Idempotency-Key on every request: the driver's, or
// a fresh one) and is checked on the answer as it came: a contract 200 is
// acknowledged, a replay of a key counts once, a 503 without Retry-After
// and a 201 are bad answers, HAProxy's own page is not idgen's.
func TestGenerateThroughClient(t *testing.T) {
	a1, a2, a3 := testID(1).String(), testID(2).String(), testID(3).String()
	js := "application/json"
	f := &fakeIdgen{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	l := newLedger()
	d := &driver{ledger: l, shard: shard, lb: tapped(&http.Client{Timeout: 5 * time.Second})}
	gen := func(next func(http.ResponseWriter), count int, timeout time.Duration, key string) answer {
		f.mu.Lock()
		f.next = next
		f.mu.Unlock()
		return d.generate(context.Background(), d.lb, srv.URL, "lb", 0, -1, count, timeout, key)
	}

	if a := gen(answerWith(200, js, `{"id":"`+a3+`"}`, backendHeader, instA), 0, 2500*time.Millisecond, ""); a.bad != "" || len(a.ids) != 1 || a.backend != instA {
		t.Fatalf("single: %+v", a)
	}
	batch := answerWith(200, js, `{"ids":["`+a1+`","`+a2+`"]}`)
	if a := gen(batch, 2, 0, "k1"); a.bad != "" || len(a.ids) != 2 {
		t.Fatalf("batch: %+v", a)
	}
	replay := answerWith(200, js, `{"ids":["`+a1+`","`+a2+`"]}`, "Idempotent-Replayed", "true")
	if a := gen(replay, 2, 0, "k1"); a.bad != "" || !a.replayed {
		t.Fatalf("replay: %+v", a)
	}
	gen(answerWith(503, js, `{"error":{"code":"unavailable","message":"m"}}`), 0, 0, "")
	gen(answerWith(201, js, `{"id":"`+testID(4).String()+`"}`), 0, 0, "")
	if a := gen(answerWith(504, "text/html", "<html>504</html>"), 0, 0, ""); !a.fromLB || a.bad != "" {
		t.Fatalf("HAProxy's 504: %+v", a)
	}

	f.mu.Lock()
	reqs := f.reqs
	f.mu.Unlock()
	if len(reqs) != 6 {
		t.Fatalf("%d requests, want 6", len(reqs))
	}
	wantBodies := []string{`{"timeout_ms":2500}`, `{"count":2}`, `{"count":2}`, `{}`, `{}`, `{}`}
	keys := map[string]int{}
	for i, r := range reqs {
		var got, want any
		if json.Unmarshal([]byte(r.body), &got) != nil || json.Unmarshal([]byte(wantBodies[i]), &want) != nil || !jsonEqual(got, want) {
			t.Errorf("request %d: body %s, want %s", i, r.body, wantBodies[i])
		}
		if r.key == "" {
			t.Errorf("request %d: no Idempotency-Key", i)
		}
		keys[r.key]++
	}
	if reqs[1].key != "k1" || keys["k1"] != 2 || len(keys) != 5 {
		t.Errorf("keys %v: want k1 twice and a fresh key for every other request", keys)
	}

	var bad []string
	for _, v := range l.Violations() {
		if v.Kind != vBadAnswer {
			t.Errorf("violation %s: %s", v.Kind, v.Detail)
		}
		bad = append(bad, v.Detail)
	}
	if len(bad) != 2 || !strings.Contains(bad[0], "without Retry-After") || !strings.Contains(bad[1], "201") {
		t.Errorf("bad answers %q, want the 503 without Retry-After and the 201", bad)
	}
	if l.Count() != 3 || l.Duplicates() != 0 {
		t.Errorf("ledger: %d IDs, %d duplicates; want the single's and the 2 of k1, once", l.Count(), l.Duplicates())
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// TestClientDisagrees: the driver notices a Go client whose result is
// not the answer on the wire.
func TestClientDisagrees(t *testing.T) {
	a1, a2 := testID(1), testID(2)
	ok := answer{status: 200, ids: []idcodec.ID{a1, a2}}
	for _, tc := range []struct {
		name string
		a    answer
		got  *client.Batch
		err  error
		want string
	}{
		{"agrees", ok, &client.Batch{IDs: []string{a1.String(), a2.String()}}, nil, ""},
		{"agrees on an error", answer{status: 503}, nil, client.ErrUnavailable, ""},
		{"fails a 200", ok, nil, client.ErrInternal, "failed on a contract 200"},
		{"other IDs", ok, &client.Batch{IDs: []string{a2.String(), a1.String()}}, nil, "where the 200 has"},
		{"fewer IDs", ok, &client.Batch{IDs: []string{a1.String()}}, nil, "returned 1 IDs"},
		{"not replayed", answer{status: 200, ids: ok.ids, replayed: true}, &client.Batch{IDs: []string{a1.String(), a2.String()}}, nil, "replayed"},
		{"IDs of a 503", answer{status: 503}, &client.Batch{}, nil, "IDs of a 503"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := clientDisagrees(tc.a, tc.got, tc.err)
			if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
				t.Errorf("clientDisagrees = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestHTTPSinkThroughClient: a compensation goes through the Go client
// with the envelope's event_id and source, and its answer is checked as it
// came: a 503 without Retry-After is a bad answer.
func TestHTTPSinkThroughClient(t *testing.T) {
	f := &fakeIdgen{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	l := newLedger()
	s := newHTTPSink("idgen-x", srv.URL, &http.Client{Timeout: 5 * time.Second}, l)
	ev := failureEvent{id: testID(7), eventID: "idgen-x-evt-1"}
	js := "application/json"
	for _, tc := range []struct {
		next   func(http.ResponseWriter)
		status int
		bad    bool
	}{
		{answerWith(200, js, `{"id":"`+testID(7).String()+`","state":"compensated","compensated_at":"2026-01-02T03:04:05Z"}`, "Idgen-Outcome", "applied"), 200, false},
		{answerWith(503, js, `{"error":{"code":"unavailable","message":"m"}}`, "Retry-After", "1"), 503, false},
		{answerWith(503, js, `{"error":{"code":"unavailable","message":"m"}}`), 503, true},
		{answerWith(400, js, `{"error":{"code":"invalid_request","message":"m"}}`), 400, false},
	} {
		f.mu.Lock()
		f.next = tc.next
		f.mu.Unlock()
		before := len(l.Violations())
		if status, _ := s.post(context.Background(), ev); status != tc.status {
			t.Errorf("status %d, want %d", status, tc.status)
		}
		if bad := len(l.Violations()) > before; bad != tc.bad {
			t.Errorf("answered %d: violation %v, want %v (%v)", tc.status, bad, tc.bad, l.Violations())
		}
	}
	var body struct {
		ID      string `json:"id"`
		Reason  string `json:"reason"`
		EventID string `json:"event_id"`
		Source  string `json:"source"`
	}
	f.mu.Lock()
	err := json.Unmarshal([]byte(f.reqs[0].body), &body)
	f.mu.Unlock()
	if err != nil || body.ID != testID(7).String() || body.EventID != "idgen-x-evt-1" || body.Source != "chaos" || body.Reason == "" {
		t.Errorf("compensation sent %+v (%v)", body, err)
	}
}
