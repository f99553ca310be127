package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"time"

	"github.com/chromedp/chromedp"
)

// console checks the operator console through the load balancer: the page
// and its assets are served with their security headers, and in headless
// Chromium the page, given the run's token, lists every instance of the
// stack (each refresh may reach another instance) with no CSP violation.
func (r *run) console(ctx context.Context, instances int) error {
	for path, ctype := range map[string]string{"/": "text/html", "/console/app.js": "text/javascript", "/console/app.css": "text/css"} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url(path), nil)
		if err != nil {
			return err
		}
		resp, err := r.http.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) ||
			!strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") ||
			resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			return fmt.Errorf("GET %s through the load balancer: %d %q, CSP %q", path, resp.StatusCode, resp.Header.Get("Content-Type"), csp)
		}
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		return fmt.Errorf("chromium is needed (scripts/install-deps.sh installs it): %w", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelTab := chromedp.NewContext(actx)
	defer cancelTab()
	bctx, cancel := context.WithTimeout(bctx, time.Minute)
	defer cancel()
	within := chromedp.WithPollingTimeout(45 * time.Second)
	// signIn brings up the login form with first (loading the page, or
	// signing out), signs in with token, waits until the page has at least
	// one row per instance matching sel, and counts those rows. what is
	// what the page failed to do in the error ("list").
	signIn := func(first chromedp.Action[chromedp.Void], token, sel, what string) (int, error) {
		count := fmt.Sprintf(`document.querySelectorAll('%s').length`, sel)
		err := chromedp.Do(bctx,
			first,
			chromedp.Poll[chromedp.Void](`!document.getElementById('login').hidden`, within),
			chromedp.SetValue(chromedp.ID("token"), token),
			chromedp.Click(chromedp.CSS("#login-form button")),
			chromedp.Poll[chromedp.Void](fmt.Sprintf(`%s >= %d`, count, instances), within,
				chromedp.WithPollingInterval(200*time.Millisecond)))
		if err != nil {
			return 0, fmt.Errorf("the console through the load balancer did not %s %d instances: %w", what, instances, err)
		}
		return chromedp.Run(bctx, chromedp.Evaluate[int](count))
	}
	rows, err := signIn(chromedp.Navigate(r.url("/")), r.token, "#instances tr.instance", "list")
	if err != nil {
		return err
	}
	// An operator's token (ops:read) shows issuance per instance: the
	// refreshes reach the instances the load balancer picks, so every
	// instance gets a row of its own.
	operator, err := r.mintToken(ctx, "compose-test-operator", "ids:read ops:read", 10*time.Minute)
	if err != nil {
		return err
	}
	issuing, err := signIn(chromedp.Click(chromedp.ID("signout")), operator, "#issuance-instances tr.issuance", "show issuance of")
	if err != nil {
		return err
	}
	r.logf("phase console: page and assets served with CSP through the load balancer; Chromium lists %d instances, issuance of %d", rows, issuing)
	return nil
}
