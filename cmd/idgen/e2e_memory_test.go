package main

// End-to-end test of memory exhaustion: `idgen serve` in a memory cgroup
// with a hard limit, without GOMEMLIMIT, while more connections than it
// admits each hold a request body of the largest size unfinished.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/cgroup"
	"github.com/idgen/idgen/harness/proc"
)

// startLimits is the "resource limits" line idgen serve logs at start.
type startLimits struct {
	MemoryLimit int64  `json:"memory_limit_bytes"`
	Source      string `json:"memory_limit_source"`
	MaxConns    int64  `json:"max_conns"`
}

func resourceLimits(t *testing.T, stderr string) startLimits {
	t.Helper()
	for _, line := range strings.Split(stderr, "\n") {
		var l struct {
			Msg string `json:"msg"`
			startLimits
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "resource limits" {
			return l.startLimits
		}
	}
	t.Fatal("idgen serve logged no \"resource limits\" line")
	return startLimits{}
}

// TestMemoryLimit: in a 96 MiB cgroup, idgen serve sets its Go memory
// limit to 90% of the cgroup's and admits as many connections as half of
// that holds at 64 KiB (the largest body) each. More connections than that
// then each send the head of a request with a 64 KiB body and all of the
// body but its last byte, so every admitted connection holds a full body
// buffer: those over the bound are answered 503 with Retry-After at once,
// a fresh request meanwhile gets 503 with Retry-After, a connection
// admitted before still gets 200 with unique IDs, and the kernel's OOM
// killer ends nothing. Closing the held connections brings 200 back on
// fresh connections without a restart, and every ID issued is still there.
func TestMemoryLimit(t *testing.T) {
	const (
		limit    = 96 << 20
		bodySize = 64 << 10 // the service's largest body
		extra    = 200      // connections beyond the bound
	)
	cg := cgroup.NewMemory(t, limit)
	keep := proc.NewClient(1, 10*time.Second)
	defer keep.CloseIdleConnections()
	p, a := startWrapped(t, keep, "a 96 MiB memory cgroup", func(bin string, args []string) (string, []string) {
		return cg.Command(bin, args...)
	})

	lim := resourceLimits(t, p.Stderr())
	limitBytes := int64(limit)
	wantMem := int64(float64(limitBytes) * 0.9)
	if lim.MemoryLimit != wantMem || !strings.HasSuffix(lim.Source, "/"+cg.LimitFile()) {
		t.Fatalf("Go memory limit %d from %q, want %d from the cgroup's %s", lim.MemoryLimit, lim.Source, wantMem, cg.LimitFile())
	}
	if want := wantMem / 2 / bodySize; lim.MaxConns != want {
		t.Fatalf("max_conns %d, want %d (half the memory limit at 64 KiB a connection)", lim.MaxConns, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	before, code, err := a.generate(ctx, `{"count":100}`)
	if err != nil || code != 200 {
		t.Fatalf("generate before the pressure: %d %v", code, err)
	}

	// Every connection sends its head and waits a moment for an answer:
	// one over the bound gets the 503 at once; an admitted one gets none
	// and then sends all of its body but the last byte.
	host := strings.TrimPrefix(a.base, "http://")
	head := fmt.Sprintf("POST /generate HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", host, bodySize)
	body := bytes.Repeat([]byte(" "), bodySize-1)
	var (
		mu                       sync.Mutex
		held                     []net.Conn
		refused, noRetry, failed int
		other                    []string
	)
	var wg sync.WaitGroup
	for range int(lim.MaxConns) + extra {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", host, 5*time.Second)
			if err != nil {
				mu.Lock()
				failed++
				mu.Unlock()
				return
			}
			status, retryAfter, answered := holdRequest(c, head, body)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case !answered:
				held = append(held, c)
				return
			case status == "":
				failed++
			case status == "503":
				refused++
				if retryAfter == "" {
					noRetry++
				}
			default:
				other = append(other, status)
			}
			c.Close()
		})
	}
	wg.Wait()
	closeHeld := func() {
		for _, c := range held {
			c.Close()
		}
		held = nil
	}
	defer closeHeld()
	t.Logf("%d connections hold a 64 KiB body each, %d answered 503 at once, %d failed (bound %d)", len(held), refused, failed, lim.MaxConns)
	if len(other) > 0 {
		t.Errorf("connections over the bound answered %v; want only 503", other)
	}
	if noRetry > 0 {
		t.Errorf("%d answers 503 without Retry-After", noRetry)
	}
	if refused < extra/2 {
		t.Errorf("%d connections refused with 503 of %d beyond the bound", refused, extra)
	}

	// Under the pressure: a fresh connection is refused with 503 (read off
	// the wire: the refusal may come before the request is written, which
	// net/http's client reports as an error); the connection admitted
	// before still issues.
	if status, retryAfter, err := rawRequest(host, "POST /generate HTTP/1.1\r\nHost: "+host+
		"\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"); err != nil || status != 503 || retryAfter == "" {
		t.Errorf("a fresh request under the pressure: %d %v (Retry-After %q), want 503 with Retry-After", status, err, retryAfter)
	}
	during, code, err := a.generate(ctx, `{"count":100}`)
	if err != nil || code != 200 {
		t.Errorf("generate on the connection admitted before the pressure: %d %v, want 200", code, err)
	}
	if heap, err := metricValue(ctx, a, "go_memstats_heap_inuse_bytes"); err == nil {
		t.Logf("heap in use under the pressure: %.1f MiB of a %.1f MiB Go memory limit", heap/(1<<20), float64(lim.MemoryLimit)/(1<<20))
	}
	if p.Exited() {
		code, _ := p.Wait(time.Second)
		t.Fatalf("idgen serve exited (code %d) under the memory pressure", code)
	}

	closeHeld()
	fresh := api{c: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}, base: a.base}
	t0 := time.Now()
	var after []string
	for {
		got, code, err := fresh.generate(ctx, `{"count":100}`)
		if err == nil && code == 200 {
			after = got
			break
		}
		if time.Since(t0) > 10*time.Second {
			t.Fatalf("still %d %v 10 s after the held connections closed", code, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("200 on a fresh connection %v after the held connections closed", time.Since(t0).Round(time.Millisecond))
	checkUnique(t, before, during, after)
	for _, id := range append(append(before[:3:3], during[:min(3, len(during))]...), after[:3]...) {
		if _, code, err := a.get(ctx, id); err != nil || code != 200 {
			t.Errorf("GET /ids/%s after the pressure: %d %v", id, code, err)
		}
	}
	if n, err := cg.OOMKills(); err != nil || n != 0 {
		t.Errorf("the kernel OOM-killed %d processes in the cgroup (%v)", n, err)
	}
	if peak, err := cg.Peak(); err == nil {
		t.Logf("cgroup memory peak %.1f MiB of %d MiB", float64(peak)/(1<<20), limit>>20)
	}
	if out := p.Stderr(); strings.Contains(out, "panic:") || strings.Contains(out, "goroutine ") {
		t.Errorf("the log holds a panic or a goroutine dump")
	}
	keep.CloseIdleConnections()
	if code, err := p.Terminate(20 * time.Second); err != nil || code != 0 {
		t.Errorf("SIGTERM: exit %d %v, want 0", code, err)
	}
}

// holdRequest sends head on c and waits up to a second for an answer. An
// answer (a refusal) returns its status and Retry-After; without one, the
// body is sent and the request left unfinished (answered false).
func holdRequest(c net.Conn, head string, body []byte) (status, retryAfter string, answered bool) {
	if _, err := c.Write([]byte(head)); err != nil {
		return "", "", true
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		resp.Body.Close()
		return fmt.Sprint(resp.StatusCode), resp.Header.Get("Retry-After"), true
	}
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		return "", "", true
	}
	_ = c.SetReadDeadline(time.Time{})
	if _, err := c.Write(body); err != nil {
		return "", "", true
	}
	return "", "", false
}

// rawRequest writes req on a new connection to host and reads the answer's
// status and Retry-After.
func rawRequest(host, req string) (int, string, error) {
	c, err := net.DialTimeout("tcp", host, 5*time.Second)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	// A refused connection may be closed before all of req is written;
	// its answer is read all the same.
	_, werr := c.Write([]byte(req))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, "", errors.Join(werr, err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After"), nil
}
