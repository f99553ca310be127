package main

// End-to-end tests of a full disk, on real tmpfs mounts: the data directory
// fills and frees under load (both engines), `idgen serve` starts on a full
// disk, the audit volume fills and frees. The service answers 200 or 503
// with Retry-After, never 500 or a dropped connection, reports itself not
// ready while it refuses, resumes by itself, and every ID it acknowledged
// stays readable, also after a restart.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/harness/tmpfs"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/saga/sagatest"
)

// metricValue returns the sample name (with its labels, if any, as
// written: `idgen_registry_forgetful{reason="evicted"}`) of /metrics.
func metricValue(ctx context.Context, a api, name string) (float64, error) {
	code, b, err := a.do(ctx, http.MethodGet, "/metrics", "")
	if err != nil {
		return 0, err
	}
	if code != 200 {
		return 0, fmt.Errorf("/metrics answered %d", code)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("no sample %s in /metrics", name)
}

// reply is one answer of the disk load.
type reply struct {
	sent  time.Time
	code  int // 0: a transport error
	retry string
	err   error
	ids   []string
}

// diskLoad issues /generate from a few goroutines, bounded in requests and
// time, and keeps every answer.
type diskLoad struct {
	l       *proc.Load
	mu      sync.Mutex
	replies []reply
}

func startDiskLoad(ctx context.Context, a api, workers, maxRequests int) *diskLoad {
	d := &diskLoad{}
	var sent sync.Mutex
	n := 0
	d.l = proc.StartLoad(ctx, workers, func(ctx context.Context, w int) bool {
		sent.Lock()
		if n++; n > maxRequests {
			sent.Unlock()
			return false
		}
		sent.Unlock()
		body := "{}"
		if w%2 == 1 {
			body = `{"count":10}`
		}
		r := reply{sent: time.Now()}
		code, ans, err := a.post(ctx, "/generate", body)
		if err != nil && ctx.Err() != nil {
			return false // stopped by the test
		}
		r.code, r.err, r.retry = code, err, ans.retryAfter
		if err == nil && r.code == 200 {
			r.ids, r.err = parseIDs(ans.body)
		}
		d.mu.Lock()
		d.replies = append(d.replies, r)
		d.mu.Unlock()
		if r.code != 200 {
			// A refusal: do not spin.
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
		return true
	})
	return d
}

// count returns how many answers with code arrived for requests sent after
// since.
func (d *diskLoad) count(code int, since time.Time) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, r := range d.replies {
		if r.code == code && r.err == nil && !r.sent.Before(since) {
			n++
		}
	}
	return n
}

func (d *diskLoad) snapshot() []reply {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]reply(nil), d.replies...)
}

// TestDiskFillsAndFrees: the data directory's tmpfs fills under load until
// the guard refuses, then is freed; both engines.
func TestDiskFillsAndFrees(t *testing.T) {
	for _, engine := range []string{"pebble", "bbolt"} {
		t.Run(engine, func(t *testing.T) { diskFillsAndFrees(t, engine) })
	}
}

func diskFillsAndFrees(t *testing.T, engine string) {
	const minFree = 8 << 20
	mnt := tmpfs.Mount(t, 64<<20)
	dataDir := filepath.Join(mnt, "data")
	s := startServer(t, serverOpts{args: []string{"--data-dir", dataDir, "--store-engine", engine,
		"--disk-min-free-bytes", strconv.Itoa(minFree), "--disk-ballast-bytes", strconv.Itoa(4 << 20),
		"--audit-log", filepath.Join(t.TempDir(), "audit.log")}})
	p := s.p
	a := s.api()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	ld := startDiskLoad(ctx, a, 4, 200000)
	defer ld.l.Stop()
	if _, ok := proc.Poll(10*time.Second, func() bool { return ld.count(200, time.Time{}) >= 50 }); !ok {
		t.Fatalf("no 50 answers 200 within 10 s before the disk filled")
	}
	// Fill to 2 MiB under the threshold: the guard refuses at its next
	// measure, well before the kernel answers ENOSPC.
	tFill := time.Now()
	filler := tmpfs.Fill(t, mnt, minFree-2<<20)
	refusing := func() bool { v, err := metricValue(ctx, a, "idgen_disk_guard_refusing"); return err == nil && v == 1 }
	if _, ok := proc.Poll(10*time.Second, refusing); !ok {
		t.Fatalf("idgen_disk_guard_refusing not 1 within 10 s of the filesystem dropping to %d bytes free", tmpfs.Free(t, mnt))
	}
	tRefusing := time.Now()
	t.Logf("%s: refusing %v after the fill began (%d bytes free)", engine, tRefusing.Sub(tFill).Round(time.Millisecond), tmpfs.Free(t, mnt))
	if _, ok := proc.Poll(10*time.Second, func() bool { return ld.count(503, tRefusing) >= 20 }); !ok {
		t.Errorf("fewer than 20 answers 503 within 10 s while the guard refuses")
	}
	for _, path := range []string{"/health/ready", "/health"} {
		if code, body, err := a.do(ctx, http.MethodGet, path, ""); err != nil || code == 200 {
			t.Errorf("%s while the guard refuses: %d %s %v; want not ok", path, code, body, err)
		}
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	tFreed := time.Now()
	d, ok := proc.Poll(15*time.Second, func() bool { return ld.count(200, tFreed) >= 20 })
	if !ok {
		t.Fatalf("200s did not resume within 15 s of freeing the disk (%d bytes free)", tmpfs.Free(t, mnt))
	}
	t.Logf("%s: 200s resumed %v after the filler was deleted", engine, d.Round(time.Millisecond))
	ld.l.Stop()
	if code, _, err := a.do(ctx, http.MethodGet, "/health/ready", ""); err != nil || code != 200 {
		t.Errorf("/health/ready after the disk was freed: %d %v", code, err)
	}
	if v, err := metricValue(ctx, a, "idgen_disk_guard_refusing"); err != nil || v != 0 {
		t.Errorf("idgen_disk_guard_refusing after the disk was freed: %v %v", v, err)
	}

	// The answers: 200 or 503 with Retry-After, nothing else; no 200 for a
	// request sent while the guard refused and the filler was there.
	var acked [][]string
	stats := map[string]int{}
	for _, r := range ld.snapshot() {
		switch {
		case r.err != nil:
			stats["transport error"]++
			if stats["transport error"] <= 3 {
				t.Errorf("request sent %v after the fill: %v", r.sent.Sub(tFill).Round(time.Millisecond), r.err)
			}
		case r.code == 200:
			stats["200"]++
			acked = append(acked, r.ids)
			if r.sent.After(tRefusing) && r.sent.Before(tFreed) {
				t.Errorf("a request sent while the guard refused was answered 200")
			}
		case r.code == 503 && r.retry != "":
			stats["503"]++
		default:
			stats[fmt.Sprintf("%d retry-after %q", r.code, r.retry)]++
		}
	}
	t.Logf("%s: answers %v", engine, stats)
	for k, n := range stats {
		if k != "200" && k != "503" {
			t.Errorf("%d answers %s; want only 200 or 503 with Retry-After", n, k)
		}
	}
	if p.Exited() {
		t.Fatal("idgen serve exited while the disk was full")
	}
	checkUnique(t, acked...)
	ids := sample(acked, 300, 2)
	checkReadable := func(when string) {
		t.Helper()
		bad := 0
		for _, id := range ids {
			if _, code, err := a.get(ctx, id); err != nil || code != 200 {
				if bad++; bad <= 5 {
					t.Errorf("GET /ids/%s %s: %d %v", id, when, code, err)
				}
			}
		}
		if bad > 0 {
			t.Errorf("%d of %d acknowledged IDs not readable %s", bad, len(ids), when)
		}
	}
	checkReadable("after the disk was freed")
	if code, _ := s.stop(20 * time.Second); code != 0 {
		t.Errorf("SIGTERM: exit %d, want 0", code)
	}
	s.restart()
	a = s.api()
	checkReadable("after a restart")
	checkUnique(t, append(acked, issue(t, s, 1000))...)
	if out := strings.Join(s.runs, "") + s.p.Stderr(); strings.Contains(out, "panic:") || strings.Contains(out, "goroutine ") {
		t.Error("the log holds a panic or a goroutine dump")
	}
}

// TestStartOnFullDisk: `idgen serve` on a data directory whose filesystem
// is full (or below the threshold) exits non-zero at once with one line
// naming the directory and the free and needed bytes.
func TestStartOnFullDisk(t *testing.T) {
	this, _ := engines()
	for _, tc := range []struct {
		name  string
		leave int64 // bytes left free; 0: full
		fresh bool  // a new data directory, else one that served before
	}{
		{"full, a data directory that served before", 0, false},
		{"below the threshold, a data directory that served before", 2 << 20, false},
		{"full, a new data directory", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mnt := tmpfs.Mount(t, 64<<20)
			dataDir := filepath.Join(mnt, "data")
			guard := []string{"--data-dir", dataDir, "--store-engine", this, "--disk-min-free-bytes", strconv.Itoa(8 << 20), "--disk-ballast-bytes", strconv.Itoa(4 << 20)}
			if !tc.fresh {
				s := startServer(t, serverOpts{args: guard})
				issue(t, s, 100)
				if code, _ := s.stop(20 * time.Second); code != 0 {
					t.Fatalf("stop: exit %d", code)
				}
			}
			tmpfs.Fill(t, mnt, tc.leave)
			addr, err := proc.FreeAddr()
			if err != nil {
				t.Fatal(err)
			}
			p, err := proc.Start(idgenBinary(t), proc.Options{Args: append([]string{"serve", "--dev", "--listen", addr, "--log-level", "error"}, guard...), DropEnv: []string{"IDGEN_"}})
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			code, err := p.Wait(15 * time.Second)
			if err != nil {
				// It hangs: it must at least answer SIGTERM promptly.
				code, err = p.Terminate(5 * time.Second)
				_ = p.Kill()
				t.Fatalf("still running 15 s after start on a full disk (SIGTERM then: exit %d %v)\nstderr:\n%s", code, err, p.Stderr())
			}
			stderr := p.Stderr()
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			t.Logf("exit %d after %v; stderr: %s", code, time.Since(t0).Round(time.Millisecond), stderr)
			if code == 0 {
				t.Errorf("exit 0 on a full disk")
			}
			if len(lines) != 1 || !strings.Contains(stderr, dataDir) || !strings.Contains(stderr, "free") || !strings.Contains(stderr, "needs") {
				t.Errorf("stderr has %d lines; want one naming %s and the free and needed bytes", len(lines), dataDir)
			}
			if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") {
				t.Errorf("stderr holds a panic or a goroutine dump")
			}
		})
	}
}

// transitionBody is the body of /commit (reason "") or /compensate.
func transitionBody(id, reason string) string {
	m := map[string]string{"id": id}
	if reason != "" {
		m["reason"] = reason
	}
	b, _ := json.Marshal(m)
	return string(b)
}

// TestAuditVolumeFills: the audit log's own 64 KiB tmpfs fills while IDs
// are committed and compensated. The transition whose entry does not fit is
// answered 503 (or 200 while entries still fit); once space returns the
// service resumes by itself, the retry of the refused call is answered 200,
// and every stored commit or compensation has exactly one entry, every line
// whole, and no event but those of the calls.
func TestAuditVolumeFills(t *testing.T) {
	mnt := tmpfs.Mount(t, 64<<10)
	path := filepath.Join(mnt, "audit.log")
	s := startServer(t, serverOpts{args: []string{"--audit-log", path, "--audit-retry-interval", "20ms", "--audit-wait", "20ms"}})
	a := s.api()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ids := issue(t, s, 80)
	for i, tc := range []struct{ path, action, reason string }{
		{"/commit", audit.ActionCommit, ""},
		{"/compensate", audit.ActionCompensate, "declined"},
	} {
		filler := tmpfs.Fill(t, mnt, 0)
		var done []string
		refused := ""
		for _, id := range ids[i*40 : (i+1)*40] {
			code, ans, err := a.post(ctx, tc.path, transitionBody(id, tc.reason))
			if err != nil {
				t.Fatalf("%s on a full audit disk: %v", tc.path, err)
			}
			if code == 200 {
				done = append(done, id)
				continue
			}
			if code != 503 || ans.retryAfter == "" {
				t.Fatalf("%s on a full audit disk: %d %s (Retry-After %q), want 200 or 503 with Retry-After", tc.path, code, ans.body, ans.retryAfter)
			}
			refused = id
			break
		}
		if refused == "" {
			t.Fatalf("%s: 40 entries fit on a full audit disk", tc.path)
		}
		t.Logf("%s: %d entries fit on the full disk before one was refused", tc.path, len(done))
		if _, code, err := a.generate(ctx, "{}"); err != nil || code != 503 {
			t.Errorf("/generate while the audit log cannot be written: %d %v, want 503", code, err)
		}
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		d, ok := proc.Poll(5*time.Second, func() bool { _, code, err := a.generate(ctx, "{}"); return err == nil && code == 200 })
		if !ok {
			t.Fatalf("%s: /generate still refused 5 s after the audit disk was freed", tc.path)
		}
		t.Logf("%s: /generate answered 200 again %v after the audit disk was freed", tc.path, d.Round(time.Millisecond))
		if code, ans, err := a.post(ctx, tc.path, transitionBody(refused, tc.reason)); err != nil || code != 200 {
			t.Fatalf("%s retry of the refused call: %d %s %v, want 200", tc.path, code, ans.body, err)
		}
		entries := sagatest.PerResource(sagatest.AuditLines(t, tc.action, path))
		for _, id := range append(done, refused) {
			if n := entries[id]; n != 1 {
				t.Errorf("%s %s: %d audit entries, want 1 (the refused call: %v)", tc.action, id, n, id == refused)
			}
		}
		if n := len(sagatest.AuditLines(t, audit.ActionAuditResume, path)); n != i+1 {
			t.Errorf("%d %s entries after %d outages", n, audit.ActionAuditResume, i+1)
		}
	}
	// Both transitions still work after the outages.
	more := issue(t, s, 2)
	if st, code, err := a.transition(ctx, "/commit", more[0], ""); err != nil || code != 200 {
		t.Errorf("/commit after the outages: %d %s %v", code, st, err)
	}
	if st, code, err := a.transition(ctx, "/compensate", more[1], "declined"); err != nil || code != 200 {
		t.Errorf("/compensate after the outages: %d %s %v", code, st, err)
	}
	// Every line is a whole entry (AuditEvents fails on a torn one) of one
	// of these actions: the log holds no other event.
	want := map[string]bool{audit.ActionAuditStart: true, audit.ActionServiceStart: true, audit.ActionAuditResume: true, audit.ActionCommit: true, audit.ActionCompensate: true}
	for _, e := range sagatest.AuditEvents(t, func(e audit.Event) bool { return !want[e.Action] }, path) {
		t.Errorf("unrelated audit event: %+v", e)
	}
}
