package main

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/harness/zkharness"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/tests/internal/idledger"
)

// TestNaiveStrawman runs the strawman against a real ZooKeeper and Redis
// with concurrent requests (so compare-and-sets conflict) and checks that
// every ID is unique, registered, and takes exactly one counter value.
func TestNaiveStrawman(t *testing.T) {
	zkEns := zkharness.StartT(t, zkharness.Options{})
	rds := redisharness.StartStandaloneT(t, redisharness.Options{})
	ctx := t.Context()
	n, closeFn, err := dialNaive(ctx, zkEns.ConnectString(), rds.Addr(), naiveConfig{Path: "/bench-test/naive/counter"})
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: n.handle}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		_ = srv.Shutdown()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	client := &fasthttp.HostClient{Addr: "naive", Dial: func(string) (net.Conn, error) { return ln.Dial() }}
	defer client.CloseIdleConnections()

	const workers, each = 8, 10
	var (
		mu  sync.Mutex
		ids []string
		wg  sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			for range each {
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				req.SetRequestURI("http://naive/generate")
				req.Header.SetMethod(fasthttp.MethodPost)
				err := client.DoTimeout(req, resp, 10*time.Second)
				status, body := resp.StatusCode(), string(resp.Body())
				fasthttp.ReleaseRequest(req)
				fasthttp.ReleaseResponse(resp)
				if err != nil || status != fasthttp.StatusOK {
					t.Errorf("POST /generate: %v, %d %s", err, status, body)
					return
				}
				var out struct{ ID string }
				if err := json.Unmarshal([]byte(body), &out); err != nil {
					t.Errorf("body %q: %v", body, err)
					return
				}
				mu.Lock()
				ids = append(ids, out.ID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(ids) != workers*each {
		t.Fatalf("%d IDs, want %d", len(ids), workers*each)
	}
	rdb := redis.NewClient(&redis.Options{Addr: rds.Addr()})
	defer rdb.Close()
	seen := idledger.New[struct{}](len(ids))
	counters := map[uint64]bool{}
	for _, s := range ids {
		id, err := idcodec.Parse(s)
		if err != nil {
			t.Errorf("ID %q: %v", s, err)
			continue
		}
		if dups := seen.Add(struct{}{}, id); len(dups) > 0 {
			t.Errorf("ID %s handed out twice (its shard and counter are those of %s)", s, dups[0].First.ID)
		}
		counters[id.Decompose().Counter] = true
		if v, err := rdb.Get(ctx, naiveKey(id)).Result(); err != nil || v != "pending" {
			t.Errorf("registry holds %s as %q, %v", s, v, err)
		}
	}
	// Each request took exactly one counter value: 0..N-1, no gap, no repeat.
	for c := range uint64(workers * each) {
		if !counters[c] {
			t.Errorf("counter %d never handed out", c)
		}
	}
	data, _, err := n.zk.Get("/bench-test/naive/counter")
	if err != nil || string(data) != fmt.Sprint(workers*each) {
		t.Errorf("counter znode = %q, %v; want %d", data, err, workers*each)
	}
	if got := n.issued.Load(); got != workers*each {
		t.Errorf("issued counter %d", got)
	}
	t.Logf("%d IDs, %d compare-and-set conflicts", len(ids), n.conflicts.Load())

	// A second strawman on the same znode continues the counter.
	n2, close2, err := dialNaive(ctx, zkEns.ConnectString(), rds.Addr(), naiveConfig{Path: "/bench-test/naive/counter"})
	if err != nil {
		t.Fatal(err)
	}
	defer close2()
	id, err := n2.issue(ctx)
	if err != nil || id.Decompose().Counter != workers*each {
		t.Errorf("second strawman: %v, counter %d; want %d", err, id.Decompose().Counter, workers*each)
	}

	// Metrics and errors.
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/metrics", 200, fmt.Sprintf("idgen_ids_issued_total %d\n", workers*each)},
		{"GET", "/generate", 405, "method_not_allowed"},
		{"POST", "/nope", 404, "not_found"},
	} {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI("http://naive" + tc.path)
		req.Header.SetMethod(tc.method)
		if err := client.Do(req, resp); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode() != tc.status || !strings.Contains(string(resp.Body()), tc.body) {
			t.Errorf("%s %s = %d %q, want %d with %q", tc.method, tc.path, resp.StatusCode(), resp.Body(), tc.status, tc.body)
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
}
