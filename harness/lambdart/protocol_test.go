package lambdart_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/lambdart"
)

// rawRuntime speaks the Runtime API by hand, for the cases aws-lambda-go
// never produces.
type rawRuntime struct {
	t      *testing.T
	base   string
	client *http.Client
}

func newRaw(t *testing.T, s *lambdart.Server) *rawRuntime {
	tr := &http.Transport{Proxy: nil}
	t.Cleanup(tr.CloseIdleConnections)
	return &rawRuntime{t: t, base: "http://" + s.Addr() + "/2018-06-01/runtime", client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

func (r *rawRuntime) do(method, path, body string, header map[string]string) (*http.Response, string) {
	r.t.Helper()
	req, err := http.NewRequest(method, r.base+path, strings.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := r.client.Do(req)
	if err != nil {
		r.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// asyncInvoke starts an Invoke and returns its outcome channel.
type outcome struct {
	res lambdart.Result
	err error
}

func asyncInvoke(ctx context.Context, s *lambdart.Server, payload string, timeout time.Duration) <-chan outcome {
	ch := make(chan outcome, 1)
	go func() {
		res, err := s.Invoke(ctx, []byte(payload), timeout)
		ch <- outcome{res, err}
	}()
	return ch
}

// TestProtocol drives the API with a hand-written runtime: the next
// headers, the answers to bad posts, error types from the header, init
// errors, and abandoned events that are never handed out.
func TestProtocol(t *testing.T) {
	t.Parallel()
	s := lambdart.StartT(t, lambdart.Options{FunctionName: "raw"})
	rt := newRaw(t, s)
	ctx := context.Background()

	// next: the event with its four headers.
	before := time.Now()
	done := asyncInvoke(ctx, s, `{"k":1}`, 2*time.Second)
	res, body := rt.do("GET", "/invocation/next", "", nil)
	id := res.Header.Get("Lambda-Runtime-Aws-Request-Id")
	if res.StatusCode != 200 || body != `{"k":1}` || id == "" {
		t.Fatalf("next: %d %q id %q", res.StatusCode, body, id)
	}
	ms, err := strconv.ParseInt(res.Header.Get("Lambda-Runtime-Deadline-Ms"), 10, 64)
	if d := time.UnixMilli(ms).Sub(before); err != nil || d < 2*time.Second-time.Millisecond || d > 3*time.Second {
		t.Errorf("deadline header %q: %v after the invoke", res.Header.Get("Lambda-Runtime-Deadline-Ms"), d)
	}
	if arn := res.Header.Get("Lambda-Runtime-Invoked-Function-Arn"); arn != s.FunctionARN() {
		t.Errorf("ARN header %q", arn)
	}
	if tr := res.Header.Get("Lambda-Runtime-Trace-Id"); !strings.HasPrefix(tr, "Root=1-") || !strings.Contains(tr, ";Parent=") {
		t.Errorf("trace header %q", tr)
	}

	// Bad posts.
	for _, tc := range []struct {
		name, method, path string
		status             int
	}{
		{"response to an unknown id", "POST", "/invocation/nope/response", 400},
		{"error to an unknown id", "POST", "/invocation/nope/error", 400},
		{"GET a response", "GET", "/invocation/" + id + "/response", 405},
		{"unknown path", "GET", "/invocation/" + id + "/status", 404},
	} {
		if res, body := rt.do(tc.method, tc.path, "{}", nil); res.StatusCode != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, res.StatusCode, body, tc.status)
		}
	}

	// The error type header wins over the document's.
	hdr := map[string]string{"Lambda-Runtime-Function-Error-Type": "Custom.Type"}
	if res, body := rt.do("POST", "/invocation/"+id+"/error", `{"errorMessage":"m","errorType":"Doc.Type"}`, hdr); res.StatusCode != 202 {
		t.Fatalf("error post: %d %s", res.StatusCode, body)
	}
	if o := <-done; o.err != nil || o.res.ErrorType != "Custom.Type" || o.res.ErrorMessage != "m" || o.res.RequestID != id {
		t.Errorf("outcome %+v %v", o.res, o.err)
	}
	if res, _ := rt.do("POST", "/invocation/"+id+"/response", "{}", nil); res.StatusCode != 400 {
		t.Errorf("second answer: %d, want 400", res.StatusCode)
	}

	// An event abandoned by its caller is never handed out.
	gone, cancel := context.WithCancel(ctx)
	abandoned := asyncInvoke(gone, s, `"abandoned"`, time.Second)
	time.Sleep(50 * time.Millisecond)
	cancel()
	if o := <-abandoned; !errors.Is(o.err, context.Canceled) {
		t.Errorf("abandoned invoke: %v", o.err)
	}
	kept := asyncInvoke(ctx, s, `"kept"`, time.Second)
	res, body = rt.do("GET", "/invocation/next", "", nil)
	if body != `"kept"` {
		t.Errorf("next after an abandoned event: %q, want the kept one", body)
	}
	rt.do("POST", "/invocation/"+res.Header.Get("Lambda-Runtime-Aws-Request-Id")+"/response", `"ok"`, nil)
	if o := <-kept; o.err != nil || string(o.res.Payload) != `"ok"` || o.res.Failed() {
		t.Errorf("kept: %+v %v", o.res, o.err)
	}

	// An init error fails the queued events and is kept.
	queued := asyncInvoke(ctx, s, `{}`, time.Second)
	time.Sleep(50 * time.Millisecond)
	if res, body := rt.do("POST", "/init/error", `{"errorMessage":"no config","errorType":"Config.Invalid"}`, nil); res.StatusCode != 202 {
		t.Fatalf("init error: %d %s", res.StatusCode, body)
	}
	if o := <-queued; !errors.Is(o.err, lambdart.ErrInitFailed) || o.res.ErrorType != "Config.Invalid" {
		t.Errorf("queued invoke after init error: %+v %v", o.res, o.err)
	}
	if ie, ok := s.InitError(); !ok || ie.ErrorMessage != "no config" {
		t.Errorf("InitError %+v %v", ie, ok)
	}
}

// TestNextWaitsAndClose: next long-polls until an event comes; Close ends
// a waiting next with 500.
func TestNextWaitsAndClose(t *testing.T) {
	t.Parallel()
	s := lambdart.StartT(t, lambdart.Options{})
	rt := newRaw(t, s)
	got := make(chan int, 1)
	go func() {
		res, err := rt.client.Get(rt.base + "/invocation/next")
		if err != nil {
			got <- -1
			return
		}
		res.Body.Close()
		got <- res.StatusCode
	}()
	select {
	case st := <-got:
		t.Fatalf("next answered %d with no event queued", st)
	case <-time.After(200 * time.Millisecond):
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if st := <-got; st != 500 {
		t.Errorf("waiting next after Close: %d, want 500", st)
	}
}
