package redise2e

// Process-level tests of a Redis that may have forgotten records: its
// eviction policy changed at runtime, or it restarted empty. The service
// refuses (503, /health not ok, idgen_registry_forgetful{reason} 1) rather
// than answer an acknowledged ID with 404 as if it were unknown; it
// recovers by itself from a policy put back, and serves again after an
// operator's `idgen registry reset-epoch` and a restart. A Redis without
// persistence is refused outside --dev.

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/tests/internal/idgenproc"
	"github.com/idgen/idgen/tests/internal/idledger"
)

// forgetful is the gauge of reason.
func forgetful(reason string) string { return `idgen_registry_forgetful{reason="` + reason + `"}` }

// issueIDs generates n IDs in batches of 100 and fails t on any refusal.
func issueIDs(t *testing.T, ctx context.Context, c *http.Client, in *instance, n int) []idcodec.ID {
	t.Helper()
	var out []idcodec.ID
	for len(out) < n {
		r := generate(ctx, c, in, 0, min(100, n-len(out)), genOpts{})
		if r.status != http.StatusOK || r.bad != "" || r.err != nil {
			t.Fatalf("%s: generate: %v", in.name, &r)
		}
		out = append(out, r.ids...)
	}
	return out
}

// refusing reports whether in refuses as a forgetful registry must: 503
// unavailable with Retry-After on /generate, /health not ok, and the gauge
// of reason at 1. why says what is missing.
func refusing(ctx context.Context, c *http.Client, in *instance, reason string) (ok bool, why string) {
	r := generate(ctx, c, in, 0, 0, genOpts{})
	if !is503(&r) {
		return false, "/generate " + r.String()
	}
	if status, h, err := health(ctx, c, in); err != nil || status == http.StatusOK || h.Status == "ok" {
		return false, "/health " + h.Status
	}
	if v, err := metric(ctx, c, in, forgetful(reason)); err != nil || v != 1 {
		return false, forgetful(reason) + " not 1"
	}
	return true, ""
}

// TestRedisEvictionPolicyChanged: CONFIG SET maxmemory-policy allkeys-lru
// on the running Redis makes the instance refuse within seconds; noeviction
// again makes it serve, without a restart, with every ID it acknowledged
// readable.
func TestRedisEvictionPolicyChanged(t *testing.T) {
	srv, d := standaloneDeployment(t, redisharness.Options{AppendFsyncAlways: true})
	in := d.start("idgen", nil)
	admin := rawClient(t, srv.Addr(), redisOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	before := issueIDs(t, ctx, d.client, in, 200)

	if err := admin.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	why := ""
	took, ok := proc.Poll(10*time.Second, func() bool { ok, w := refusing(ctx, d.client, in, "eviction_policy"); why = w; return ok })
	if !ok {
		t.Fatalf("not refusing 10 s after maxmemory-policy became allkeys-lru: %s", why)
	}
	t.Logf("refusing %v after CONFIG SET maxmemory-policy allkeys-lru", took.Round(time.Millisecond))
	// Reads refuse too: an ID the registry may have lost is not "unknown".
	if status, _, err := getID(ctx, d.client, in, before[0]); err != nil || status != http.StatusServiceUnavailable {
		t.Errorf("GET /ids/%s while the policy evicts: %d %v, want 503", before[0], status, err)
	}

	if err := admin.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	took, ok = proc.Poll(10*time.Second, func() bool {
		r := generate(ctx, d.client, in, 0, 0, genOpts{})
		return r.status == http.StatusOK && r.bad == ""
	})
	if !ok {
		t.Fatal("still refusing 10 s after maxmemory-policy went back to noeviction")
	}
	t.Logf("serving %v after maxmemory-policy went back to noeviction", took.Round(time.Millisecond))
	if status, h, err := health(ctx, d.client, in); err != nil || status != http.StatusOK {
		t.Errorf("/health after noeviction: %d %+v %v", status, h, err)
	}
	if v, err := metric(ctx, d.client, in, forgetful("eviction_policy")); err != nil || v != 0 {
		t.Errorf("%s after noeviction: %v %v, want 0", forgetful("eviction_policy"), v, err)
	}
	after := issueIDs(t, ctx, d.client, in, 200)
	for _, id := range append(before[:5:5], after[:5]...) {
		if status, _, err := getID(ctx, d.client, in, id); err != nil || status != http.StatusOK {
			t.Errorf("GET /ids/%s: %d %v", id, status, err)
		}
	}
	checkRegistered(t, admin, append(before, after...), "IDs answered 200")
}

// TestRedisRestartedEmpty: a Redis without persistence (allowed with
// --dev) is killed and restarted empty. From then on no acknowledged ID is
// answered 404 as if it were unknown: /generate and GET /ids/{id} answer
// 503 and /health is not ok, and that lasts. `idgen registry reset-epoch
// --yes` does not revive the instance that saw the loss; a restarted one
// serves, and hands out no ID twice.
func TestRedisRestartedEmpty(t *testing.T) {
	srv, d := standaloneDeployment(t, redisharness.Options{})
	in := d.start("idgen-a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	acked := issueIDs(t, ctx, d.client, in, 500)

	// Readers of acknowledged IDs across the restart: any 404 is a lie.
	probeCtx, stopProbes := context.WithCancel(ctx)
	var (
		mu       sync.Mutex
		statuses = map[int]int{}
		wg       sync.WaitGroup
	)
	for w := range 2 {
		wg.Go(func() {
			for i := w; probeCtx.Err() == nil; i += 2 {
				status, _, err := getID(probeCtx, d.client, in, acked[i%len(acked)])
				if err != nil {
					continue
				}
				mu.Lock()
				statuses[status]++
				mu.Unlock()
			}
		})
	}
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	err := srv.Restart(rctx)
	rcancel()
	if err != nil {
		stopProbes()
		wg.Wait()
		t.Fatal(err)
	}
	tUp := time.Now()
	why := ""
	took, ok := proc.Poll(15*time.Second, func() bool { ok, w := refusing(ctx, d.client, in, "epoch_missing"); why = w; return ok })
	if !ok {
		stopProbes()
		wg.Wait()
		t.Fatalf("not refusing 15 s after Redis came back empty: %s; GET /ids/{acknowledged} meanwhile: %v", why, statuses)
	}
	t.Logf("refusing %v after Redis came back empty", took.Round(time.Millisecond))
	// It stays so: every call for a few seconds.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		if ok, why := refusing(ctx, d.client, in, "epoch_missing"); !ok {
			t.Errorf("stopped refusing %v after Redis came back empty: %s", time.Since(tUp).Round(time.Millisecond), why)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopProbes()
	wg.Wait()
	t.Logf("GET /ids/{acknowledged} across the restart: %v", statuses)
	if statuses[http.StatusNotFound] > 0 {
		t.Errorf("%d GET /ids/{acknowledged} answered 404 after Redis lost them; want 503", statuses[http.StatusNotFound])
	}
	for status, n := range statuses {
		if status != http.StatusOK && status != http.StatusServiceUnavailable && status != http.StatusNotFound {
			t.Errorf("%d GET /ids/{acknowledged} answered %d", n, status)
		}
	}
	// A new instance on the emptied Redis refuses too (the epoch is marked
	// lost), rather than starting a new epoch over it.
	if code, stderr := d.runToExit("idgen-new-before-reset", nil, 20*time.Second); code == 0 {
		t.Errorf("a new instance on the emptied Redis exited 0")
	} else {
		t.Logf("a new instance before the reset: exit %d: %s", code, lastLine(stderr))
	}

	t.Run("reset-epoch", func(t *testing.T) {
		p, err := proc.Start(idgenBin, proc.Options{Args: []string{"registry", "reset-epoch", "--yes", "--redis-addr", srv.Addr()}, DropEnv: []string{"IDGEN_"}})
		if err != nil {
			t.Fatal(err)
		}
		code, err := p.Wait(30 * time.Second)
		if err != nil {
			_ = p.Kill()
			t.Fatalf("reset-epoch: %v", err)
		}
		if code != 0 || !strings.Contains(p.Stdout(), "epoch") {
			t.Fatalf("reset-epoch: exit %d, stdout %q, stderr %q", code, p.Stdout(), p.Stderr())
		}
		// The instance that saw the loss keeps refusing until restarted.
		if ok, why := refusing(ctx, d.client, in, "epoch_missing"); !ok {
			t.Errorf("the instance that saw the loss serves after reset-epoch without a restart: %s", why)
		}
		in.stop(t)
		in2 := d.start("idgen-b", nil)
		after := issueIDs(t, ctx, d.client, in2, 500)
		for _, d := range idledger.New[struct{}](len(acked)+len(after)).Add(struct{}{}, append(acked, after...)...) {
			t.Errorf("%s: (shard, counter) handed out twice", d.ID)
		}
		if status, _, err := getID(ctx, d.client, in2, after[0]); err != nil || status != http.StatusOK {
			t.Errorf("GET /ids/%s after the reset: %d %v", after[0], status, err)
		}
	})
}

// TestRedisWithoutPersistenceRefused: `idgen serve` without --dev refuses a
// Redis that has neither an append-only file nor save points, in one line.
func TestRedisWithoutPersistenceRefused(t *testing.T) {
	_, d := standaloneDeployment(t, redisharness.Options{})
	secret := filepath.Join(t.TempDir(), "jwt.secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("s3cret-", 8)), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, err := proc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	args := d.args(addr, t.TempDir(), []string{"--jwt-hs256-secret-file", secret, "--log-level", "error"})
	args = append(args[:1:1], args[2:]...) // without --dev
	if args[1] != "--listen" {
		t.Fatalf("unexpected command line %q", args)
	}
	p, err := proc.Start(idgenBin, proc.Options{Args: args, DropEnv: []string{"IDGEN_"}})
	if err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait(30 * time.Second)
	if err != nil {
		_ = p.Kill()
		t.Fatalf("idgen serve without --dev on a Redis without persistence: still running after 30 s: %v\n%s", err, idgenproc.Excerpt(p.Stderr(), 20, 20))
	}
	stderr := strings.TrimSpace(p.Stderr())
	t.Logf("exit %d: %s", code, stderr)
	// The log may say what the registry saw (JSON lines); the refusal is
	// the one line of text, last.
	var plain []string
	for _, l := range strings.Split(stderr, "\n") {
		if !strings.HasPrefix(l, "{") {
			plain = append(plain, l)
		}
	}
	if code == 0 || len(plain) != 1 || plain[0] != lastLine(stderr) || !strings.Contains(plain[0], "persistence") {
		t.Errorf("exit %d with %d lines of text %q; want non-zero and one last line naming the missing persistence", code, len(plain), plain)
	}
	if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") {
		t.Errorf("stderr holds a panic or a goroutine dump")
	}
}
