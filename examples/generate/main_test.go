package main

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/shared/idcodec"
)

// TestMain fails the package when a run leaves goroutines behind (a
// client not closed).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRun runs the command against a real `idgen serve --dev`: it prints
// the IDs it was asked for, commits the first and prints its record, also
// when the first endpoint refuses connections.
func TestRun(t *testing.T) {
	url := startIdgen(t)
	dead := proc.DeadURL(t)
	tests := []struct {
		name  string
		args  []string
		count int
	}{
		{"batch", []string{"-endpoints", url, "-count", "3"}, 3},
		{"one, failing over", []string{"-endpoints", dead + "," + url, "-count", "1"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			var out, errOut bytes.Buffer
			if err := run(ctx, tt.args, func(string) string { return "" }, &out, &errOut); err != nil {
				t.Fatalf("run: %v\n%s", err, errOut.String())
			}
			t.Logf("output:\n%s", out.String())
			lines := strings.Split(out.String(), "\n")
			seen := map[string]bool{}
			for _, l := range lines[:tt.count] {
				if _, err := idcodec.Parse(l); err != nil || seen[l] {
					t.Fatalf("line %q: not a fresh ID (%v)", l, err)
				}
				seen[l] = true
			}
			first := lines[0]
			for _, want := range []string{
				"\ncommitted " + first + " (applied)\n",
				"\nrecord of " + first + "\n",
				"\n  state      committed\n",
				"\n    pending     ",
				"\n    committed   ",
			} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q", want)
				}
			}
		})
	}
}

// TestRunRefuses: arguments the command refuses end it before any request.
func TestRunRefuses(t *testing.T) {
	for _, args := range [][]string{
		{"-count", "0"},
		{"-count", "1001"},
		{"-endpoints", "ftp://example.com"},
		{"extra"},
	} {
		var out, errOut bytes.Buffer
		if err := run(t.Context(), args, func(string) string { return "" }, &out, &errOut); err == nil || out.Len() > 0 {
			t.Errorf("run %q = %v with output %q, want an error and none", args, err, out.String())
		}
	}
}

// startIdgen builds the idgen binary and starts `idgen serve --dev` on a
// free loopback port; it returns its base URL. Under -short it skips t.
func startIdgen(t *testing.T) string {
	t.Helper()
	proc.SkipShort(t, "the idgen binary")
	dir := t.TempDir()
	bin := filepath.Join(dir, "idgen")
	if err := proc.Build(proc.IdgenPackage, bin, proc.BuildOptions{}); err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	defer hc.CloseIdleConnections()
	for attempt := 1; ; attempt++ {
		addr, err := proc.FreeAddr()
		if err != nil {
			t.Fatal(err)
		}
		p, err := proc.Start(bin, proc.Options{
			Args:    []string{"serve", "--dev", "--listen", addr, "--data-dir", filepath.Join(dir, "data"), "--audit-log", filepath.Join(dir, "audit.log")},
			DropEnv: []string{"IDGEN_"},
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		err = p.WaitHTTP(ctx, hc, "http://"+addr+"/health/ready")
		cancel()
		if err == nil {
			t.Cleanup(func() {
				if code, err := p.Terminate(20 * time.Second); err != nil || code != 0 {
					t.Errorf("idgen serve: exit %d %v\n%s", code, err, p.Stderr())
				}
			})
			return "http://" + addr
		}
		p.Kill()
		if strings.Contains(err.Error(), "address already in use") && attempt < 3 {
			continue
		}
		t.Fatalf("idgen serve not ready: %v", err)
	}
}
