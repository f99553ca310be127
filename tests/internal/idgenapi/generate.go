// Package idgenapi is idgen's HTTP API as the end-to-end suites call it:
// POST /generate with the contract check of its answer, error codes, and
// /metrics samples.
//
// A 200 answer of /generate keeps the contract when it carries canonical
// version-8 IDs, as many as asked, in increasing order; Answer.Bad says
// what breaks it.
package idgenapi

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/idgen/idgen/shared/idcodec"
)

// Answer is one POST /generate.
type Answer struct {
	Status     int    // 0: transport error (Err)
	Err        error  // transport or body error
	Code       string // error code of a non-200 answer (a description when the body is not a JSON error)
	RetryAfter string // Retry-After header
	Replayed   bool   // Idempotent-Replayed: true
	IDs        []idcodec.ID
	Bad        string // contract violation of a 200 answer ("" when none)
	Sent, Recv time.Time
}

// Request is the optional part of a /generate.
type Request struct {
	// Body replaces the body built from the count ({} or {"count":n}).
	Body []byte
	// IdempotencyKey is sent as the Idempotency-Key header when set.
	IdempotencyKey string
}

// Generate sends POST url/generate for count IDs (0: a single ID, {}) and
// checks a 200 answer against the contract.
func Generate(ctx context.Context, c *http.Client, url string, count int, o Request) Answer {
	a := Answer{Sent: time.Now()}
	body := o.Body
	if body == nil {
		body = CountBody(count)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/generate", strings.NewReader(string(body)))
	if err != nil {
		a.Err = err
		return a
	}
	req.Header.Set("Content-Type", "application/json")
	if o.IdempotencyKey != "" {
		req.Header.Set("Idempotency-Key", o.IdempotencyKey)
	}
	resp, err := c.Do(req)
	if err != nil {
		a.Err, a.Recv = err, time.Now()
		return a
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	a.Recv = time.Now()
	a.Status, a.RetryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
	a.Replayed = resp.Header.Get("Idempotent-Replayed") == "true"
	if err != nil {
		a.Err = err
		return a
	}
	if resp.StatusCode != http.StatusOK {
		if a.Code = ErrorCode(b); a.Code == "" {
			a.Code = fmt.Sprintf("<not a JSON error: %.100s>", b)
		}
		return a
	}
	a.IDs, a.Bad = ParseGenerated(b, count)
	return a
}

// CountBody is the body of a /generate for count IDs: {} for 0, else
// {"count":n}.
func CountBody(count int) []byte {
	if count == 0 {
		return []byte(`{}`)
	}
	return []byte(`{"count":` + strconv.Itoa(count) + `}`)
}

// MixedCounts is the counts of a mixed /generate load, for Generate:
// batches requests for 1000 IDs and singles for one ID (count 0), shuffled
// so that the two kinds interleave.
func MixedCounts(batches, singles int) []int {
	counts := make([]int, 0, batches+singles)
	for range batches {
		counts = append(counts, 1000)
	}
	for range singles {
		counts = append(counts, 0)
	}
	rand.Shuffle(len(counts), func(i, j int) { counts[i], counts[j] = counts[j], counts[i] })
	return counts
}

// Sample returns the value of the unlabelled sample name in a /metrics
// body (Prometheus text format).
func Sample(metrics []byte, name string) (float64, error) {
	for _, line := range strings.Split(string(metrics), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("no sample %s in /metrics", name)
}

// Call sends method url with body (as JSON; none when empty) and header
// (name, value, name, value, ...), and returns the answer's status,
// headers and body.
func Call(ctx context.Context, c *http.Client, method, url, body string, header ...string) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}
