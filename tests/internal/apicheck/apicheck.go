// Package apicheck proves that an end-to-end suite's HTTP client checks
// every answer it receives against the API's OpenAPI document
// (api/apitest), not a sample: each suite runs Prove on the constructor
// of its client.
package apicheck

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/idgen/idgen/api/apitest"
)

// okAnswers is how many documented 2xx answers Prove sends before an
// undocumented one: more than any sample a transport could keep.
const okAnswers = 300

// recorder is an apitest.TB that keeps what it is told.
type recorder struct {
	mu   sync.Mutex
	errs []string
}

var _ apitest.TB = (*recorder)(nil)

// Helper does nothing.
func (r *recorder) Helper() {}

// Errorf keeps the message.
func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// Errors returns the messages so far.
func (r *recorder) Errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

// Prove fails t unless Verify passes.
func Prove(t *testing.T, tls bool, newClient func(tb apitest.TB, srv *httptest.Server) *http.Client) {
	t.Helper()
	if err := Verify(tls, newClient); err != nil {
		t.Fatal(err)
	}
}

// Verify sends, through the client newClient makes for a recorder and for
// a test server (HTTPS when tls is set), okAnswers documented answers of
// GET /health/live, then an undocumented 200 of it and an undocumented
// 404; it returns an error unless the client passed every answer on
// unchanged and told the recorder of exactly the two undocumented ones.
func Verify(tls bool, newClient func(tb apitest.TB, srv *httptest.Server) *http.Client) error {
	var bad atomic.Bool // the server breaks the document from now on
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Request-Id", "apicheck-1")
		switch {
		case r.URL.Path != "/health/live":
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":{"code":"gone"}}`) // no such code, no message
		case bad.Load():
			io.WriteString(w, `{"status":"fine"}`) // no such status
		default:
			io.WriteString(w, `{"status":"ok"}`)
		}
	}))
	if tls {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	defer srv.Close()
	rec := &recorder{}
	c := newClient(rec, srv)
	defer c.CloseIdleConnections()
	get := func(path, want string) error {
		res, err := c.Get(srv.URL + path)
		if err != nil {
			return fmt.Errorf("apicheck: GET %s: %w", path, err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			return fmt.Errorf("apicheck: GET %s: %w", path, err)
		}
		if string(b) != want {
			return fmt.Errorf("apicheck: GET %s through the client: body %q, want %q", path, b, want)
		}
		return nil
	}
	for range okAnswers {
		if err := get("/health/live", `{"status":"ok"}`); err != nil {
			return err
		}
	}
	if errs := rec.Errors(); len(errs) != 0 {
		return fmt.Errorf("apicheck: documented answers reported as violations: %q", errs)
	}
	bad.Store(true)
	if err := get("/health/live", `{"status":"fine"}`); err != nil {
		return err
	}
	if err := get("/nowhere", `{"error":{"code":"gone"}}`); err != nil {
		return err
	}
	errs := rec.Errors()
	if len(errs) != 2 || !strings.Contains(errs[0], "GET /health/live answered 200") || !strings.Contains(errs[1], "GET /nowhere answered 404") {
		return fmt.Errorf("apicheck: after %d documented answers, an undocumented 200 and 404: the client reported %q, want exactly those two", okAnswers, errs)
	}
	return nil
}
