// Package lambdae2e runs the idgen bootstrap as Lambda runs it: a real
// Runtime API (harness/lambdart), a real ZooKeeper and a real Redis.
package lambdae2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/idgen/idgen/harness/lambdart"
	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/harness/zkharness"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/tests/internal/idledger"
)

var bootstrap string // built once by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lambdae2e-")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	bootstrap, err = lambdart.Build(ctx, "github.com/idgen/idgen/cmd/idgen", dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// apiEvent is an HTTP API v2 event as API Gateway sends it.
func apiEvent(method, path, body string) []byte {
	ev := events.APIGatewayV2HTTPRequest{
		Version: "2.0", RouteKey: "$default", RawPath: path,
		Headers: map[string]string{"content-type": "application/json"},
		Body:    body,
		RequestContext: events.APIGatewayV2HTTPRequestContext{
			RequestID: fmt.Sprintf("req-%d", time.Now().UnixNano()),
			HTTP:      events.APIGatewayV2HTTPRequestContextHTTPDescription{Method: method, Path: path, SourceIP: "203.0.113.7"},
		},
	}
	b, _ := json.Marshal(ev)
	return b
}

func invoke(t *testing.T, rt *lambdart.Server, method, path, body string) events.APIGatewayV2HTTPResponse {
	t.Helper()
	res, err := rt.Invoke(context.Background(), apiEvent(method, path, body), 10*time.Second)
	if err != nil {
		t.Fatalf("invoke %s %s: %v", method, path, err)
	}
	if res.Failed() {
		t.Fatalf("invoke %s %s: function error %s: %s", method, path, res.ErrorType, res.ErrorMessage)
	}
	var out events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(res.Payload, &out); err != nil {
		t.Fatalf("response %s: %v", res.Payload, err)
	}
	return out
}

// TestGenerateFunction: two concurrent sandboxes of the generate function
// (two Runtime API servers, two bootstrap processes) share ZooKeeper and
// Redis: distinct worker slots, no duplicate, each one's IDs readable by
// the other, bad input answered 4xx (never a function error).
func TestGenerateFunction(t *testing.T) {
	zk := zkharness.StartT(t, zkharness.Options{Servers: 1})
	rds := redisharness.StartStandaloneT(t, redisharness.Options{AppendFsyncAlways: true}) // idgen refuses a Redis without persistence outside --dev
	keyFile := filepath.Join(t.TempDir(), "metadata.key")
	if err := os.WriteFile(keyFile, []byte("k1 "+strings.Repeat("cd", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var sandboxes []*lambdart.Server
	for i := 0; i < 2; i++ {
		rt := lambdart.StartT(t, lambdart.Options{FunctionName: "idgen-generate"})
		rt.RunBootstrapT(t, bootstrap,
			"_HANDLER=generate", "IDGEN_DEV=true", "IDGEN_ZOOKEEPER="+zk.ConnectString(), "IDGEN_REDIS_ADDR="+rds.Addr(),
			"IDGEN_METADATA_KEY_FILE="+keyFile, "IDGEN_DATA_DIR="+t.TempDir(), "IDGEN_AUDIT_LOG="+filepath.Join(t.TempDir(), "audit.log"))
		sandboxes = append(sandboxes, rt)
	}
	var (
		ids     = idledger.New[int](2 * 20 * 50) // meta: the sandbox
		mu      sync.Mutex
		workers = map[uint16]bool{}
		wg      sync.WaitGroup
	)
	for i, rt := range sandboxes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 20; n++ {
				r := invoke(t, rt, "POST", "/generate", `{"count":50,"metadata":{"order":"A-`+fmt.Sprint(i)+`"}}`)
				if r.StatusCode != 200 {
					t.Errorf("generate: %d %s", r.StatusCode, r.Body)
					return
				}
				var body struct{ IDs []string }
				_ = json.Unmarshal([]byte(r.Body), &body)
				for _, s := range body.IDs {
					id, err := idcodec.Parse(s)
					if err != nil {
						t.Errorf("bad id %q", s)
						continue
					}
					mu.Lock()
					workers[id.Decompose().Worker] = true
					mu.Unlock()
					for _, d := range ids.Add(i, id) {
						t.Errorf("duplicate: %s from sandbox %d, (shard, counter) already returned by sandbox %d", d.ID, i, d.First.Meta)
					}
				}
			}
		}()
	}
	wg.Wait()
	if ids.Len() != 2*20*50 {
		t.Fatalf("%d distinct IDs, want %d (duplicates or failures)", ids.Len(), 2*20*50)
	}
	if len(workers) != 2 {
		t.Fatalf("workers %v, want 2 distinct slots", workers)
	}
	// Each sandbox reads an ID the other issued, metadata included.
	if r := invoke(t, sandboxes[1], "GET", "/ids/"+ids.IDs()[0].String(), ""); r.StatusCode != 200 || !strings.Contains(r.Body, `"state":"pending"`) || !strings.Contains(r.Body, `"order":"A-`) {
		t.Fatalf("GET /ids on the other sandbox: %d %s", r.StatusCode, r.Body)
	}
	// Bad input is an HTTP answer, not a function error.
	if r := invoke(t, sandboxes[0], "POST", "/generate", `{"count":0}`); r.StatusCode != 400 || !strings.Contains(r.Body, `"invalid_request"`) {
		t.Fatalf("bad input: %d %s", r.StatusCode, r.Body)
	}
}

// TestRefusesWithoutSharedCoordination: a Lambda sandbox without ZooKeeper
// and Redis would issue from a private counter: it must not start.
func TestRefusesWithoutSharedCoordination(t *testing.T) {
	rt := lambdart.StartT(t, lambdart.Options{FunctionName: "idgen-generate"})
	p := rt.RunBootstrapT(t, bootstrap, "_HANDLER=generate", "IDGEN_DEV=true", "IDGEN_DATA_DIR="+t.TempDir())
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && !strings.Contains(p.Stderr(), "IDGEN_ZOOKEEPER") {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(p.Stderr(), "IDGEN_ZOOKEEPER and IDGEN_REDIS_ADDR are required") {
		t.Fatalf("stderr: %s", p.Stderr())
	}
}
