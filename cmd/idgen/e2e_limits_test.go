package main

// End-to-end test of file descriptor exhaustion: `idgen serve` under
// `prlimit --nofile=64:64` while idle connections take every descriptor
// they can. The process stays up, answers 200 with valid unique IDs or 503
// with Retry-After (or a connection error), and serves again once the idle
// connections are gone.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
)

// fdCount is the number of open descriptors of pid (-1 when unreadable).
func fdCount(pid int) int {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// answer is a response with what the refusal tests check of it.
type answer struct {
	body       []byte
	retryAfter string
}

// post sends a JSON POST and returns the status, body and Retry-After.
func (a api) post(ctx context.Context, path, body string) (int, answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+path, strings.NewReader(body))
	if err != nil {
		return 0, answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.c.Do(req)
	if err != nil {
		return 0, answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, answer{}, err
	}
	return resp.StatusCode, answer{body: b, retryAfter: resp.Header.Get("Retry-After")}, nil
}

// parseIDs reads the IDs of a 200 of /generate.
func parseIDs(b []byte) ([]string, error) {
	var v struct {
		ID  string   `json:"id"`
		IDs []string `json:"ids"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%q: %w", b, err)
	}
	if v.ID != "" {
		return []string{v.ID}, nil
	}
	if len(v.IDs) == 0 {
		return nil, fmt.Errorf("no IDs in %q", b)
	}
	return v.IDs, nil
}

// startLimited starts `idgen serve --dev` under prlimit --nofile=n:n and
// waits until it is ready.
func startLimited(t *testing.T, nofile int, client *http.Client) (*proc.Process, api) {
	t.Helper()
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Fatalf("prlimit (util-linux) is needed: %v", err)
	}
	lim := strconv.Itoa(nofile)
	return startWrapped(t, client, "prlimit --nofile="+lim, func(bin string, args []string) (string, []string) {
		return prlimit, append([]string{"--nofile=" + lim + ":" + lim, "--", bin}, args...)
	})
}

// startWrapped starts `idgen serve --dev` through wrap (which returns the
// program and arguments that run bin with args under some limit, described
// by what) and waits until it is ready.
func startWrapped(t *testing.T, client *http.Client, what string, wrap func(bin string, args []string) (string, []string)) (*proc.Process, api) {
	t.Helper()
	addr, err := proc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"serve", "--dev", "--listen", addr,
		"--data-dir", t.TempDir(), "--audit-log", filepath.Join(t.TempDir(), "audit.log")}
	if e := os.Getenv("IDGEN_E2E_STORE_ENGINE"); e != "" {
		args = append(args, "--store-engine", e)
	}
	prog, args := wrap(idgenBinary(t), args)
	p, err := proc.Start(prog, proc.Options{Args: args, DropEnv: []string{"IDGEN_", "GOMEMLIMIT"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.Kill()
		if t.Failed() {
			t.Logf("--- idgen serve stderr (%s):\n%s", tailLines(p.Stderr(), failLogLines), lastLines(p.Stderr(), failLogLines))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.WaitHTTP(ctx, client, "http://"+addr+"/health/ready"); err != nil {
		t.Fatalf("idgen serve under %s did not become ready: %v", what, err)
	}
	return p, api{c: client, base: "http://" + addr}
}

// TestFileDescriptorsExhausted: 200 idle connections against a limit of 64
// descriptors. Fresh connections then get 503 with Retry-After (or a
// connection error), never another status and never a wrong ID; the
// process does not exit; closing the idle connections brings 200s back
// without a restart.
func TestFileDescriptorsExhausted(t *testing.T) {
	const nofile, idle, requests = 64, 200, 300
	keep := proc.NewClient(4, 10*time.Second)
	defer keep.CloseIdleConnections()
	p, a := startLimited(t, nofile, keep)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	before, code, err := a.generate(ctx, `{"count":100}`)
	if err != nil || code != 200 {
		t.Fatalf("generate before the flood: %d %v", code, err)
	}
	t.Logf("ready: %d descriptors open of %d", fdCount(p.Pid()), nofile)

	// Idle connections: dialled and never written to.
	var conns []net.Conn
	closeIdle := func() {
		for _, c := range conns {
			c.Close()
		}
		conns = nil
	}
	defer closeIdle()
	dialErrs := 0
	host := strings.TrimPrefix(a.base, "http://")
	for range idle {
		c, err := net.DialTimeout("tcp", host, time.Second)
		if err != nil {
			dialErrs++
			continue
		}
		conns = append(conns, c)
	}
	t.Logf("%d idle connections open (%d dials failed); the service holds %d descriptors", len(conns), dialErrs, fdCount(p.Pid()))

	// Fresh connections while the idle ones stay: no keep-alive, so every
	// request needs a descriptor of its own.
	fresh := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	fa := api{c: fresh, base: a.base}
	var (
		mu       sync.Mutex
		ids      = [][]string{before}
		statuses = map[int]int{}
		errs     = map[string]int{}
		noRetry  int
	)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range requests / 4 {
				body := "{}"
				if i%4 == w%4 {
					body = `{"count":10}`
				}
				code, b, err := fa.post(ctx, "/generate", body)
				mu.Lock()
				switch {
				case err != nil:
					errs[errKind(err)]++
				case code == 200:
					got, perr := parseIDs(b.body)
					if perr != nil {
						t.Errorf("200 with a bad body: %v", perr)
					}
					ids = append(ids, got)
				default:
					statuses[code]++
					if code == 503 && b.retryAfter == "" {
						noRetry++
					}
				}
				mu.Unlock()
				if ctx.Err() != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	fresh.CloseIdleConnections()
	okDuring := 0
	for _, l := range ids[1:] {
		okDuring += len(l)
	}
	t.Logf("while %d idle connections were open: %d IDs in 200s, other statuses %v, connection errors %v; %d descriptors open",
		len(conns), okDuring, statuses, errs, fdCount(p.Pid()))
	if p.Exited() {
		code, _ := p.Wait(time.Second)
		t.Fatalf("idgen serve exited (code %d) while descriptors ran out", code)
	}
	if n := errs["connection refused"]; n > 0 {
		t.Errorf("%d connections refused by the kernel: the listener is closed", n)
	}
	for code, n := range statuses {
		if code != 503 {
			t.Errorf("%d answers %d while descriptors ran out; want only 200 or 503", n, code)
		}
	}
	if noRetry > 0 {
		t.Errorf("%d answers 503 without Retry-After", noRetry)
	}
	if statuses[503] == 0 {
		t.Errorf("no 503 while %d idle connections held the service's descriptors (limit %d): the connection bound did not act", len(conns), nofile)
	}

	closeIdle()
	t0 := time.Now()
	for {
		got, code, err := fa.generate(ctx, "{}")
		if err == nil && code == 200 {
			ids = append(ids, got)
			break
		}
		if time.Since(t0) > 10*time.Second {
			t.Fatalf("still %d %v 10 s after the idle connections closed", code, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("200 again %v after the idle connections closed", time.Since(t0).Round(time.Millisecond))
	after, code, err := a.generate(ctx, `{"count":100}`)
	if err != nil || code != 200 {
		t.Fatalf("generate after the flood: %d %v", code, err)
	}
	checkUnique(t, append(ids, after)...)
	for _, id := range append(before[:3], after[:3]...) {
		if _, code, err := a.get(ctx, id); err != nil || code != 200 {
			t.Errorf("GET /ids/%s after the flood: %d %v", id, code, err)
		}
	}
	if out := p.Stderr(); strings.Contains(out, "panic:") || strings.Contains(out, "goroutine ") {
		t.Errorf("the log holds a panic or a goroutine dump")
	}
	keep.CloseIdleConnections()
	if code, err := p.Terminate(20 * time.Second); err != nil || code != 0 {
		t.Errorf("SIGTERM: exit %d %v, want 0", code, err)
	}
}
