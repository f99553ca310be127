package redise2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/shared/idcodec"
)

// requestTimeout bounds one HTTP request of the tests.
const requestTimeout = 30 * time.Second

// genResult is one POST /generate.
type genResult struct {
	inst       int    // index of the instance asked
	count      int    // 0: a single ID ({}), else {"count": n}
	status     int    // 0: transport error (err)
	err        error  // transport or body error
	code       string // error code of a non-200 answer
	retryAfter string // Retry-After header
	replayed   bool   // Idempotent-Replayed: true
	ids        []idcodec.ID
	bad        string // contract violation of a 200 answer ("" when none)
	sent, recv time.Time
}

func (r *genResult) String() string {
	switch {
	case r.err != nil:
		return fmt.Sprintf("instance %d: transport error: %v", r.inst, r.err)
	case r.bad != "":
		return fmt.Sprintf("instance %d: %d %s", r.inst, r.status, r.bad)
	case r.status != http.StatusOK:
		return fmt.Sprintf("instance %d: %d %s (Retry-After %q)", r.inst, r.status, r.code, r.retryAfter)
	}
	return fmt.Sprintf("instance %d: 200 with %d IDs", r.inst, len(r.ids))
}

// genOpts are the optional parts of a /generate request.
type genOpts struct {
	idemKey string
	body    string // replaces the body built from count
}

// generate sends POST /generate and checks a 200 answer against the
// contract: canonical version-8 IDs, as many as asked, in increasing order.
func generate(ctx context.Context, c *http.Client, in *instance, idx, count int, o genOpts) genResult {
	r := genResult{inst: idx, count: count, sent: time.Now()}
	body := o.body
	if body == "" {
		body = "{}"
		if count > 0 {
			body = `{"count":` + strconv.Itoa(count) + `}`
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.url+"/generate", strings.NewReader(body))
	if err != nil {
		r.err = err
		return r
	}
	req.Header.Set("Content-Type", "application/json")
	if o.idemKey != "" {
		req.Header.Set("Idempotency-Key", o.idemKey)
	}
	resp, err := c.Do(req)
	if err != nil {
		r.err, r.recv = err, time.Now()
		return r
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	r.recv = time.Now()
	r.status, r.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
	r.replayed = resp.Header.Get("Idempotent-Replayed") == "true"
	if err != nil {
		r.err = err
		return r
	}
	if resp.StatusCode != http.StatusOK {
		r.code = errorCode(b)
		return r
	}
	var v struct {
		ID  *string  `json:"id"`
		IDs []string `json:"ids"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		r.bad = fmt.Sprintf("200 body is not JSON: %v: %.100s", err, b)
		return r
	}
	texts, want := v.IDs, count
	if count == 0 {
		want = 1
		if v.ID == nil {
			r.bad = fmt.Sprintf("single 200 without \"id\": %.100s", b)
			return r
		}
		texts = []string{*v.ID}
	}
	if len(texts) != want {
		r.bad = fmt.Sprintf("asked %d IDs, got %d", want, len(texts))
	}
	for i, s := range texts {
		id, err := idcodec.Parse(s)
		if err != nil || !id.Valid() || id.String() != s {
			r.bad = fmt.Sprintf("ID %q is not a canonical idgen ID: %v", s, err)
			continue
		}
		if len(r.ids) > 0 && bytes.Compare(r.ids[len(r.ids)-1][:], id[:]) >= 0 {
			r.bad = fmt.Sprintf("batch not in increasing order at %d", i)
		}
		r.ids = append(r.ids, id)
	}
	return r
}

// errorCode returns the code of a JSON error body, or a description of a
// body that is not one.
func errorCode(b []byte) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil || e.Error.Code == "" {
		return fmt.Sprintf("<not a JSON error: %.100s>", b)
	}
	return e.Error.Code
}

// is503 reports whether r is the retryable refusal the contract allows:
// 503 "unavailable" with a Retry-After header.
func is503(r *genResult) bool {
	return r.status == http.StatusServiceUnavailable && r.retryAfter != "" && r.code == "unavailable"
}

// idView is the body of GET /ids/{id}.
type idView struct {
	ID       string          `json:"id"`
	Worker   uint16          `json:"worker"`
	Shard    uint8           `json:"shard"`
	Counter  uint64          `json:"counter"`
	State    string          `json:"state"`
	IssuedAt *string         `json:"issued_at"`
	Subject  string          `json:"subject"`
	Metadata json.RawMessage `json:"metadata"`
	History  []struct {
		State  string `json:"state"`
		Reason string `json:"reason"`
	} `json:"history"`
}

// call sends method path with body (JSON) and returns the status, the
// response body and headers.
func call(ctx context.Context, c *http.Client, in *instance, method, path, body string) (int, []byte, http.Header, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, in.url+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header, err
}

// getID fetches GET /ids/{id}; the view is decoded for a 200.
func getID(ctx context.Context, c *http.Client, in *instance, id idcodec.ID) (int, idView, error) {
	status, b, _, err := call(ctx, c, in, http.MethodGet, "/ids/"+id.String(), "")
	var v idView
	if err == nil && status == http.StatusOK {
		err = json.Unmarshal(b, &v)
	}
	return status, v, err
}

// transition posts /commit or /compensate and returns the status and the
// state of the answer ("" for an error) or its error code.
func transition(ctx context.Context, c *http.Client, in *instance, path string, id idcodec.ID, reason string) (int, string, error) {
	body := `{"id":"` + id.String() + `"}`
	if reason != "" {
		body = `{"id":"` + id.String() + `","reason":"` + reason + `"}`
	}
	status, b, _, err := call(ctx, c, in, http.MethodPost, path, body)
	if err != nil {
		return 0, "", err
	}
	if status != http.StatusOK {
		return status, errorCode(b), nil
	}
	var v struct {
		State string `json:"state"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return status, "", err
	}
	return status, v.State, nil
}

// healthReport is the body of GET /health.
type healthReport struct {
	Status string `json:"status"`
	Checks map[string]struct {
		Status string `json:"status"`
		Error  string `json:"error"`
	} `json:"checks"`
}

// health fetches GET /health.
func health(ctx context.Context, c *http.Client, in *instance) (int, healthReport, error) {
	status, b, _, err := call(ctx, c, in, http.MethodGet, "/health", "")
	var h healthReport
	if err == nil {
		err = json.Unmarshal(b, &h)
	}
	return status, h, err
}

// metric returns the value of an unlabelled sample of /metrics.
func metric(ctx context.Context, c *http.Client, in *instance, name string) (float64, error) {
	status, b, _, err := call(ctx, c, in, http.MethodGet, "/metrics", "")
	if err != nil {
		return 0, err
	}
	if status != http.StatusOK {
		return 0, fmt.Errorf("/metrics answered %d", status)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("no sample %s in /metrics", name)
}

// counterKey is what uniqueness rests on: (shard, counter), 6+56 bits.
func counterKey(id idcodec.ID) uint64 {
	f := id.Decompose()
	return uint64(f.Shard)<<56 | f.Counter
}

// ledger collects every /generate answer of a test: the IDs returned (to
// find duplicates) and the statuses.
type ledger struct {
	mu       sync.Mutex
	seen     map[uint64]int // (shard, counter) → instance that returned it
	ids      []idcodec.ID   // every ID returned with 200, in arrival order
	from     []int          // instance of ids[i]
	dups     []string
	results  []genResult
	statuses map[string]int
}

func newLedger() *ledger {
	return &ledger{seen: make(map[uint64]int, 1<<17), statuses: map[string]int{}}
}

// add records r and reports whether it was a 200 within the contract.
func (l *ledger) add(r genResult) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	r.ids = append([]idcodec.ID(nil), r.ids...)
	l.results = append(l.results, r)
	key := strconv.Itoa(r.status)
	if r.code != "" {
		key += " " + r.code
	}
	if r.err != nil {
		key = "transport error"
	}
	l.statuses[key]++
	if r.status != http.StatusOK || r.bad != "" || r.err != nil {
		return false
	}
	if r.replayed {
		return true // the IDs of the first answer, counted there
	}
	for _, id := range r.ids {
		k := counterKey(id)
		if prev, ok := l.seen[k]; ok {
			if len(l.dups) < 10 {
				l.dups = append(l.dups, fmt.Sprintf("%s from instance %d, (shard, counter) already returned by instance %d", id, r.inst, prev))
			}
			continue
		}
		l.seen[k] = r.inst
		l.ids = append(l.ids, id)
		l.from = append(l.from, r.inst)
	}
	return true
}

// checkUnique fails t when any (shard, counter) was returned twice.
func (l *ledger) checkUnique(t testing.TB) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	dups := 0
	for _, r := range l.results {
		if r.status == http.StatusOK && !r.replayed {
			dups += len(r.ids)
		}
	}
	dups -= len(l.ids)
	if dups != 0 {
		t.Errorf("%d duplicate IDs, e.g.:\n%s", dups, strings.Join(l.dups, "\n"))
	}
}

// summary renders the status counts.
func (l *ledger) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	keys := make([]string, 0, len(l.statuses))
	for k := range l.statuses {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %d", k, l.statuses[k])
	}
	return b.String()
}

// snapshot returns copies of the IDs returned and the results.
func (l *ledger) snapshot() ([]idcodec.ID, []int, []genResult) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]idcodec.ID(nil), l.ids...), append([]int(nil), l.from...), append([]genResult(nil), l.results...)
}

// sampleIdx returns up to k indexes of 0..n-1 spread evenly.
func sampleIdx(n, k int) []int {
	out := make([]int, 0, min(n, k))
	for i := range min(n, k) {
		out = append(out, int(float64(i)*float64(n)/float64(min(n, k))))
	}
	return out
}
