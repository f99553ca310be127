package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/idgen/idgen/shared/idcodec"
)

// answer is a parsed reply to /generate.
type answer struct {
	status   int    // 0: no answer
	err      error  // transport error or timeout
	fromLB   bool   // HAProxy made the answer (not JSON: its own error page)
	backend  string // backendHeader, or the instance asked directly
	replayed bool   // Idempotent-Replayed: true
	ids      []idcodec.ID
	code     string // error code of an idgen error answer
	bad      string // why the answer breaks the contract; "" if it does not
}

// parseGenerate reads a /generate reply. count is the requested count (0:
// a single {"id"} answer). shard is the shard every ID must carry. An
// answer breaks the contract (bad != "") when idgen answered anything but
// 200 or 503, a 503 without Retry-After, or a 200 whose IDs are malformed,
// of the wrong number, shard or order.
func parseGenerate(w wireAnswer, count int, shard uint8) answer {
	a := answer{status: w.status, backend: w.header.Get(backendHeader), replayed: w.header.Get("Idempotent-Replayed") == "true"}
	body := w.body
	a.fromLB = !strings.HasPrefix(w.header.Get("Content-Type"), "application/json")
	if a.status != http.StatusOK {
		errorAnswer(&a, w.header, body)
		return a
	}
	var v struct {
		ID  *string  `json:"id"`
		IDs []string `json:"ids"`
	}
	if err := json.Unmarshal(body, &v); err != nil || a.fromLB {
		a.bad = fmt.Sprintf("200 with a body that is not the JSON of IDs: %.200q", body)
		return a
	}
	var texts []string
	switch {
	case count == 0 && v.ID != nil && v.IDs == nil:
		texts = []string{*v.ID}
	case count > 0 && v.ID == nil && len(v.IDs) == count:
		texts = v.IDs
	default:
		a.bad = fmt.Sprintf("200 for count %d with body %.200q", count, body)
		return a
	}
	for i, s := range texts {
		id, err := idcodec.Parse(s)
		if err != nil {
			a.bad = fmt.Sprintf("200 with an ID that does not parse: %q: %v", s, err)
			return a
		}
		f := id.Decompose()
		switch {
		case f.Shard != shard:
			a.bad = fmt.Sprintf("200 with %s of shard %d, want %d", id, f.Shard, shard)
		case i > 0 && bytes.Compare(id[:], a.ids[i-1][:]) <= 0:
			a.bad = fmt.Sprintf("200 with IDs not in increasing order: %s after %s", id, a.ids[i-1])
		}
		if a.bad != "" {
			a.ids = nil // a bad answer acknowledges nothing
			return a
		}
		a.ids = append(a.ids, id)
	}
	return a
}

// errorAnswer classifies a non-200 answer.
func errorAnswer(a *answer, header http.Header, body []byte) {
	if a.fromLB {
		return // HAProxy's own page (no backend, or every retry failed): not idgen's answer
	}
	var e struct {
		Error *struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil || e.Error.Code == "" {
		a.bad = fmt.Sprintf("%d with a body that is not a JSON error: %.200q", a.status, body)
		return
	}
	a.code = e.Error.Code
	if a.status == http.StatusServiceUnavailable && header.Get("Retry-After") == "" {
		a.bad = fmt.Sprintf("503 %s without Retry-After", a.code)
	}
}

// contractStatus says whether a /generate status is one the contract allows
// during faults: 200, or 503 (cannot allocate or register right now).
func contractStatus(status int) bool {
	return status == http.StatusOK || status == http.StatusServiceUnavailable
}
