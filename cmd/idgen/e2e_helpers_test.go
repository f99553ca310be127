package main

// Helpers of the end-to-end tests: the idgen binary built once, by the first
// test that runs it (idgenBinary), a server wrapper that starts, stops,
// kills and restarts `idgen serve` on one data directory, a small API client
// and log readers. The load loop and the invariant checks are in
// e2e_load_test.go.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	apidoc "github.com/idgen/idgen/api"

	"go.uber.org/goleak"

	"github.com/idgen/idgen/api/apitest"
	"github.com/idgen/idgen/harness/proc"
)

// bin is the binary under test, built by the first test that runs it
// into a directory TestMain removes. IDGEN_E2E_RACE=1 builds it with the
// race detector: a race in the service then makes it exit 66 and the
// exit-code asserts fail.
var bin = &proc.Binary{Name: "idgen-e2e", Race: os.Getenv("IDGEN_E2E_RACE") != ""}

// idgenBinary returns the binary under test (proc.Binary: built on first
// use; under go test -short it skips t).
func idgenBinary(t testing.TB) string {
	t.Helper()
	return bin.Path(t)
}

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	if os.Getenv("IDGEN_E2E_RACE") != "" {
		// Children inherit it: no 1 s pause at every exit of a race binary.
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	code := m.Run()
	bin.Remove()
	if v := unattributed.list(); code == 0 && len(v) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: %d answers the OpenAPI document does not describe:\n%s\n", len(v), strings.Join(v, "\n"))
		return 1
	}
	// Every load loop, probe and client of the tests must have ended.
	if err := goleak.Find(); code == 0 && err != nil {
		fmt.Fprintln(os.Stderr, "e2e: goroutines leaked:", err)
		return 1
	}
	return code
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
		// IDGEN_E2E_STORE_ENGINE runs every test on another embedded store
		// engine (--store-engine) than the default.
		if e := os.Getenv("IDGEN_E2E_STORE_ENGINE"); e != "" {
			args = append(args, "--store-engine", e)
		}
		p, err := proc.Start(idgenBinary(s.t), proc.Options{Args: append(args, s.opts.args...), Env: s.opts.env, DropEnv: []string{"IDGEN_"}})
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

// api returns a client of the current run, whose answers fail s.t when
// the OpenAPI document does not describe them.
func (s *server) api() api { return api{c: s.client, base: "http://" + s.addr, t: s.t} }

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

// api is a JSON client of one run. Every answer do reads is checked
// against the contract, api/openapi.json (apitest): one the document does
// not describe fails t (Errorf: do runs on load goroutines too) or, for a
// client made without t, the whole run at its end (testMain).
type api struct {
	c    *http.Client
	base string
	t    testing.TB
}

// unattributed keeps the contract violations of clients without a test.
var unattributed violations

type violations struct {
	mu   sync.Mutex
	errs []string
}

func (v *violations) add(err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.errs = append(v.errs, err.Error())
}

func (v *violations) list() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.errs
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
	if err := apitest.Check(apitest.Exchange{Method: method, Target: req.URL.RequestURI(), Status: resp.StatusCode, Header: resp.Header, Body: b}); err != nil {
		if a.t != nil {
			a.t.Errorf("%v", err)
		} else {
			unattributed.add(err)
		}
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

func (a api) get(ctx context.Context, id string) (apidoc.IDRecord, int, error) {
	var rec apidoc.IDRecord
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

// runCLI runs the idgen binary to completion (bounded) and returns its exit
// code, stdout and stderr.
func runCLI(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	p, err := proc.Start(idgenBinary(t), proc.Options{Args: args, Env: env, DropEnv: []string{"IDGEN_"}, Dir: t.TempDir()})
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

// problems returns the warn and error lines of a run's log after the first
// line with message since ("" = from the start), leaving out the
// development mode warning every --dev run prints.
func problems(stderr, since string) []string {
	var out []string
	on := since == ""
	for _, l := range jsonLines(stderr) {
		msg, _ := l["msg"].(string)
		if !on {
			on = msg == since
			continue
		}
		if lvl, _ := l["level"].(string); (lvl == "warn" || lvl == "error") && !strings.HasPrefix(msg, "DEVELOPMENT MODE") {
			b, _ := json.Marshal(l)
			out = append(out, string(b))
		}
	}
	return out
}
