package client_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/idgen/idgen/client"
	"github.com/idgen/idgen/harness/proc"
)

// TestLostAnswerRetried: a connection that fails after the server did the
// request (the proxy drops its answer) is retried, and the retry answers
// what the first attempt did instead of doing it again: the same IDs,
// issued once (idgen_ids_issued_total), and transitions stored once.
func TestLostAnswerRetried(t *testing.T) {
	in := startIdgen(t, serveOpts{})
	direct := newClient(t, client.Config{Endpoints: []string{in.URL}})
	ctx := testContext(t)

	// through returns a client whose first connection loses its answer.
	through := func(t *testing.T) (*client.Client, *dropProxy) {
		p := newDropProxy(t, in.addr, 1)
		return newClient(t, client.Config{Endpoints: []string{p.URL()}}), p
	}
	pending := func(t *testing.T) string {
		g, err := direct.Generate(ctx, client.GenerateRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return g.ID
	}

	t.Run("generate", func(t *testing.T) {
		c, p := through(t)
		before := in.issued()
		g, err := c.Generate(ctx, client.GenerateRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if !g.Replayed || p.Conns() != 2 {
			t.Fatalf("Generate = %+v over %d connections; want a replay on the second", g, p.Conns())
		}
		if n := in.issued() - before; n != 1 {
			t.Fatalf("the server issued %d IDs, want 1", n)
		}
		if r, err := direct.Get(ctx, g.ID); err != nil || r.State != client.StatePending {
			t.Fatalf("Get = %+v, %v", r, err)
		}
	})
	t.Run("generate a batch", func(t *testing.T) {
		c, p := through(t)
		before := in.issued()
		b, err := c.GenerateN(ctx, 3, client.GenerateRequest{Metadata: map[string]int{"n": 3}})
		if err != nil {
			t.Fatal(err)
		}
		if !b.Replayed || len(b.IDs) != 3 || p.Conns() != 2 {
			t.Fatalf("GenerateN = %+v over %d connections", b, p.Conns())
		}
		if n := in.issued() - before; n != 3 {
			t.Fatalf("the server issued %d IDs, want 3", n)
		}
	})
	t.Run("commit", func(t *testing.T) {
		id := pending(t)
		c, p := through(t)
		tr, err := c.Commit(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if tr.State != client.StateCommitted || tr.Outcome != client.OutcomeReplayed || p.Conns() != 2 {
			t.Fatalf("Commit = %+v over %d connections; want replayed on the second", tr, p.Conns())
		}
		if r, err := direct.Get(ctx, id); err != nil || len(r.History) != 2 {
			t.Fatalf("Get = %+v, %v; want pending then committed, once", r, err)
		}
	})
	t.Run("compensate", func(t *testing.T) {
		id := pending(t)
		c, p := through(t)
		tr, err := c.Compensate(ctx, id, "lost answer")
		if err != nil {
			t.Fatal(err)
		}
		if tr.State != client.StateCompensated || tr.Outcome != client.OutcomeReplayed || tr.Reason != "lost answer" || p.Conns() != 2 {
			t.Fatalf("Compensate = %+v over %d connections; want replayed on the second", tr, p.Conns())
		}
		if r, err := direct.Get(ctx, id); err != nil || len(r.History) != 2 {
			t.Fatalf("Get = %+v, %v; want pending then compensated, once", r, err)
		}
	})
	t.Run("no retries: the lost answer is the caller's", func(t *testing.T) {
		p := newDropProxy(t, in.addr, 1)
		c := newClient(t, client.Config{Endpoints: []string{p.URL()}, Retry: client.RetryPolicy{MaxAttempts: 1}})
		before := in.issued()
		_, err := c.Generate(ctx, client.GenerateRequest{})
		var e *client.Error
		if err == nil || errors.As(err, &e) {
			t.Fatalf("Generate = %v, want the connection error", err)
		}
		// The check above can fail: the server did issue the ID.
		if n := in.issued() - before; n != 1 {
			t.Fatalf("the server issued %d IDs, want 1", n)
		}
	})
}

// TestRetryAfter503: a 503 with Retry-After: 1 is retried after a second,
// not sooner, with the same Idempotency-Key; a 429 of the server's own rate
// limit likewise.
func TestRetryAfter503(t *testing.T) {
	in := startIdgen(t, serveOpts{})
	ctx := testContext(t)
	f := newFront(t, in.URL, func(n int, w http.ResponseWriter, r *http.Request) bool {
		if n == 1 {
			unavailable(w, "1")
			return true
		}
		return false
	})
	c := newClient(t, client.Config{Endpoints: []string{f.URL}})
	t0 := time.Now()
	g, err := c.Generate(ctx, client.GenerateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	n, keys := f.Requests()
	if n != 2 || keys[0] == "" || keys[0] != keys[1] || keys[0] != g.IdempotencyKey {
		t.Fatalf("%d requests with keys %q; want 2 with the answer's key %q", n, keys, g.IdempotencyKey)
	}
	if took < time.Second {
		t.Fatalf("the retry came after %v, before Retry-After: 1", took)
	}
	if g.Replayed {
		t.Fatal("the first attempt never reached the server, yet the answer is a replay")
	}
}

func TestRateLimited(t *testing.T) {
	in := startIdgen(t, serveOpts{args: []string{"--rate-limit", "1", "--rate-burst", "1"}})
	ctx := testContext(t)
	once := newClient(t, client.Config{Endpoints: []string{in.URL}, Retry: client.RetryPolicy{MaxAttempts: 1}})
	if _, err := once.Generate(ctx, client.GenerateRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err := once.Generate(ctx, client.GenerateRequest{})
	var e *client.Error
	if !errors.Is(err, client.ErrRateLimited) || !errors.As(err, &e) || e.Status != 429 || e.RetryAfter < time.Second {
		t.Fatalf("second Generate within the second = %v, want 429 rate_limited with Retry-After", err)
	}

	c := newClient(t, client.Config{Endpoints: []string{in.URL}})
	t0 := time.Now()
	if _, err := c.Generate(ctx, client.GenerateRequest{}); err != nil {
		t.Fatalf("Generate with retries = %v", err)
	}
	if took := time.Since(t0); took < e.RetryAfter {
		t.Fatalf("Generate took %v, less than the Retry-After %v", took, e.RetryAfter)
	}
}

// TestDeadline: a call never outlives its context, whether the server
// hangs or asks for a wait longer than the time left, and a call gives up
// after MaxAttempts.
func TestDeadline(t *testing.T) {
	t.Run("Retry-After past the deadline", func(t *testing.T) {
		f := newFront(t, "", func(_ int, w http.ResponseWriter, _ *http.Request) bool { unavailable(w, "5"); return true })
		c := newClient(t, client.Config{Endpoints: []string{f.URL}})
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		t0 := time.Now()
		_, err := c.Generate(ctx, client.GenerateRequest{})
		var e *client.Error
		if !errors.Is(err, client.ErrUnavailable) || !errors.As(err, &e) || e.RetryAfter != 5*time.Second || e.RequestID != "front-1" {
			t.Fatalf("Generate = %v, want the 503 with Retry-After 5s", err)
		}
		if took := time.Since(t0); took > time.Second {
			t.Fatalf("Generate took %v: it waited for a retry it could not make", took)
		}
		if n, _ := f.Requests(); n != 1 {
			t.Fatalf("%d requests, want 1", n)
		}
	})
	t.Run("hung server", func(t *testing.T) {
		f := newFront(t, "", func(_ int, w http.ResponseWriter, r *http.Request) bool { hang(w, r); return true })
		c := newClient(t, client.Config{Endpoints: []string{f.URL}})
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		t0 := time.Now()
		_, err := c.Get(ctx, "01890a5d-ac96-8abc-9def-0123456789ab")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Get = %v, want context.DeadlineExceeded", err)
		}
		if took := time.Since(t0); took > 2*time.Second {
			t.Fatalf("Get took %v past a 300ms deadline", took)
		}
	})
	t.Run("attempts run out", func(t *testing.T) {
		// A 503 without Retry-After, as a load balancer may send: not the
		// API's (it always sends one), so unchecked.
		f := newFront(t, "", func(_ int, w http.ResponseWriter, _ *http.Request) bool { unavailable(w, ""); return true })
		c := newUncheckedClient(t, client.Config{Endpoints: []string{f.URL}, Retry: client.RetryPolicy{MaxAttempts: 3, BaseBackoff: time.Millisecond}})
		_, err := c.Commit(testContext(t), "01890a5d-ac96-8abc-9def-0123456789ab")
		if !errors.Is(err, client.ErrUnavailable) || !strings.Contains(err.Error(), "3 attempts") {
			t.Fatalf("Commit = %v, want unavailable after 3 attempts", err)
		}
		if n, _ := f.Requests(); n != 3 {
			t.Fatalf("%d requests, want 3", n)
		}
	})
	t.Run("no retry of a 500 or of a page that is not the API's", func(t *testing.T) {
		f := newFront(t, "", func(n int, w http.ResponseWriter, _ *http.Request) bool {
			http.Error(w, "<html>bad gateway</html>", http.StatusBadGateway)
			return true
		})
		c := newUncheckedClient(t, client.Config{Endpoints: []string{f.URL}})
		_, err := c.Generate(testContext(t), client.GenerateRequest{})
		var e *client.Error
		if !errors.Is(err, client.ErrInternal) || !errors.As(err, &e) || e.Status != 502 || !strings.Contains(e.Message, "bad gateway") {
			t.Fatalf("Generate = %v, want the 502 as internal", err)
		}
		if n, _ := f.Requests(); n != 1 {
			t.Fatalf("%d requests, want 1", n)
		}
	})
	t.Run("every endpoint refuses connections", func(t *testing.T) {
		a, b := proc.DeadURL(t), proc.DeadURL(t)
		c := newClient(t, client.Config{Endpoints: []string{a, b}, Retry: client.RetryPolicy{MaxAttempts: 3, BaseBackoff: time.Millisecond}})
		_, err := c.Generate(testContext(t), client.GenerateRequest{})
		if !errors.Is(err, syscall.ECONNREFUSED) || !strings.Contains(err.Error(), "3 attempts") {
			t.Fatalf("Generate = %v, want connection refused after 3 attempts", err)
		}
	})
}
