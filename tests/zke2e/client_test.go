package zke2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/api/apitest"
	"github.com/idgen/idgen/tests/internal/apicheck"

	"github.com/go-zookeeper/zk"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/tests/internal/idgenapi"
	"github.com/idgen/idgen/tests/internal/idledger"
)

// requestTimeout bounds one HTTP request of the tests. It is longer than the
// longest freeze a test injects, so a request parked in a SIGSTOPped
// process's socket completes after SIGCONT instead of failing.
const requestTimeout = 30 * time.Second

// newHTTPClient is the suites' client; every answer it receives is checked
// against api/openapi.json (apitest.Transport), and one the document does
// not describe fails tb.
func newHTTPClient(tb apitest.TB, keepAlive bool) *http.Client {
	return &http.Client{
		Timeout: requestTimeout,
		Transport: apitest.Transport(&http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     4 * time.Second, // below the server's first-request read timeout (10s): see TestIdleConnectionNot400
			DisableCompression:  true,
			DisableKeepAlives:   !keepAlive,
		}, tb),
	}
}

// genResult is one POST /generate.
type genResult struct {
	target     int    // index of the process asked (the test's numbering)
	count      int    // 0: single ({}), else {"count": n}
	status     int    // 0: transport error (err)
	err        error  // transport or body error
	code       string // error code of a non-200 answer
	retryAfter string // Retry-After header
	ids        []idcodec.ID
	bad        string // contract violation of a 200 answer ("" when none)
	sent, recv time.Time
}

// generate sends POST /generate to url and checks a 200 answer against the
// contract (idgenapi).
func generate(ctx context.Context, c *http.Client, url string, target, count int) genResult {
	a := idgenapi.Generate(ctx, c, url, count, idgenapi.Request{})
	return genResult{target: target, count: count, status: a.Status, err: a.Err, code: a.Code, retryAfter: a.RetryAfter,
		ids: a.IDs, bad: a.Bad, sent: a.Sent, recv: a.Recv}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// ledger collects every answer of a test: all IDs returned (to find
// duplicates), the statuses, and answers that break the test's policy.
type ledger struct {
	// accept returns "" when a result is acceptable for the test, or what is
	// wrong with it. The default accepts only 200.
	accept func(r *genResult) string
	// keep, when set, keeps every result for checks after the run.
	keep bool

	seen *idledger.Ledger[int] // meta: the target that returned the ID

	mu         sync.Mutex
	dupSamples []string
	statuses   map[string]int // "status code" → answers
	problems   []string
	nproblems  int
	workers    map[int]map[uint16]int // target → worker → IDs
	results    []genResult
}

func newLedger() *ledger {
	return &ledger{
		seen:     idledger.New[int](1 << 16),
		statuses: map[string]int{},
		workers:  map[int]map[uint16]int{},
	}
}

func onlyOK(r *genResult) string {
	if r.status == http.StatusOK {
		return ""
	}
	return describe(r)
}

// okOr503 accepts 200, and 503 "unavailable" with a Retry-After header.
func okOr503(r *genResult) string {
	switch {
	case r.status == http.StatusOK:
		return ""
	case r.status == http.StatusServiceUnavailable && r.retryAfter != "" && r.code == "unavailable":
		return ""
	}
	return describe(r)
}

func describe(r *genResult) string {
	if r.err != nil {
		return fmt.Sprintf("target %d count %d: transport error after %v: %v", r.target, r.count, r.recv.Sub(r.sent).Round(time.Millisecond), r.err)
	}
	return fmt.Sprintf("target %d count %d: status %d code %q Retry-After %q", r.target, r.count, r.status, r.code, r.retryAfter)
}

func (l *ledger) problemLocked(format string, args ...any) {
	l.nproblems++
	if len(l.problems) < 25 {
		l.problems = append(l.problems, fmt.Sprintf(format, args...))
	}
}

// record adds one result; shard is the shard every ID must carry.
func (l *ledger) record(r genResult) {
	l.mu.Lock()
	defer l.mu.Unlock()
	accept := l.accept
	if accept == nil {
		accept = onlyOK
	}
	key := strconv.Itoa(r.status)
	if r.err != nil && r.status == 0 {
		key = "transport-error"
	}
	l.statuses[key]++
	if msg := accept(&r); msg != "" {
		l.problemLocked("%s (sent %s)", msg, r.sent.Format("15:04:05.000"))
	}
	if r.bad != "" {
		l.problemLocked("target %d: contract: %s", r.target, r.bad)
	}
	if l.keep {
		l.results = append(l.results, r)
	}
	ws := l.workers[r.target]
	if ws == nil {
		ws = map[uint16]int{}
		l.workers[r.target] = ws
	}
	for _, id := range r.ids {
		f := id.Decompose()
		if f.Shard != 0 {
			l.problemLocked("target %d: ID %s has shard %d, want 0", r.target, id, f.Shard)
		}
		ws[f.Worker]++
	}
	for _, d := range l.seen.Add(r.target, r.ids...) {
		if len(l.dupSamples) < 10 {
			f := d.ID.Decompose()
			l.dupSamples = append(l.dupSamples, fmt.Sprintf("%s (shard %d counter %d worker %d) from target %d, already from target %d",
				d.ID, f.Shard, f.Counter, f.Worker, r.target, d.First.Meta))
		}
	}
}

// check fails tb on duplicates and policy violations, and logs a summary.
func (l *ledger) check(tb testing.TB) {
	tb.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	ids, dups := l.seen.Len()+l.seen.Duplicates(), l.seen.Duplicates()
	if len(l.workers) <= 10 {
		tb.Logf("ledger: %d IDs, %d duplicates, answers %v, workers per target %v", ids, dups, l.statuses, l.workers)
	} else {
		tb.Logf("ledger: %d IDs, %d duplicates, answers %v, %d targets", ids, dups, l.statuses, len(l.workers))
	}
	if dups > 0 {
		tb.Errorf("%d DUPLICATE IDs (same shard and counter), e.g.:\n  %s", dups, strings.Join(l.dupSamples, "\n  "))
	}
	if l.nproblems > 0 {
		tb.Errorf("%d unacceptable answers, e.g.:\n  %s", l.nproblems, strings.Join(l.problems, "\n  "))
	}
}

// latencies summarizes the answer time of the results with the given
// status: median, 90th percentile, max and count.
func latencies(rs []genResult, status int) string {
	var ds []time.Duration
	for _, r := range rs {
		if r.status == status {
			ds = append(ds, r.recv.Sub(r.sent))
		}
	}
	if len(ds) == 0 {
		return fmt.Sprintf("no %d answers", status)
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return fmt.Sprintf("%d answers %d: median %v, p90 %v, max %v", len(ds), status,
		ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)*9/10].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
}

// count is the number of IDs recorded, duplicates included.
func (l *ledger) count() int { return l.seen.Len() + l.seen.Duplicates() }

// workersOf returns the worker slots target's IDs carried, sorted.
func (l *ledger) workersOf(target int) []uint16 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []uint16
	for w := range l.workers[target] {
		out = append(out, w)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func (l *ledger) snapshot() []genResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]genResult(nil), l.results...)
}

// runJobs sends every job of jobs (a count, 0 = single) to url from workers
// goroutines and returns when all are answered or ctx ended.
func runJobs(ctx context.Context, c *http.Client, l *ledger, target int, url string, workers int, jobs []int) {
	ch := make(chan int, len(jobs))
	for _, j := range jobs {
		ch <- j
	}
	close(ch)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for n := range ch {
				if ctx.Err() != nil {
					return
				}
				l.record(generate(ctx, c, url, target, n))
			}
		})
	}
	wg.Wait()
}

// pacedLoad is background load on one process: workers goroutines, each
// sending one request per pace (counts cycle through pattern), until stop,
// ctx's end or maxReq requests per worker.
type pacedLoad struct {
	stopCh chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

func startPaced(ctx context.Context, c *http.Client, l *ledger, target int, url string, workers int, pace time.Duration, pattern []int, maxReq int) *pacedLoad {
	pl := &pacedLoad{stopCh: make(chan struct{})}
	for w := range workers {
		pl.wg.Go(func() {
			next := time.Now()
			for i := 0; i < maxReq; i++ {
				select {
				case <-pl.stopCh:
					return
				case <-ctx.Done():
					return
				default:
				}
				l.record(generate(ctx, c, url, target, pattern[(w+i)%len(pattern)]))
				next = next.Add(pace)
				if d := time.Until(next); d > 0 {
					select {
					case <-time.After(d):
					case <-pl.stopCh:
						return
					case <-ctx.Done():
						return
					}
				} else if d < -time.Second {
					next = time.Now() // do not burst to catch up after a stall
				}
			}
		})
	}
	return pl
}

// stop ends the load after the requests in flight are answered.
func (pl *pacedLoad) stop() {
	pl.once.Do(func() { close(pl.stopCh) })
	pl.wg.Wait()
}

// healthView is GET /health (or /health/ready).
type healthView struct {
	HTTP       int
	RetryAfter string
	Status     string `json:"status"`
	Checks     map[string]struct {
		Status string `json:"status"`
		Error  string `json:"error"`
	} `json:"checks"`
}

func (h healthView) check(name string) string {
	if c, ok := h.Checks[name]; ok {
		return c.Status
	}
	return "<missing>"
}

func getHealth(ctx context.Context, c *http.Client, url string) (healthView, error) {
	return getHealthPath(ctx, c, url, "/health")
}

func getHealthPath(ctx context.Context, c *http.Client, url, path string) (healthView, error) {
	var h healthView
	status, header, body, err := idgenapi.Call(ctx, c, http.MethodGet, url+path, "")
	if status == 0 {
		return h, err
	}
	h.HTTP, h.RetryAfter = status, header.Get("Retry-After")
	if err != nil {
		return h, err
	}
	if err := json.Unmarshal(body, &h); err != nil {
		return h, fmt.Errorf("%s: %w: %s", path, err, truncate(string(body), 200))
	}
	return h, nil
}

// instanceView is one entry of GET /instances.
type instanceView struct {
	Worker    uint16    `json:"worker"`
	Shard     uint8     `json:"shard"`
	Address   string    `json:"address"`
	StartedAt time.Time `json:"started_at"`
}

func getInstances(ctx context.Context, c *http.Client, url string) ([]instanceView, error) {
	status, _, body, err := idgenapi.Call(ctx, c, http.MethodGet, url+"/instances", "")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("/instances: %d %s", status, truncate(string(body), 200))
	}
	var v struct {
		Instances []instanceView `json:"instances"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("/instances: %w: %s", err, truncate(string(body), 200))
	}
	return v.Instances, nil
}

// getMetric returns the value of an unlabelled metric from GET /metrics.
func getMetric(ctx context.Context, c *http.Client, url, name string) (float64, error) {
	_, _, b, err := idgenapi.Call(ctx, c, http.MethodGet, url+"/metrics", "")
	if err != nil {
		return 0, err
	}
	return idgenapi.Sample(b, name)
}

// waitFor polls cond every interval until it holds or timeout passes; it
// returns how long it took, and cond's last message.
func waitFor(timeout, interval time.Duration, cond func() (bool, string)) (time.Duration, string, bool) {
	start := time.Now()
	for {
		ok, msg := cond()
		if ok {
			return time.Since(start), msg, true
		}
		if time.Since(start) > timeout {
			return time.Since(start), msg, false
		}
		time.Sleep(interval)
	}
}

// zkConnect opens a plain ZooKeeper client (for reading the counter znode);
// closed in tb's cleanup.
func zkConnect(tb testing.TB, addrs []string) *zk.Conn {
	tb.Helper()
	c, _, err := zk.Connect(addrs, 10*time.Second, zk.WithLogInfo(false), zk.WithLogger(quietZK{}))
	if err != nil {
		tb.Fatalf("zk connect: %v", err)
	}
	tb.Cleanup(c.Close)
	return c
}

type quietZK struct{}

func (quietZK) Printf(string, ...any) {}

// counterZnode is the shard-0 counter under root (the allocator may move it
// to counter.K near the int32 version wrap; not within these tests).
func counterZnode(root string) string { return root + "/shards/0/counter" }

// readCounter returns the counter's "next" and data version; a missing znode
// reads as next 0, version -1.
func readCounter(ctx context.Context, c *zk.Conn, root string) (next uint64, version int32, err error) {
	type res struct {
		data []byte
		st   *zk.Stat
		err  error
	}
	ch := make(chan res, 1)
	go func() {
		if _, err := c.Sync(counterZnode(root)); err != nil && !errors.Is(err, zk.ErrNoNode) {
			ch <- res{err: err}
			return
		}
		d, st, err := c.Get(counterZnode(root))
		ch <- res{d, st, err}
	}()
	var r res
	select {
	case r = <-ch:
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	if errors.Is(r.err, zk.ErrNoNode) {
		return 0, -1, nil
	}
	if r.err != nil {
		return 0, 0, r.err
	}
	var d struct {
		Next    uint64 `json:"next"`
		MovedTo string `json:"moved_to"`
	}
	if err := json.Unmarshal(r.data, &d); err != nil {
		return 0, 0, fmt.Errorf("counter %s: %w: %q", counterZnode(root), err, r.data)
	}
	if d.MovedTo != "" {
		return 0, 0, fmt.Errorf("counter %s moved to %s: not expected in a test", counterZnode(root), d.MovedTo)
	}
	return d.Next, r.st.Version, nil
}

// TestClientChecksEveryAnswer: the suites' client holds every answer to
// the OpenAPI document, not a sample, and fails the test on one it does
// not describe.
func TestClientChecksEveryAnswer(t *testing.T) {
	apicheck.Prove(t, false, func(tb apitest.TB, _ *httptest.Server) *http.Client { return newHTTPClient(tb, true) })
}
