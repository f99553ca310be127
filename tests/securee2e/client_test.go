package securee2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"testing"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/tests/internal/idgenapi"
	"github.com/idgen/idgen/tests/internal/idledger"
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
func (a answer) code() string { return idgenapi.ErrorCode(a.body) }

// call sends method url with a JSON body (unless empty) and the bearer
// token (unless empty).
func call(ctx context.Context, c *http.Client, method, url, token, body string) answer {
	var header []string
	if token != "" {
		header = []string{"Authorization", "Bearer " + token}
	}
	status, h, b, err := idgenapi.Call(ctx, c, method, url, body, header...)
	return answer{status: status, body: b, header: h, err: err}
}

// generate asks in for count IDs (0: a single ID, {}) and checks a 200
// against the contract: canonical version-8 IDs, as many as asked, in
// increasing order. It fails t on anything else.
func generate(ctx context.Context, t testing.TB, c *http.Client, in *instance, token string, count int) []idcodec.ID {
	t.Helper()
	body := string(idgenapi.CountBody(count))
	a := call(ctx, c, http.MethodPost, in.url+"/generate", token, body)
	if a.err != nil || a.status != http.StatusOK {
		t.Fatalf("%s: POST /generate %s: %s", in.name, body, a)
	}
	return parseIDs(t, in, a, count)
}

// parseIDs checks the 200 answer a of a /generate for count IDs.
func parseIDs(t testing.TB, in *instance, a answer, count int) []idcodec.ID {
	t.Helper()
	ids, bad := idgenapi.ParseGenerated(a.body, count)
	if bad != "" {
		t.Fatalf("%s: /generate: %s", in.name, bad)
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
	f, err := idgenapi.Sample(a.body, name)
	if err != nil {
		t.Fatalf("%s: %v", in.name, err)
	}
	return f
}

// uuidRE finds anything shaped like an ID in a body.
var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// ledger collects the IDs the tests received and fails on a duplicate.
type ledger struct {
	seen *idledger.Ledger[*instance]
	ids  []idcodec.ID // distinct, in arrival order
	from map[idcodec.ID]*instance
}

func newLedger() *ledger {
	return &ledger{seen: idledger.New[*instance](1 << 10), from: map[idcodec.ID]*instance{}}
}

func (l *ledger) add(t testing.TB, in *instance, ids []idcodec.ID) {
	t.Helper()
	for _, id := range ids {
		if dups := l.seen.Add(in, id); len(dups) > 0 {
			t.Errorf("duplicate: %s from %s, (shard, counter) already returned by %s", id, in.name, dups[0].First.Meta.name)
			continue
		}
		l.ids = append(l.ids, id)
		l.from[id] = in
	}
}
