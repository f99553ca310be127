package client_test

import (
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/client"
	"github.com/idgen/idgen/harness/proc"
)

// TestFailover: with a first endpoint that fails, calls succeed on the
// second, and the failed endpoint is skipped while it cools down: the
// second call never reaches it.
func TestFailover(t *testing.T) {
	live := startIdgen(t, serveOpts{})
	tests := []struct {
		name string
		// bad returns the failing endpoint and, when it can tell, how many
		// requests or connections reached it.
		bad func(t *testing.T) (url string, hits func() int)
	}{
		{"connection refused", func(t *testing.T) (string, func() int) { return proc.DeadURL(t), nil }},
		{"connection reset", func(t *testing.T) (string, func() int) {
			l := newResetListener(t)
			return "http://" + l.ln.Addr().String(), l.Accepted
		}},
		{"503", func(t *testing.T) (string, func() int) {
			f := newFront(t, "", func(_ int, w http.ResponseWriter, _ *http.Request) bool { unavailable(w, "1"); return true })
			return f.URL, func() int { n, _ := f.Requests(); return n }
		}},
		{"hung past the attempt timeout", func(t *testing.T) (string, func() int) {
			f := newFront(t, "", func(_ int, w http.ResponseWriter, r *http.Request) bool { hang(w, r); return true })
			return f.URL, func() int { n, _ := f.Requests(); return n }
		}},
		{"stopped instance", func(t *testing.T) (string, func() int) {
			other := startIdgen(t, serveOpts{})
			other.stop()
			return other.URL, nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad, hits := tt.bad(t)
			c := newClient(t, client.Config{Endpoints: []string{bad, live.URL}, AttemptTimeout: 300 * time.Millisecond})
			ctx := testContext(t)
			for i := range 2 {
				g, err := c.Generate(ctx, client.GenerateRequest{})
				if err != nil {
					t.Fatalf("Generate %d: %v", i+1, err)
				}
				if g.Replayed {
					t.Fatalf("Generate %d: a replay, yet the failing endpoint never reached a server", i+1)
				}
				// The ID lives on the live instance.
				if r, err := c.Get(ctx, g.ID); err != nil || r.State != client.StatePending {
					t.Fatalf("Get = %+v, %v", r, err)
				}
			}
			if hits != nil {
				if n := hits(); n != 1 {
					t.Fatalf("the failing endpoint was reached %d times, want once (then skipped)", n)
				}
			}
		})
	}
}

// resetListener accepts connections and closes them at once.
type resetListener struct {
	ln net.Listener
	wg sync.WaitGroup
	mu sync.Mutex
	n  int
}

func newResetListener(t *testing.T) *resetListener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &resetListener{ln: ln}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.mu.Lock()
			l.n++
			l.mu.Unlock()
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); l.wg.Wait() })
	return l
}

// Accepted is the number of connections accepted so far.
func (l *resetListener) Accepted() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}
