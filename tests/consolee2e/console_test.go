// Package consolee2e drives the operator console at "/" in a real headless
// Chromium (Debian's chromium, through chromedp) against the real idgen
// binary: what the page shows is what the API holds, its buttons change
// the registry, a token's scopes bound what it asks for, and the browser
// reports no error, CSP violations included.
//
// IDGEN_SCREENSHOTS=DIR writes the screenshots to DIR (docs/ holds the
// committed ones); without it they go to the test's temporary directory.
package consolee2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/idgen/idgen/api/apitest"
	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/harness/zkharness"
)

var idgenBin string

func TestMain(m *testing.M) {
	proc.SkipShortMain("the idgen binary and chromium")
	bin, cleanup, err := proc.BuildIdgen("consolee2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	idgenBin = bin
	os.Exit(proc.RunMain(m, func() error { cleanup(); return nil }))
}

// instance is a running `idgen serve`.
type instance struct {
	base string
	p    *proc.Process
	c    *http.Client
}

func startIdgen(t *testing.T, args ...string) *instance {
	t.Helper()
	addr, err := proc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	args = append([]string{"serve", "--listen", addr, "--data-dir", filepath.Join(dir, "data"),
		"--audit-log", filepath.Join(dir, "audit.log")}, args...)
	p, err := proc.Start(idgenBin, proc.Options{Args: args, DropEnv: []string{"IDGEN_"}})
	if err != nil {
		t.Fatal(err)
	}
	c := proc.NewClient(4, 10*time.Second)
	c.Transport = apitest.Transport(c.Transport, t)
	t.Cleanup(func() {
		c.CloseIdleConnections()
		if code, err := p.Terminate(20 * time.Second); err != nil || code != 0 {
			t.Errorf("idgen serve: exit %d %v\n%s", code, err, p.Stderr())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := p.WaitHTTP(ctx, c, "http://"+addr+"/health/ready"); err != nil {
		t.Fatalf("idgen serve not ready: %v\n%s", err, p.Stderr())
	}
	return &instance{base: "http://" + addr, p: p, c: c}
}

// call sends a JSON request with an optional bearer token and decodes the
// answer into out (when not nil).
func (in *instance) call(t *testing.T, method, path, token, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, in.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := in.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	if out != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(b.Bytes(), out); err != nil {
			t.Fatalf("%s %s: %v in %q", method, path, err, b.String())
		}
	}
	return resp.StatusCode
}

// browser is a headless Chromium tab with what it reported: console
// errors, exceptions, error log entries (CSP violations among them) and
// the URLs it requested.
type browser struct {
	ctx context.Context

	mu       sync.Mutex
	problems []string
	requests []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is needed (scripts/install-deps.sh installs it): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 1000), chromedp.Flag("disable-gpu", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTime := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() {
		cancelTime()
		cancelTab()
		cancelAlloc()
	})
	b := &browser{ctx: ctx}
	err = chromedp.Listen(ctx, func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeWarning {
				var args []string
				for _, a := range e.Args {
					args = append(args, string(a.Value)+a.Description)
				}
				b.problems = append(b.problems, "console."+string(e.Type)+": "+strings.Join(args, " "))
			}
		case *runtime.EventExceptionThrown:
			b.problems = append(b.problems, "exception: "+e.ExceptionDetails.Text+" "+exceptionText(e.ExceptionDetails))
		case *cdplog.EventEntryAdded:
			if e.Entry.Level == cdplog.EntryLevelError || e.Entry.Level == cdplog.EntryLevelWarning {
				b.problems = append(b.problems, fmt.Sprintf("log %s/%s: %s %s", e.Entry.Source, e.Entry.Level, e.Entry.Text, e.Entry.URL))
			}
		case *network.EventRequestWillBeSent:
			b.requests = append(b.requests, e.Request.URL)
		}
	})
	if err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	// A CSP violation is also caught by the page's own event, recorded
	// before any page script runs.
	steps := []func() error{
		func() error { _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); return err },
		func() error { _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); return err },
		func() error { _, err := chromedp.Call(ctx, runtime.Enable, cdp.Empty{}); return err },
		func() error {
			_, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `window.__csp = [];
document.addEventListener('securitypolicyviolation', e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));`})
			return err
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("set up chromium: %v", err)
		}
	}
	return b
}

func exceptionText(d *runtime.ExceptionDetails) string {
	if d.Exception != nil {
		return d.Exception.Description
	}
	return ""
}

func (b *browser) run(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		t.Fatalf("%s: %v\nbrowser problems: %v", what, err, b.report())
	}
}

// get runs one action that returns a value.
func get[T any](t *testing.T, b *browser, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(b.ctx, a)
	if err != nil {
		t.Fatalf("%s: %v\nbrowser problems: %v", what, err, b.report())
	}
	return v
}

func (b *browser) report() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.problems...)
}

func (b *browser) requested(path string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var hits []string
	for _, u := range b.requests {
		if strings.Contains(u, path) {
			hits = append(hits, u)
		}
	}
	return hits
}

// checkClean fails t on any problem the browser reported and on any CSP
// violation the page saw.
func (b *browser) checkClean(t *testing.T) {
	t.Helper()
	csp := get(t, b, "read CSP violations", chromedp.Evaluate[[]string](`window.__csp`))
	if len(csp) > 0 {
		t.Errorf("CSP violations: %v", csp)
	}
	if p := b.report(); len(p) > 0 {
		t.Errorf("the browser reported %d problems:\n%s", len(p), strings.Join(p, "\n"))
	}
}

// until polls a JavaScript condition.
func until(expr string, within time.Duration) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(within), chromedp.WithPollingInterval(50*time.Millisecond))
}

func screenshot(t *testing.T, b *browser, name string) {
	t.Helper()
	png := get(t, b, "screenshot", chromedp.FullScreenshot(100))
	if !bytes.HasPrefix(png, []byte("\x89PNG")) || len(png) < 10_000 {
		t.Fatalf("screenshot %s: %d bytes, not a PNG of a page", name, len(png))
	}
	dir := os.Getenv("IDGEN_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestConsoleDev: in --dev the page needs no token. After 25 IDs it shows
// at least 25 issued and the one instance; a pasted ID shows its state
// (pending); Compensate compensates it in the registry; the log panel
// lists lines; the browser reports nothing wrong.
func TestConsoleDev(t *testing.T) {
	in := startIdgen(t, "--dev")
	var gen struct {
		IDs []string `json:"ids"`
	}
	if code := in.call(t, "POST", "/generate", "", `{"count":25,"timeout_ms":600000}`, &gen); code != 200 || len(gen.IDs) != 25 {
		t.Fatalf("generate: %d %v", code, gen.IDs)
	}
	// Three whose deadline falls within the next minute.
	if code := in.call(t, "POST", "/generate", "", `{"count":3,"timeout_ms":45000}`, nil); code != 200 {
		t.Fatalf("generate: %d", code)
	}
	// A light load while the page is open, so that its rate and latency
	// charts have something to draw: at most 2,000 requests, stopped at
	// the end of the test.
	loadCtx, stopLoad := context.WithTimeout(context.Background(), 30*time.Second)
	sent := 0
	load := proc.StartLoad(loadCtx, 1, func(ctx context.Context, _ int) bool {
		if sent++; sent > 2000 {
			return false
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, in.base+"/generate", strings.NewReader(`{"count":5}`))
		req.Header.Set("Content-Type", "application/json")
		if resp, err := in.c.Do(req); err == nil {
			resp.Body.Close()
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(10 * time.Millisecond):
			return true
		}
	})
	t.Cleanup(func() { stopLoad(); load.Wait() })

	b := newBrowser(t)
	b.run(t, "open the console", chromedp.Navigate(in.base+"/"),
		until(`Number(document.getElementById('issued').textContent.replace(/,/g, '')) >= 25`, 15*time.Second),
		until(`document.querySelectorAll('#instances tr.instance').length === 1`, 5*time.Second),
		until(`document.querySelectorAll('#logs li.log').length > 0`, 10*time.Second),
		until(`Number(document.getElementById('saga-expiring').textContent) >= 3`, 10*time.Second),
		// Metrics samples under load draw both charts.
		until(`document.querySelectorAll('#chart-rate polyline, #chart-p99 polyline').length === 2`, 15*time.Second))
	instanceRow := get(t, b, "read the instance row", chromedp.Text(chromedp.CSS(`#instances tr.instance`)))
	if !strings.Contains(instanceRow, strings.TrimPrefix(in.base, "http://")) {
		t.Errorf("the instance row %q does not name %s", instanceRow, in.base)
	}
	// The per-instance issuance table: one row, this instance, at least
	// the IDs the load was answered, a rate once two samples were taken.
	b.run(t, "the per-instance issuance row", until(`(() => {
		const rows = document.querySelectorAll('#issuance-instances tr.issuance');
		return rows.length === 1 && Number(rows[0].cells[1].textContent.replace(/,/g, '')) >= 25 && /^\d+\.\d$/.test(rows[0].cells[2].textContent);
	})()`, 15*time.Second))
	issuanceRow := get(t, b, "read the issuance row", chromedp.Text(chromedp.CSS(`#issuance-instances tr.issuance`)))
	if !strings.Contains(issuanceRow, strings.TrimPrefix(in.base, "http://")) {
		t.Errorf("the issuance row %q does not name %s", issuanceRow, in.base)
	}

	id := gen.IDs[3]
	b.run(t, "look the ID up", chromedp.SetValue(chromedp.ID("lookup-id"), id),
		chromedp.Click(chromedp.CSS("#lookup-form button")),
		until(`(document.getElementById('lookup-state') || {}).textContent === 'pending'`, 5*time.Second))
	screenshot(t, b, "console.png")
	b.run(t, "compensate it", chromedp.Click(chromedp.ID("compensate")),
		until(`(document.getElementById('lookup-state') || {}).textContent === 'compensated'`, 5*time.Second))
	var rec struct {
		State  string `json:"state"`
		Reason string `json:"reason"`
	}
	if code := in.call(t, "GET", "/ids/"+id, "", "", &rec); code != 200 || rec.State != "compensated" {
		t.Errorf("after the console's Compensate the registry holds %d %+v, want compensated", code, rec)
	}
	b.checkClean(t)
}

// TestConsoleTokenScopes: outside --dev the page asks for a token and
// keeps it in sessionStorage only (no cookie, not in the URL). A token
// with ids:read and ids:generate but not ops:read sees the instances and
// the lookup, but no logs or metrics panel, and the page never asks for
// /logs or /metrics; it shows no commit or compensate button.
func TestConsoleTokenScopes(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "jwt.secret")
	raw := make([]byte, 48)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secret, []byte(base64.StdEncoding.EncodeToString(raw)), 0o600); err != nil {
		t.Fatal(err)
	}
	in := startIdgen(t, "--jwt-hs256-secret-file", secret)
	out, err := exec.Command(idgenBin, "token", "--hs256-secret-file", secret, "--sub", "viewer", "--scope", "ids:read ids:generate").Output()
	if err != nil {
		t.Fatalf("idgen token: %v", err)
	}
	token := strings.TrimSpace(string(out))
	var gen struct {
		ID string `json:"id"`
	}
	if code := in.call(t, "POST", "/generate", token, `{}`, &gen); code != 200 {
		t.Fatalf("generate with the viewer token: %d", code)
	}

	b := newBrowser(t)
	b.run(t, "open the console", chromedp.Navigate(in.base+"/"),
		until(`!document.getElementById('login').hidden`, 10*time.Second))
	b.run(t, "sign in", chromedp.SetValue(chromedp.ID("token"), token),
		chromedp.Click(chromedp.CSS("#login-form button")),
		until(`!document.getElementById('main').hidden`, 5*time.Second),
		until(`document.querySelectorAll('#instances tr.instance').length === 1`, 10*time.Second))
	b.run(t, "look the ID up", chromedp.SetValue(chromedp.ID("lookup-id"), gen.ID),
		chromedp.Click(chromedp.CSS("#lookup-form button")),
		until(`(document.getElementById('lookup-state') || {}).textContent === 'pending'`, 5*time.Second))
	// Two more refreshes (each asks for /health): a panel the token may not
	// read would have asked by then.
	seen := len(b.requested("/health"))
	deadline := time.Now().Add(15 * time.Second)
	for len(b.requested("/health")) < seen+2 {
		if time.Now().After(deadline) {
			t.Fatalf("the page did not refresh twice within 15 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	hidden := get(t, b, "read the panels", chromedp.Evaluate[map[string]bool](`({
		logs: document.getElementById('logs-card').hidden,
		issuance: document.getElementById('issuance-card').hidden,
		commit: document.getElementById('commit').hidden,
		compensate: document.getElementById('compensate').hidden,
		instances: document.getElementById('instances-card').hidden,
	})`))
	for panel, want := range map[string]bool{"logs": true, "issuance": true, "commit": true, "compensate": true, "instances": false} {
		if hidden[panel] != want {
			t.Errorf("panel %s hidden=%v with scopes ids:read ids:generate, want %v", panel, hidden[panel], want)
		}
	}
	for _, path := range []string{"/logs", "/metrics"} {
		if hits := b.requested(path); len(hits) > 0 {
			t.Errorf("the page asked for %s without ops:read: %v", path, hits)
		}
	}
	where := get(t, b, "read where the token is", chromedp.Evaluate[struct{ Cookie, URL, Stored string }](
		`({Cookie: document.cookie, URL: location.href, Stored: sessionStorage.getItem('idgen.token') || ''})`))
	if where.Stored != token || where.Cookie != "" || strings.Contains(where.URL, token[:20]) {
		t.Errorf("token kept wrongly: sessionStorage %t, cookie %q, URL %q", where.Stored == token, where.Cookie, where.URL)
	}
	screenshot(t, b, "console-viewer.png")
	// The only errors allowed: the 401 of the first probe, before sign-in.
	var rest []string
	for _, p := range b.report() {
		if strings.HasPrefix(p, "log network/error") && strings.Contains(p, "401") && strings.HasSuffix(p, "/instances") {
			continue
		}
		rest = append(rest, p)
	}
	if len(rest) > 0 {
		t.Errorf("the browser reported:\n%s", strings.Join(rest, "\n"))
	}
	csp := get(t, b, "read CSP violations", chromedp.Evaluate[[]string](`window.__csp`))
	if len(csp) > 0 {
		t.Errorf("CSP violations: %v", csp)
	}
}

// TestConsoleZooKeeperRedis: two instances sharing ZooKeeper and Redis,
// and a compensate worker. The page of the first lists both instances,
// shows an ID the second issued (one registry), compensates it so that the
// second sees it compensated, and shows the failure stream's lag, pending
// and dead letters as numbers.
func TestConsoleZooKeeperRedis(t *testing.T) {
	zk := zkharness.StartT(t, zkharness.Options{Servers: 1})
	rs := redisharness.StartStandaloneT(t, redisharness.Options{AppendFsyncAlways: true})
	keyFile := filepath.Join(t.TempDir(), "metadata.keys")
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte(fmt.Sprintf("k1 %x\n", key)), 0o600); err != nil {
		t.Fatal(err)
	}
	shared := []string{"--dev", "--zookeeper", zk.ConnectString(), "--zookeeper-root", "/consolee2e",
		"--redis-addr", rs.Addr(), "--metadata-key-file", keyFile}
	a := startIdgen(t, shared...)
	b2 := startIdgen(t, shared...)
	worker, err := proc.Start(idgenBin, proc.Options{Args: []string{"compensate", "--redis-addr", rs.Addr(),
		"--audit-log", filepath.Join(t.TempDir(), "worker-audit.log"), "--consumer", "console-test"}, DropEnv: []string{"IDGEN_"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if code, err := worker.Terminate(20 * time.Second); err != nil || code != 0 {
			t.Errorf("idgen compensate: exit %d %v\n%s", code, err, worker.Stderr())
		}
	})
	var one struct {
		ID string `json:"id"`
	}
	if code := b2.call(t, "POST", "/generate", "", `{"timeout_ms":600000}`, &one); code != 200 {
		t.Fatalf("generate on the second instance: %d", code)
	}
	if code := a.call(t, "POST", "/generate", "", `{"count":12}`, nil); code != 200 {
		t.Fatalf("generate on the first instance: %d", code)
	}

	br := newBrowser(t)
	br.run(t, "open the console", chromedp.Navigate(a.base+"/"),
		until(`document.querySelectorAll('#instances tr.instance').length === 2`, 20*time.Second),
		until(`Number(document.getElementById('issued').textContent.replace(/,/g, '')) >= 12`, 15*time.Second),
		until(`/^zookeeper\+redis/.test(document.getElementById('reg-mode').textContent)`, 10*time.Second),
		until(`/^\d+ \/ \d+$/.test(document.getElementById('stream-lag').textContent) && /^\d+$/.test(document.getElementById('stream-dlq').textContent)`, 20*time.Second))
	rows := get(t, br, "read the instance rows", chromedp.Evaluate[[]string](`[...document.querySelectorAll('#instances tr.instance')].map(r => r.textContent)`))
	for _, in := range []*instance{a, b2} {
		addr := strings.TrimPrefix(in.base, "http://")
		if !strings.Contains(strings.Join(rows, "\n"), addr) {
			t.Errorf("instance %s not listed: %q", addr, rows)
		}
	}
	br.run(t, "look up the second instance's ID", chromedp.SetValue(chromedp.ID("lookup-id"), one.ID),
		chromedp.Click(chromedp.CSS("#lookup-form button")),
		until(`(document.getElementById('lookup-state') || {}).textContent === 'pending'`, 5*time.Second),
		chromedp.Click(chromedp.ID("compensate")),
		until(`(document.getElementById('lookup-state') || {}).textContent === 'compensated'`, 5*time.Second))
	var rec struct {
		State string `json:"state"`
	}
	if code := b2.call(t, "GET", "/ids/"+one.ID, "", "", &rec); code != 200 || rec.State != "compensated" {
		t.Errorf("the second instance reads %d %+v after the first's console compensated it", code, rec)
	}
	screenshot(t, br, "console-cluster.png")
	br.checkClean(t)
}
