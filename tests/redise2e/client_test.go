package redise2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/tests/internal/idgenapi"
	"github.com/idgen/idgen/tests/internal/idledger"
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
// contract (idgenapi).
func generate(ctx context.Context, c *http.Client, in *instance, idx, count int, o genOpts) genResult {
	req := idgenapi.Request{IdempotencyKey: o.idemKey}
	if o.body != "" {
		req.Body = []byte(o.body)
	}
	a := idgenapi.Generate(ctx, c, in.url, count, req)
	return genResult{inst: idx, count: count, status: a.Status, err: a.Err, code: a.Code, retryAfter: a.RetryAfter,
		replayed: a.Replayed, ids: a.IDs, bad: a.Bad, sent: a.Sent, recv: a.Recv}
}

// generateAtOnce sends n requests for count IDs with the Idempotency-Key
// key at the same moment, to insts[0] and insts[1] in turn, and returns
// their answers.
func generateAtOnce(ctx context.Context, c *http.Client, insts []*instance, n, count int, key string) []genResult {
	results := make([]genResult, n)
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for i := range results {
		wg.Go(func() {
			<-gate
			results[i] = generate(ctx, c, insts[i%2], i%2, count, genOpts{idemKey: key})
		})
	}
	close(gate)
	wg.Wait()
	return results
}

// idSet renders ids as one string: equal sets, equal strings.
func idSet(ids []idcodec.ID) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.String()
	}
	return strings.Join(s, ",")
}

// errorCode returns the code of a JSON error body, or a description of a
// body that is not one.
func errorCode(b []byte) string {
	if code := idgenapi.ErrorCode(b); code != "" {
		return code
	}
	return fmt.Sprintf("<not a JSON error: %.100s>", b)
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
	status, header, b, err := idgenapi.Call(ctx, c, method, in.url+path, body)
	return status, b, header, err
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
	return idgenapi.Sample(b, name)
}

// ledger collects every /generate answer of a test: the IDs returned (to
// find duplicates) and the statuses.
type ledger struct {
	seen *idledger.Ledger[int] // meta: the instance that returned the ID

	mu       sync.Mutex
	dups     []string
	results  []genResult
	statuses map[string]int
}

func newLedger() *ledger {
	return &ledger{seen: idledger.New[int](1 << 17), statuses: map[string]int{}}
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
	for _, d := range l.seen.Add(r.inst, r.ids...) {
		if len(l.dups) < 10 {
			l.dups = append(l.dups, fmt.Sprintf("%s from instance %d, (shard, counter) already returned by instance %d", d.ID, r.inst, d.First.Meta))
		}
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
	dups -= l.seen.Len()
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
	recs := l.seen.Records()
	ids, from := make([]idcodec.ID, len(recs)), make([]int, len(recs))
	for i, r := range recs {
		ids[i], from[i] = r.ID, r.Meta
	}
	return ids, from, append([]genResult(nil), l.results...)
}

// sampleIdx returns up to k indexes of 0..n-1 spread evenly.
func sampleIdx(n, k int) []int {
	out := make([]int, 0, min(n, k))
	for i := range min(n, k) {
		out = append(out, int(float64(i)*float64(n)/float64(min(n, k))))
	}
	return out
}
