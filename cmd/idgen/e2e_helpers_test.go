package main

// Helpers of the end-to-end tests: the idgen binary built once by TestMain,
// a server wrapper that starts, stops, kills and restarts `idgen serve` on
// one data directory, a small API client and a load loop that remembers
// every acknowledged ID.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/shared/idcodec"
)

// idgenBin is the binary under test, built by TestMain.
var idgenBin string

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "idgen-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	idgenBin = filepath.Join(dir, "idgen")
	// IDGEN_E2E_RACE=1 builds the child with the race detector: a race in
	// the service then makes it exit 66 and the exit-code asserts fail.
	args, env := []string{"build", "-o", idgenBin}, "CGO_ENABLED=0"
	if os.Getenv("IDGEN_E2E_RACE") != "" {
		args, env = append(args, "-race"), "CGO_ENABLED=1"
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Env = append(os.Environ(), env)
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// serverOpts shape one `idgen serve` command line.
type serverOpts struct {
	noDev bool     // leave out --dev (the environment may set it)
	args  []string // more flags after the standard ones
	env   []string // KEY=VALUE; inherited IDGEN_* variables are always dropped
}

// server is one `idgen serve` on one data directory, across restarts.
type server struct {
	t       *testing.T
	opts    serverOpts
	dataDir string
	client  *http.Client
	p       *proc.Process
	addr    string
	runs    []string // stderr of finished runs, for the failure log
}

// startServer starts `idgen serve --dev` on a fresh data directory and a free
// loopback port and waits for /health/ready. The process is killed at the end
// of the test; its log is printed only when the test failed.
func startServer(t *testing.T, opts serverOpts) *server {
	t.Helper()
	s := &server{t: t, opts: opts, dataDir: t.TempDir(), client: proc.NewClient(64, 10*time.Second)}
	t.Cleanup(s.cleanup)
	s.start()
	return s
}

func (s *server) start() {
	s.t.Helper()
	for attempt := 1; ; attempt++ {
		addr, err := proc.FreeAddr()
		if err != nil {
			s.t.Fatal(err)
		}
		args := []string{"serve", "--listen", addr, "--data-dir", s.dataDir}
		if !s.opts.noDev {
			args = append(args, "--dev")
		}
		p, err := proc.Start(idgenBin, proc.Options{Args: append(args, s.opts.args...), Env: s.opts.env, DropEnv: []string{"IDGEN_"}})
		if err != nil {
			s.t.Fatal(err)
		}
		s.p, s.addr = p, addr
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err = p.WaitHTTP(ctx, s.client, s.url("/health/ready"))
		cancel()
		if err == nil {
			return
		}
		_ = p.Kill()
		s.retire()
		// Another process may have taken the port between FreeAddr and bind.
		if errors.Is(err, proc.ErrExited) && strings.Contains(err.Error(), "address already in use") && attempt < 3 {
			continue
		}
		s.t.Fatalf("idgen serve did not become ready: %v", err)
	}
}

// retire keeps the log of the current run for the failure report.
func (s *server) retire() {
	if s.p != nil {
		s.runs = append(s.runs, s.p.Stderr())
		s.p = nil
	}
}

func (s *server) cleanup() {
	if s.p != nil {
		if err := s.p.Kill(); err != nil {
			s.t.Errorf("cleanup: %v", err)
		}
		s.retire()
	}
	s.client.CloseIdleConnections()
	if s.t.Failed() {
		dir := s.t.ArtifactDir()
		for i, log := range s.runs {
			path := filepath.Join(dir, fmt.Sprintf("idgen-serve-run%d.log", i+1))
			if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
				s.t.Errorf("cleanup: %v", err)
			}
			s.t.Logf("--- idgen serve run %d (data dir %s), stderr %s (full log: %s, kept with go test -artifacts):\n%s",
				i+1, s.dataDir, tailLines(log, failLogLines), path, lastLines(log, failLogLines))
		}
	}
}

// failLogLines bounds the log printed per run of a failed test.
const failLogLines = 100

func tailLines(log string, n int) string {
	if total := strings.Count(log, "\n"); total > n {
		return fmt.Sprintf("last %d of %d lines", n, total)
	}
	return "in full"
}

func lastLines(log string, n int) string {
	lines := strings.SplitAfter(log, "\n")
	return strings.Join(lines[max(0, len(lines)-n-1):], "")
}

func (s *server) url(path string) string { return "http://" + s.addr + path }

// api returns a client of the current run.
func (s *server) api() api { return api{c: s.client, base: "http://" + s.addr} }

// stop sends SIGTERM and returns the exit code and how long the exit took.
func (s *server) stop(timeout time.Duration) (int, time.Duration) {
	s.t.Helper()
	t0 := time.Now()
	code, err := s.p.Terminate(timeout)
	if err != nil {
		s.t.Fatalf("SIGTERM: %v", err)
	}
	d := time.Since(t0)
	s.retire()
	return code, d
}

// kill SIGKILLs the current run.
func (s *server) kill() {
	s.t.Helper()
	if err := s.p.Kill(); err != nil {
		s.t.Fatal(err)
	}
	s.retire()
}

// restart starts a new run on the same data directory (on a new port).
func (s *server) restart() {
	s.t.Helper()
	if s.p != nil {
		s.t.Fatal("restart: the previous run is still up; stop or kill it first")
	}
	s.start()
}

// api is a JSON client of one run.
type api struct {
	c    *http.Client
	base string
}

// do sends a request and reads the whole answer, so the connection is kept.
func (a api) do(ctx context.Context, method, path, body string) (int, []byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, b, nil
}

// generate posts body to /generate and returns the IDs of a 200.
func (a api) generate(ctx context.Context, body string) ([]string, int, error) {
	code, b, err := a.do(ctx, http.MethodPost, "/generate", body)
	if err != nil || code != http.StatusOK {
		return nil, code, err
	}
	var v struct {
		ID  string   `json:"id"`
		IDs []string `json:"ids"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, code, fmt.Errorf("generate: 200 with a bad body %q: %w", b, err)
	}
	if v.ID != "" {
		return []string{v.ID}, code, nil
	}
	if len(v.IDs) == 0 {
		return nil, code, fmt.Errorf("generate: 200 without IDs: %q", b)
	}
	return v.IDs, code, nil
}

// idRecord is the body of GET /ids/{id}.
type idRecord struct {
	ID        string  `json:"id"`
	Timestamp string  `json:"timestamp"`
	Worker    uint16  `json:"worker"`
	Shard     uint8   `json:"shard"`
	Counter   uint64  `json:"counter"`
	State     string  `json:"state"`
	IssuedAt  *string `json:"issued_at"`
	Deadline  string  `json:"deadline"`
	History   []struct {
		State  string `json:"state"`
		At     string `json:"at"`
		Reason string `json:"reason"`
		Actor  string `json:"actor"`
	} `json:"history"`
}

func (a api) get(ctx context.Context, id string) (idRecord, int, error) {
	var rec idRecord
	code, b, err := a.do(ctx, http.MethodGet, "/ids/"+id, "")
	if err != nil || code != http.StatusOK {
		return rec, code, err
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, code, fmt.Errorf("GET /ids/%s: bad body %q: %w", id, b, err)
	}
	return rec, code, nil
}

// transition posts {"id", "reason"} to /commit or /compensate.
func (a api) transition(ctx context.Context, path, id, reason string) (string, int, error) {
	body, _ := json.Marshal(map[string]string{"id": id})
	if reason != "" {
		body, _ = json.Marshal(map[string]string{"id": id, "reason": reason})
	}
	code, b, err := a.do(ctx, http.MethodPost, path, string(body))
	if err != nil || code != http.StatusOK {
		return string(b), code, err
	}
	var v struct {
		State string `json:"state"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return "", code, fmt.Errorf("%s: bad body %q: %w", path, b, err)
	}
	return v.State, code, nil
}

// batchSize is the count of every 4th request of the load; the other three
// ask for a single ID.
const batchSize = 100

// load issues IDs from several goroutines over keep-alive connections and
// records what the service acknowledged. It keeps going through connection
// errors (the tests kill the service under it) until stopped or until want
// IDs were acknowledged.
type load struct {
	a    api
	want int64 // stop once this many IDs were acknowledged; 0 = until Stop
	// exited, when set, reports that the service process is gone; requests
	// started after that are counted apart (they must all fail).
	exited func() bool

	l     *proc.Load
	ids   [][]string // per worker, in acknowledgement order
	reqs  []int      // per worker: requests sent
	total atomic.Int64

	mu         sync.Mutex
	statuses   map[int]int // HTTP statuses other than 200
	connErrs   int
	errKinds   map[string]int // connection errors by kind, for the test log
	timeouts   []error
	bad        []string // protocol violations (bad bodies, unordered batches)
	afterExit  int      // requests started after the process was gone
	okAfterExt int      // ... of which answered 200 (must be 0)
}

func startIssueLoad(a api, workers int, want int64, exited func() bool) *load {
	ld := &load{a: a, want: want, exited: exited, ids: make([][]string, workers), reqs: make([]int, workers), statuses: map[int]int{}, errKinds: map[string]int{}}
	ld.l = proc.StartLoad(context.Background(), workers, ld.step)
	return ld
}

func (ld *load) step(ctx context.Context, w int) bool {
	if ld.want > 0 && ld.total.Load() >= ld.want {
		return false
	}
	body := "{}"
	if ld.reqs[w]++; ld.reqs[w]%4 == 0 {
		body = fmt.Sprintf(`{"count": %d}`, batchSize)
	}
	gone := ld.exited != nil && ld.exited()
	ids, code, err := ld.a.generate(ctx, body)
	ld.mu.Lock()
	defer ld.mu.Unlock()
	if gone {
		ld.afterExit++
		if err == nil && code == http.StatusOK {
			ld.okAfterExt++
		}
	}
	switch {
	case err != nil && ctx.Err() != nil:
		return false // stopped by the test, not an answer of the service
	case err != nil && code == http.StatusOK:
		ld.bad = append(ld.bad, err.Error())
	case err != nil:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			ld.timeouts = append(ld.timeouts, err)
		}
		ld.connErrs++
		ld.errKinds[errKind(err)]++
		ld.mu.Unlock()
		time.Sleep(5 * time.Millisecond) // the service is gone: do not spin
		ld.mu.Lock()
	case code != http.StatusOK:
		ld.statuses[code]++
	default:
		if len(ids) > 1 && !slices.IsSorted(ids) {
			ld.bad = append(ld.bad, fmt.Sprintf("batch not in increasing order: %v…", ids[:3]))
		}
		ld.ids[w] = append(ld.ids[w], ids...)
		ld.total.Add(int64(len(ids)))
	}
	return true
}

// errKind names a client error without its addresses: "connection
// refused", "EOF", ...
func errKind(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg
}

// waitFor waits until n IDs were acknowledged (or fails the test).
func (ld *load) waitFor(t *testing.T, n int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for ld.total.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d IDs acknowledged after %v", ld.total.Load(), n, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (ld *load) stop() { ld.l.Stop() }
func (ld *load) wait() { ld.l.Wait() }

// all returns every acknowledged ID.
func (ld *load) all() []string {
	var out []string
	for _, ids := range ld.ids {
		out = append(out, ids...)
	}
	return out
}

// checkClean fails t for answers other than 200 or connection errors.
func (ld *load) checkClean(t *testing.T) {
	t.Helper()
	ld.mu.Lock()
	defer ld.mu.Unlock()
	if len(ld.statuses) > 0 {
		t.Errorf("HTTP statuses other than 200 under load: %v", ld.statuses)
	}
	if len(ld.timeouts) > 0 {
		t.Errorf("%d requests hung until the client timeout, first: %v", len(ld.timeouts), ld.timeouts[0])
	}
	if len(ld.bad) > 0 {
		t.Errorf("%d protocol violations, first: %s", len(ld.bad), ld.bad[0])
	}
}

// slot is what uniqueness rests on (CONTRACT.md, ID format).
type slot struct {
	shard   uint8
	counter uint64
}

// checkUnique fails t when an ID is not ours or a (shard, counter) pair
// repeats across every list given; it returns the highest counter.
func checkUnique(t *testing.T, lists ...[]string) (maxCounter uint64) {
	t.Helper()
	seen := map[slot]string{}
	dups := 0
	for _, ids := range lists {
		for _, s := range ids {
			id, err := idcodec.Parse(s)
			if err != nil {
				t.Fatalf("the service answered %q: %v", s, err)
			}
			f := id.Decompose()
			k := slot{f.Shard, f.Counter}
			if prev, ok := seen[k]; ok {
				if dups++; dups <= 5 {
					t.Errorf("(shard %d, counter %d) issued twice: %s and %s", k.shard, k.counter, prev, s)
				}
				continue
			}
			seen[k] = s
			maxCounter = max(maxCounter, f.Counter)
		}
	}
	if dups > 0 {
		t.Errorf("%d duplicate (shard, counter) pairs among %d IDs", dups, len(seen)+dups)
	}
	return maxCounter
}

func counterRange(t *testing.T, ids []string) (lo, hi uint64) {
	t.Helper()
	lo = idcodec.MaxCounter
	for _, s := range ids {
		id, err := idcodec.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		c := id.Decompose().Counter
		lo, hi = min(lo, c), max(hi, c)
	}
	return lo, hi
}

// sample returns n random IDs of all workers plus the last tail IDs of each
// worker (the ones acknowledged closest to a kill or a shutdown, the most at
// risk); all of them when there are not more than that.
func sample(perWorker [][]string, n, tail int) []string {
	var all, out []string
	for _, ids := range perWorker {
		cut := max(0, len(ids)-tail)
		out = append(out, ids[cut:]...)
		all = append(all, ids[:cut]...)
	}
	if len(all) <= n {
		return append(out, all...)
	}
	for _, i := range rand.Perm(len(all))[:n] {
		out = append(out, all[i])
	}
	return out
}

// checkRegistered fails t for every ID that GET /ids/{id} does not show in
// state want.
func checkRegistered(t *testing.T, a api, ids []string, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		mu   sync.Mutex
		bad  []string
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(ids) && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				rec, code, err := a.get(ctx, ids[i])
				if err == nil && code == http.StatusOK && rec.State == want {
					continue
				}
				mu.Lock()
				bad = append(bad, fmt.Sprintf("%s: status %d state %q err %v", ids[i], code, rec.State, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("checking %d IDs in the registry took too long", len(ids))
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		t.Errorf("%d of %d acknowledged IDs not %s in the registry, e.g.:\n%s", len(bad), len(ids), want, strings.Join(bad[:min(10, len(bad))], "\n"))
	}
}

// readyProbe polls /health/ready on its own keep-alive connection and
// records the answers, to check that readiness goes down during a drain.
type readyProbe struct {
	l       *proc.Load
	mu      sync.Mutex
	answers []int // HTTP status, or 0 for a connection error
}

func startReadyProbe(url string) *readyProbe {
	c := proc.NewClient(1, 2*time.Second)
	rp := &readyProbe{}
	rp.l = proc.StartLoad(context.Background(), 1, func(ctx context.Context, _ int) bool {
		code := 0
		if req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil); err == nil {
			if resp, err := c.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				code = resp.StatusCode
			}
		}
		if ctx.Err() != nil {
			return false
		}
		rp.mu.Lock()
		rp.answers = append(rp.answers, code)
		rp.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
		return true
	})
	return rp
}

func (rp *readyProbe) stop() []int {
	rp.l.Stop()
	rp.mu.Lock()
	defer rp.mu.Unlock()
	return rp.answers
}

// runCLI runs the idgen binary to completion (bounded) and returns its exit
// code, stdout and stderr.
func runCLI(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	p, err := proc.Start(idgenBin, proc.Options{Args: args, Env: env, DropEnv: []string{"IDGEN_"}, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait(15 * time.Second)
	if err != nil {
		_ = p.Kill()
		t.Fatalf("idgen %s: %v\nstderr:\n%s", strings.Join(args, " "), err, p.Stderr())
	}
	return code, p.Stdout(), p.Stderr()
}

// jsonLines decodes the JSON log lines of a run's stderr; other lines are
// skipped.
func jsonLines(stderr string) []map[string]any {
	var out []map[string]any
	for _, line := range bytes.Split([]byte(stderr), []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil {
			out = append(out, m)
		}
	}
	return out
}
