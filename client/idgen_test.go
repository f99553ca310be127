package client_test

// The servers of the tests: real `idgen serve` processes of the binary
// built once, by the first test that needs one.

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/idgen/idgen/api/apitest"
	"github.com/idgen/idgen/client"
	"github.com/idgen/idgen/harness/proc"
)

// bin is the binary under test, built by the first test that runs it
// into a directory TestMain removes.
var bin = &proc.Binary{Name: "client-test"}

// idgenBinary returns the binary under test (proc.Binary: built on first
// use; under go test -short it skips t).
func idgenBinary(t testing.TB) string {
	t.Helper()
	return bin.Path(t)
}

// instance is one `idgen serve` on a fresh data directory and a free
// loopback port, killed when its test ends.
type instance struct {
	t    *testing.T
	p    *proc.Process
	addr string
	// URL is the base URL clients use.
	URL string
}

// serveOpts shape the command line of an instance.
type serveOpts struct {
	// auth leaves out --dev; args then need a --jwt-* flag.
	auth bool
	args []string
	// tls is the client side of --tls-cert: the instance serves https.
	tls *tls.Config
}

// startIdgen starts `idgen serve [--dev] --listen ADDR --data-dir DIR
// --audit-log FILE` plus o.args and waits for /health/ready.
func startIdgen(t *testing.T, o serveOpts) *instance {
	t.Helper()
	path := idgenBinary(t)
	dir := t.TempDir()
	scheme := "http"
	if o.tls != nil {
		scheme = "https"
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: o.tls}, Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	for attempt := 1; ; attempt++ {
		addr, err := proc.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		args := []string{"serve", "--listen", addr, "--data-dir", filepath.Join(dir, "data"), "--audit-log", filepath.Join(dir, "audit.log")}
		if !o.auth {
			args = append(args, "--dev")
		}
		p, err := proc.Start(path, proc.Options{Args: append(args, o.args...), DropEnv: []string{"IDGEN_"}})
		if err != nil {
			t.Fatal(err)
		}
		in := &instance{t: t, p: p, addr: addr, URL: scheme + "://" + addr}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err = p.WaitHTTP(ctx, hc, in.URL+"/health/ready")
		cancel()
		if err == nil {
			t.Cleanup(in.kill)
			return in
		}
		_ = p.Kill()
		if errors.Is(err, proc.ErrExited) && strings.Contains(err.Error(), "address already in use") && attempt < 3 {
			continue
		}
		t.Fatalf("idgen serve did not become ready: %v", err)
	}
}

// kill ends the instance; its log goes to the test's when the test failed.
func (in *instance) kill() {
	if err := in.p.Kill(); err != nil {
		in.t.Errorf("kill idgen: %v", err)
	}
	if in.t.Failed() {
		in.t.Logf("idgen serve %s stderr:\n%s", in.addr, lastLines(in.p.Stderr(), 60))
	}
}

// stop ends the instance gracefully (SIGTERM).
func (in *instance) stop() {
	in.t.Helper()
	if _, err := in.p.Terminate(20 * time.Second); err != nil {
		in.t.Fatal(err)
	}
}

func lastLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n-1):], "")
}

// issued reads idgen_ids_issued_total from the instance's /metrics (the
// instance runs in --dev: every scope).
func (in *instance) issued() int {
	in.t.Helper()
	resp, err := http.Get(in.URL + "/metrics")
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	defer http.DefaultClient.CloseIdleConnections()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "idgen_ids_issued_total "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				in.t.Fatal(err)
			}
			return int(f)
		}
	}
	in.t.Fatalf("no idgen_ids_issued_total in /metrics (%v)", sc.Err())
	return 0
}

// newClient returns a client of cfg, closed when the test ends. Unset
// retry timings are short, so that tests of retries stay fast. Without
// cfg.TLS and cfg.HTTPClient every answer the client receives is checked
// against the API's OpenAPI document (apitest.Transport): an answer it does
// not describe fails the test.
func newClient(t *testing.T, cfg client.Config) *client.Client {
	t.Helper()
	if cfg.TLS == nil && cfg.HTTPClient == nil {
		tr := &http.Transport{}
		t.Cleanup(tr.CloseIdleConnections)
		cfg.HTTPClient = &http.Client{Transport: apitest.Transport(tr, t)}
	}
	return newUncheckedClient(t, cfg)
}

// newUncheckedClient is newClient without the contract check, for answers
// that are not the API's (a proxy's error page).
func newUncheckedClient(t *testing.T, cfg client.Config) *client.Client {
	t.Helper()
	if cfg.Retry.BaseBackoff == 0 {
		cfg.Retry.BaseBackoff = 10 * time.Millisecond
	}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testContext is bounded well below go test's timeout, so that a hung call
// fails its test with a message.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
