package lambdart_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/lambdart"
	"github.com/idgen/idgen/harness/proc"
)

// echoBin is the testdata/echo bootstrap, built once by TestMain as `make
// lambda` builds the functions.
var echoBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "lambdart-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if echoBin, err = lambdart.Build(ctx, "./testdata/echo", dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return proc.RunMain(m)
}

// echoReply is testdata/echo's answer.
type echoReply struct {
	Data        json.RawMessage   `json:"data"`
	PID         int               `json:"pid"`
	Invocation  int64             `json:"invocation"`
	RequestID   string            `json:"request_id"`
	FunctionARN string            `json:"function_arn"`
	DeadlineMS  int64             `json:"deadline_ms"`
	TraceID     string            `json:"trace_id"`
	Env         map[string]string `json:"env"`
}

// start serves the API and runs the echo bootstrap against it.
func start(t *testing.T, opts lambdart.Options, env ...string) *lambdart.Server {
	t.Helper()
	s := lambdart.StartT(t, opts)
	s.RunBootstrapT(t, echoBin, env...)
	return s
}

func invoke(t *testing.T, s *lambdart.Server, payload string, timeout time.Duration) (lambdart.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return s.Invoke(ctx, []byte(payload), timeout)
}

// echo invokes and decodes a successful answer.
func echo(t *testing.T, s *lambdart.Server, payload string, timeout time.Duration) (echoReply, lambdart.Result) {
	t.Helper()
	res, err := invoke(t, s, payload, timeout)
	if err != nil || res.Failed() {
		t.Fatalf("invoke %s: %v, %+v (%s)", payload, err, res, res.Payload)
	}
	var r echoReply
	if err := json.Unmarshal(res.Payload, &r); err != nil {
		t.Fatalf("payload %s: %v", res.Payload, err)
	}
	if r.RequestID != res.RequestID {
		t.Errorf("handler saw request ID %q, the server sent %q", r.RequestID, res.RequestID)
	}
	return r, res
}

// TestEcho: the event reaches the handler with the request ID, ARN and trace
// ID the server sent, in Lambda's environment and nothing else.
func TestEcho(t *testing.T) {
	t.Parallel()
	s := start(t, lambdart.Options{FunctionName: "echo-fn", Region: "eu-west-1", MemoryMB: 256}, "IDGEN_MODE=lambda")
	r, _ := echo(t, s, `{"data":{"hello":"world","n":[1,2]}}`, 0)
	if string(r.Data) != `{"hello":"world","n":[1,2]}` {
		t.Errorf("data %s", r.Data)
	}
	if r.FunctionARN != s.FunctionARN() || r.FunctionARN != "arn:aws:lambda:eu-west-1:000000000000:function:echo-fn" {
		t.Errorf("ARN %q", r.FunctionARN)
	}
	if !strings.HasPrefix(r.TraceID, "Root=1-") || r.Env["_X_AMZN_TRACE_ID"] != r.TraceID {
		t.Errorf("trace ID %q, _X_AMZN_TRACE_ID %q", r.TraceID, r.Env["_X_AMZN_TRACE_ID"])
	}
	for k, want := range map[string]string{
		"AWS_LAMBDA_RUNTIME_API":          s.Addr(),
		"_HANDLER":                        "bootstrap",
		"AWS_LAMBDA_FUNCTION_NAME":        "echo-fn",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
		"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
		"AWS_REGION":                      "eu-west-1",
		"LAMBDA_TASK_ROOT":                strings.TrimSuffix(echoBin, "/bootstrap"),
		"IDGEN_MODE":                      "lambda",
	} {
		if r.Env[k] != want {
			t.Errorf("env %s=%q, want %q", k, r.Env[k], want)
		}
	}
	for _, k := range []string{"HOME", "GOPATH", "GOFLAGS"} {
		if v, ok := r.Env[k]; ok {
			t.Errorf("env %s=%q inherited from the test process", k, v)
		}
	}
}

// TestFunctionError: a handler's error is a Result with its type and
// message, not a Go error; the runtime goes on serving.
func TestFunctionError(t *testing.T) {
	t.Parallel()
	s := start(t, lambdart.Options{})
	res, err := invoke(t, s, `{"op":"fail","message":"card declined"}`, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Failed() || res.ErrorType != "EchoError" || res.ErrorMessage != "card declined" {
		t.Fatalf("result %+v (%s), want EchoError: card declined", res, res.Payload)
	}
	var doc struct{ ErrorMessage, ErrorType string }
	if err := json.Unmarshal(res.Payload, &doc); err != nil || doc.ErrorType != "EchoError" {
		t.Errorf("error document %s (%v)", res.Payload, err)
	}
	if r, _ := echo(t, s, `{}`, 0); r.Invocation != 2 {
		t.Errorf("after the error: invocation %d of the process, want 2 (same process)", r.Invocation)
	}
}

// TestDeadline: the handler's ctx deadline is the Lambda-Runtime-Deadline-Ms
// the server sent, dispatch time + the timeout.
func TestDeadline(t *testing.T) {
	t.Parallel()
	s := start(t, lambdart.Options{})
	for _, timeout := range []time.Duration{1500 * time.Millisecond, 10 * time.Second} {
		before := time.Now()
		r, res := echo(t, s, `{}`, timeout)
		if r.DeadlineMS != res.Deadline.UnixMilli() {
			t.Errorf("handler deadline %d, header %d", r.DeadlineMS, res.Deadline.UnixMilli())
		}
		if d := res.Deadline.Sub(before); d < timeout-time.Millisecond || d > timeout+time.Second {
			t.Errorf("timeout %v: deadline %v after the call", timeout, d)
		}
	}
}

// TestTimeout: a handler running past the deadline ends the invocation with
// ErrTimeout at the deadline; its late answer is dropped and the next
// invocation is served.
func TestTimeout(t *testing.T) {
	t.Parallel()
	s := start(t, lambdart.Options{})
	start := time.Now()
	res, err := invoke(t, s, `{"op":"sleep","sleep_ms":1500}`, 300*time.Millisecond)
	if !errors.Is(err, lambdart.ErrTimeout) || res.ErrorType != "Sandbox.Timedout" || !strings.Contains(res.ErrorMessage, "Task timed out after 0.30 seconds") {
		t.Fatalf("err %v, result %+v; want ErrTimeout, Sandbox.Timedout", err, res)
	}
	if el := time.Since(start); el < 300*time.Millisecond || el > 1200*time.Millisecond {
		t.Errorf("timed out after %v, want ~300ms", el)
	}
	if r, _ := echo(t, s, `{}`, 5*time.Second); r.Invocation != 2 {
		t.Errorf("after the timeout: invocation %d, want 2 on the same process", r.Invocation)
	}
}

// TestSequentialAndConcurrent: one process serves many invocations, one at
// a time, in order; concurrent Invokes are queued and all answered.
func TestSequentialAndConcurrent(t *testing.T) {
	t.Parallel()
	s := start(t, lambdart.Options{})
	pid := 0
	for i := 1; i <= 10; i++ {
		r, _ := echo(t, s, fmt.Sprintf(`{"data":%d}`, i), 0)
		if string(r.Data) != fmt.Sprint(i) || r.Invocation != int64(i) {
			t.Fatalf("invocation %d: data %s, count %d", i, r.Data, r.Invocation)
		}
		if pid == 0 {
			pid = r.PID
		} else if r.PID != pid {
			t.Fatalf("invocation %d on pid %d, want %d", i, r.PID, pid)
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ids := map[string]bool{}
	for i := range 8 {
		wg.Go(func() {
			res, err := invoke(t, s, fmt.Sprintf(`{"data":%d}`, i), 5*time.Second)
			if err != nil || res.Failed() {
				t.Errorf("concurrent invoke %d: %v %+v", i, err, res)
				return
			}
			var r echoReply
			_ = json.Unmarshal(res.Payload, &r)
			if string(r.Data) != fmt.Sprint(i) || r.PID != pid {
				t.Errorf("concurrent invoke %d: answer %s", i, res.Payload)
			}
			mu.Lock()
			ids[res.RequestID] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(ids) != 8 {
		t.Errorf("%d distinct request IDs, want 8", len(ids))
	}
}

// TestPanicAndExit: a panic is reported as a function error and ends the
// process (aws-lambda-go exits after it); a process that exits mid-event
// fails it with Runtime.ExitError.
func TestPanicAndExit(t *testing.T) {
	t.Parallel()
	t.Run("panic", func(t *testing.T) {
		t.Parallel()
		s := lambdart.StartT(t, lambdart.Options{})
		p := s.RunBootstrapT(t, echoBin)
		res, err := invoke(t, s, `{"op":"panic","message":"boom"}`, 0)
		if err != nil || res.ErrorType != "string" || res.ErrorMessage != "boom" {
			t.Fatalf("panic: %v %+v (%s)", err, res, res.Payload)
		}
		if code, err := p.Wait(10 * time.Second); err != nil || code == 0 {
			t.Errorf("after a panic: exit code %d (%v), want the process gone with a failure code", code, err)
		}
	})
	t.Run("exit", func(t *testing.T) {
		t.Parallel()
		s := start(t, lambdart.Options{})
		res, err := invoke(t, s, `{"op":"exit","code":3}`, 10*time.Second)
		if !errors.Is(err, lambdart.ErrRuntimeExited) || res.ErrorType != "Runtime.ExitError" || !strings.Contains(res.ErrorMessage, "exit status 3") {
			t.Fatalf("exit: %v %+v", err, res)
		}
		if res.Duration > 5*time.Second {
			t.Errorf("exit noticed after %v, want at once (not at the deadline)", res.Duration)
		}
	})
}

// TestCloseEndsRuntime: closing the server makes the runtime exit, as when
// Lambda tears the sandbox down; Invoke then answers ErrClosed.
func TestCloseEndsRuntime(t *testing.T) {
	t.Parallel()
	s := lambdart.StartT(t, lambdart.Options{})
	p := s.RunBootstrapT(t, echoBin)
	echo(t, s, `{}`, 0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait(10 * time.Second)
	if err != nil {
		t.Fatalf("runtime still running after Close: %v", err)
	}
	if code == 0 {
		t.Errorf("runtime exit code 0, want a failure (lost its Runtime API)")
	}
	if !strings.Contains(p.Stderr(), "next invoke") && !strings.Contains(p.Stderr(), "/next") {
		t.Errorf("stderr %q does not name the failed next call", p.Stderr())
	}
	if _, err := s.Invoke(context.Background(), []byte(`{}`), 0); !errors.Is(err, lambdart.ErrClosed) {
		t.Errorf("Invoke after Close: %v, want ErrClosed", err)
	}
}

// TestResponseTooLarge: a payload over MaxResponse fails the invocation
// with Function.ResponseSizeTooLarge.
func TestResponseTooLarge(t *testing.T) {
	t.Parallel()
	s := start(t, lambdart.Options{MaxResponse: 64 << 10})
	res, err := invoke(t, s, `{"op":"big","size":100000}`, 0)
	if err != nil || res.ErrorType != "Function.ResponseSizeTooLarge" {
		t.Fatalf("%v %+v", err, res)
	}
}
