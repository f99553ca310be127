package securee2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/idgen/idgen/shared/idcodec"
)

// answer is one HTTP exchange.
type answer struct {
	status int
	body   []byte
	header http.Header
	err    error // transport error (status 0)
}

func (a answer) String() string {
	if a.err != nil {
		return "transport error: " + a.err.Error()
	}
	return fmt.Sprintf("%d %.200s", a.status, a.body)
}

// code is the error code of a JSON error body.
func (a answer) code() string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(a.body, &e) != nil {
		return ""
	}
	return e.Error.Code
}

// call sends method url with a JSON body (unless empty) and the bearer
// token (unless empty).
func call(ctx context.Context, c *http.Client, method, url, token, body string) answer {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return answer{err: err}
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: b, header: resp.Header, err: err}
}

// generate asks in for count IDs (0: a single ID, {}) and checks a 200
// against the contract: canonical version-8 IDs, as many as asked, in
// increasing order. It fails t on anything else.
func generate(ctx context.Context, t testing.TB, c *http.Client, in *instance, token string, count int) []idcodec.ID {
	t.Helper()
	body := "{}"
	if count > 0 {
		body = `{"count":` + strconv.Itoa(count) + `}`
	}
	a := call(ctx, c, http.MethodPost, in.url+"/generate", token, body)
	if a.err != nil || a.status != http.StatusOK {
		t.Fatalf("%s: POST /generate %s: %s", in.name, body, a)
	}
	return parseIDs(t, in, a, count)
}

// parseIDs checks the 200 answer a of a /generate for count IDs.
func parseIDs(t testing.TB, in *instance, a answer, count int) []idcodec.ID {
	t.Helper()
	var v struct {
		ID  *string  `json:"id"`
		IDs []string `json:"ids"`
	}
	if err := json.Unmarshal(a.body, &v); err != nil {
		t.Fatalf("%s: /generate body %q: %v", in.name, a.body, err)
	}
	texts, want := v.IDs, count
	if count == 0 {
		if v.ID == nil {
			t.Fatalf("%s: single /generate without \"id\": %s", in.name, a.body)
		}
		texts, want = []string{*v.ID}, 1
	}
	if len(texts) != want {
		t.Fatalf("%s: asked %d IDs, got %d", in.name, want, len(texts))
	}
	ids := make([]idcodec.ID, 0, len(texts))
	for _, s := range texts {
		id, err := idcodec.Parse(s)
		if err != nil || !id.Valid() || id.String() != s {
			t.Fatalf("%s: %q is not a canonical idgen ID: %v", in.name, s, err)
		}
		if len(ids) > 0 && bytes.Compare(ids[len(ids)-1][:], id[:]) >= 0 {
			t.Fatalf("%s: batch not in increasing order at %s", in.name, s)
		}
		ids = append(ids, id)
	}
	return ids
}

// idView is the body of GET /ids/{id}.
type idView struct {
	ID      string `json:"id"`
	State   string `json:"state"`
	Subject string `json:"subject"`
	History []struct {
		State  string `json:"state"`
		Reason string `json:"reason"`
		Actor  string `json:"actor"`
	} `json:"history"`
}

// getID reads GET /ids/{id}; the view is decoded for a 200.
func getID(ctx context.Context, c *http.Client, in *instance, token string, id idcodec.ID) (answer, idView) {
	a := call(ctx, c, http.MethodGet, in.url+"/ids/"+id.String(), token, "")
	var v idView
	if a.err == nil && a.status == http.StatusOK {
		if err := json.Unmarshal(a.body, &v); err != nil {
			a.err = err
		}
	}
	return a, v
}

// transition posts /commit or /compensate for id.
func transition(ctx context.Context, c *http.Client, in *instance, token, path string, id idcodec.ID, reason string) answer {
	body := `{"id":"` + id.String() + `"}`
	if reason != "" {
		body = `{"id":"` + id.String() + `","reason":"` + reason + `"}`
	}
	return call(ctx, c, http.MethodPost, in.url+path, token, body)
}

// state is the state field of a transition's 200 body.
func (a answer) state() string {
	var v struct {
		State string `json:"state"`
	}
	_ = json.Unmarshal(a.body, &v)
	return v.State
}

// metric reads an unlabelled sample of /metrics (needs ops:read).
func metric(ctx context.Context, t testing.TB, c *http.Client, in *instance, token, name string) float64 {
	t.Helper()
	a := call(ctx, c, http.MethodGet, in.url+"/metrics", token, "")
	if a.err != nil || a.status != http.StatusOK {
		t.Fatalf("%s: /metrics: %s", in.name, a)
	}
	for _, line := range strings.Split(string(a.body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("%s: no sample %s in /metrics", in.name, name)
	return 0
}

// uuidRE finds anything shaped like an ID in a body.
var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// counterKey is what uniqueness rests on: (shard, counter).
func counterKey(id idcodec.ID) uint64 {
	f := id.Decompose()
	return uint64(f.Shard)<<56 | f.Counter
}

// ledger collects the IDs the tests received and fails on a duplicate.
type ledger struct {
	seen map[uint64]string // (shard, counter) → instance
	ids  []idcodec.ID
	from map[idcodec.ID]*instance
}

func newLedger() *ledger {
	return &ledger{seen: map[uint64]string{}, from: map[idcodec.ID]*instance{}}
}

func (l *ledger) add(t testing.TB, in *instance, ids []idcodec.ID) {
	t.Helper()
	for _, id := range ids {
		if prev, ok := l.seen[counterKey(id)]; ok {
			t.Errorf("duplicate: %s from %s, (shard, counter) already returned by %s", id, in.name, prev)
			continue
		}
		l.seen[counterKey(id)] = in.name
		l.ids = append(l.ids, id)
		l.from[id] = in
	}
}
