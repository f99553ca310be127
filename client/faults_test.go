package client_test

// Faults the tests put between a client and an instance: a TCP proxy that
// loses an answer after the server made it, and an HTTP front that answers
// for the server (503, a hang) before it lets requests through.

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
)

// dropProxy forwards TCP connections to target. The first Drop connections
// lose their answer: the proxy forwards the request, waits for the first
// byte of the server's answer (so the server has done the request), and
// closes both sides instead of forwarding it.
type dropProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu    sync.Mutex
	drops int
	conns int
	open  map[net.Conn]struct{}
}

func newDropProxy(t *testing.T, target string, drops int) *dropProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dropProxy{ln: ln, target: target, drops: drops, open: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// URL is the proxy's base URL.
func (p *dropProxy) URL() string { return "http://" + p.ln.Addr().String() }

// Conns is the number of connections accepted so far.
func (p *dropProxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns
}

func (p *dropProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.conns++
		drop := p.drops > 0
		if drop {
			p.drops--
		}
		p.open[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(c, drop)
	}
}

func (p *dropProxy) serve(c net.Conn, drop bool) {
	defer p.wg.Done()
	defer p.forget(c)
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	p.track(s)
	defer p.forget(s)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		io.Copy(s, c)
		s.(*net.TCPConn).CloseWrite()
	}()
	if drop {
		var b [1]byte
		s.Read(b[:])
		return
	}
	io.Copy(c, s)
}

func (p *dropProxy) track(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.open[c] = struct{}{}
}

func (p *dropProxy) forget(c net.Conn) {
	c.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.open, c)
}

func (p *dropProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.open {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// front is an HTTP server before an instance: answer decides, per request
// (n counts from 1), whether it answers itself (true) or lets the request
// through to the backend.
type front struct {
	*httptest.Server
	mu   sync.Mutex
	n    int
	keys []string // Idempotency-Key of every request
}

func newFront(t *testing.T, backend string, answer func(n int, w http.ResponseWriter, r *http.Request) bool) *front {
	t.Helper()
	f := &front{}
	var rp *httputil.ReverseProxy
	tr := &http.Transport{}
	if backend != "" {
		u, err := url.Parse(backend)
		if err != nil {
			t.Fatal(err)
		}
		rp = httputil.NewSingleHostReverseProxy(u)
		rp.Transport = tr
	}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.n++
		n := f.n
		f.keys = append(f.keys, r.Header.Get("Idempotency-Key"))
		f.mu.Unlock()
		if answer(n, w, r) {
			return
		}
		if rp == nil {
			http.Error(w, "no backend", http.StatusBadGateway)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		f.Server.Close()
		tr.CloseIdleConnections()
	})
	return f
}

// Requests returns the number of requests so far and their Idempotency-Keys.
func (f *front) Requests() (int, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n, append([]string(nil), f.keys...)
}

// unavailable answers as the API does when it cannot serve: 503, the error
// body, and Retry-After when retryAfter is not empty.
func unavailable(w http.ResponseWriter, retryAfter string) {
	if retryAfter != "" {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Request-ID", "front-1")
	w.WriteHeader(http.StatusServiceUnavailable)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "unavailable", "message": "the front refuses"}})
}

// hang answers nothing until the client gives up. It reads the body
// first: only then does the server notice a connection the client closed.
func hang(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	<-r.Context().Done()
}
