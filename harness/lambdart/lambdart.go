// Package lambdart is a test server for the AWS Lambda Runtime API
// (version 2018-06-01), so a function's bootstrap binary runs in tests
// exactly as Lambda runs it: started with AWS_LAMBDA_RUNTIME_API pointing
// here, it long-polls /runtime/invocation/next for events and posts each
// answer to /runtime/invocation/{id}/response or /error.
//
// Invariants:
//   - The server binds 127.0.0.1 on a free port, chosen by the kernel.
//   - Invoke queues one event; events are handed out in order, each to
//     exactly one next call, with the Lambda-Runtime-Aws-Request-Id,
//     Lambda-Runtime-Deadline-Ms, Lambda-Runtime-Invoked-Function-Arn and
//     Lambda-Runtime-Trace-Id headers. The deadline (dispatch time +
//     Invoke's timeout, in whole milliseconds) is the one Invoke enforces.
//   - Each invocation ends once: the first of the runtime's answer, the
//     deadline (ErrTimeout), the exit of the runtime (ErrRuntimeExited,
//     only for processes started by RunBootstrap), an init error
//     (ErrInitFailed), the caller's ctx, or Close (ErrClosed). An answer
//     arriving after its invocation ended otherwise is accepted and
//     dropped: unlike Lambda, the server does not reset the runtime after
//     a timeout.
//   - Close ends every waiting next call with a 500 and shuts the API
//     down, so a runtime built on aws-lambda-go exits (as when Lambda
//     tears a sandbox down). Close does not signal any process; the
//     caller (or RunBootstrapT's cleanup) owns the processes it started.
//     No goroutine of the server runs or logs after Close returned.
//   - The core API takes a context, never a *testing.T; the ...T variants
//     wrap it for tests.
//
// What the server does not do: extensions, the telemetry and logs APIs,
// response streaming modes, the Cognito and client-context headers, and
// sandbox freezing.
package lambdart

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
)

// Errors of Invoke. The Result returned with ErrTimeout, ErrRuntimeExited
// and ErrInitFailed carries the request ID and Lambda's error type and
// message for the case.
var (
	// ErrTimeout means the runtime did not answer before the deadline.
	ErrTimeout = errors.New("lambdart: task timed out")
	// ErrRuntimeExited means the runtime process exited (or, before any
	// event, ended its init phase by exiting) without answering.
	ErrRuntimeExited = errors.New("lambdart: runtime exited")
	// ErrInitFailed means the runtime posted an init error before it took
	// the queued event.
	ErrInitFailed = errors.New("lambdart: runtime init failed")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("lambdart: server closed")
)

// Options of a Server. The zero value means the documented defaults.
type Options struct {
	// FunctionName is AWS_LAMBDA_FUNCTION_NAME and part of the ARN.
	// Default "idgen-test".
	FunctionName string
	// Region is AWS_REGION and part of the ARN. Default "us-east-1".
	Region string
	// AccountID is part of the ARN. Default "000000000000".
	AccountID string
	// MemoryMB is AWS_LAMBDA_FUNCTION_MEMORY_SIZE. Default 128.
	MemoryMB int
	// Version is AWS_LAMBDA_FUNCTION_VERSION. Default "$LATEST".
	Version string
	// MaxResponse is the largest response payload, Lambda's synchronous
	// limit. Default 6 MiB; a larger one is refused with 413 and the
	// invocation fails with Function.ResponseSizeTooLarge.
	MaxResponse int
	// Logf, if set, receives one line per event of an invocation.
	// Default: no logging.
	Logf func(format string, args ...any)
}

func (o Options) withDefaults() Options {
	o.FunctionName = cmp.Or(o.FunctionName, "idgen-test")
	o.Region = cmp.Or(o.Region, "us-east-1")
	o.AccountID = cmp.Or(o.AccountID, "000000000000")
	o.MemoryMB = cmp.Or(o.MemoryMB, 128)
	o.Version = cmp.Or(o.Version, "$LATEST")
	o.MaxResponse = cmp.Or(o.MaxResponse, 6<<20)
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return o
}

// DefaultTimeout is the function timeout Invoke uses for a timeout <= 0,
// Lambda's default.
const DefaultTimeout = 3 * time.Second

// Result is the outcome of one invocation.
type Result struct {
	// RequestID is the Lambda-Runtime-Aws-Request-Id of the invocation.
	RequestID string
	// Payload is the body the runtime posted: the response, or the error
	// document ({"errorMessage", "errorType", "stackTrace"}) of a failure.
	Payload []byte
	// ErrorType is empty for a response. For a failure it is the runtime's
	// Lambda-Runtime-Function-Error-Type header, else the document's
	// errorType, else "Unhandled"; or Lambda's own type for the failures
	// of the server's errors (Sandbox.Timedout, Runtime.ExitError,
	// Function.ResponseSizeTooLarge).
	ErrorType string
	// ErrorMessage is the failure's errorMessage.
	ErrorMessage string
	// Deadline is the deadline sent to the runtime (zero if never sent).
	Deadline time.Time
	// Duration runs from dispatch to the end of the invocation.
	Duration time.Duration
}

// Failed reports whether the invocation ended with a function error.
func (r Result) Failed() bool { return r.ErrorType != "" }

// invocation states, guarded by Server.mu.
type state int

const (
	queued state = iota
	running
	ended
)

type invocation struct {
	id      string
	payload []byte
	timeout time.Duration
	trace   string
	// dispatched is closed when a runtime took the event; deadline and
	// start are set before.
	dispatched chan struct{}
	deadline   time.Time
	start      time.Time
	// done is closed when res and err are final.
	done  chan struct{}
	state state
	res   Result
	err   error
}

// Server is a Runtime API endpoint. Safe for concurrent use.
type Server struct {
	opts   Options
	ln     net.Listener
	srv    *http.Server
	served chan error
	done   chan struct{} // closed by Close
	once   sync.Once
	// watchers counts RunBootstrap's goroutines; Close waits for them, so
	// none logs after it.
	watchers sync.WaitGroup

	mu       sync.Mutex
	queue    []*invocation          // queued, oldest first
	avail    chan struct{}          // closed and replaced when the queue grows
	invs     map[string]*invocation // dispatched, by request ID
	initErr  *Result
	runtimes int // live processes started by RunBootstrap
	closed   bool
}

// Start serves the Runtime API on a free loopback port. ctx bounds the
// start only; Close ends the server.
func Start(ctx context.Context, opts Options) (*Server, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("lambdart: listen: %w", err)
	}
	s := &Server{
		opts:   opts.withDefaults(),
		ln:     ln,
		served: make(chan error, 1),
		done:   make(chan struct{}),
		avail:  make(chan struct{}),
		invs:   map[string]*invocation{},
	}
	s.srv = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	go func() { s.served <- s.srv.Serve(ln) }()
	return s, nil
}

// StartT is Start for tests: the server closes when t ends, and logs
// through t.Logf unless opts.Logf is set.
func StartT(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	s, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("lambdart: close: %v", err)
		}
	})
	return s
}

// Addr is the host:port of the API, the value of AWS_LAMBDA_RUNTIME_API.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// FunctionARN is the Lambda-Runtime-Invoked-Function-Arn of every event.
func (s *Server) FunctionARN() string {
	return "arn:aws:lambda:" + s.opts.Region + ":" + s.opts.AccountID + ":function:" + s.opts.FunctionName
}

// Invoke queues payload as an event and waits for its outcome. timeout is
// the function timeout (DefaultTimeout if <= 0): it runs from the moment a
// runtime takes the event, as Lambda's does; the wait for a runtime to
// take it is bounded by ctx only.
//
// A response or a function error returns a nil error (Result.Failed tells
// them apart). It returns ErrTimeout, ErrRuntimeExited or ErrInitFailed
// with the Result of that failure, ctx's error when ctx ends first, and
// ErrClosed after Close.
func (s *Server) Invoke(ctx context.Context, payload []byte, timeout time.Duration) (Result, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	inv := &invocation{
		id: uuid.NewString(), payload: bytes.Clone(payload), timeout: timeout, trace: traceID(),
		dispatched: make(chan struct{}), done: make(chan struct{}),
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return Result{}, ErrClosed
	}
	s.queue = append(s.queue, inv)
	close(s.avail)
	s.avail = make(chan struct{})
	s.mu.Unlock()

	select {
	case <-inv.dispatched:
	case <-inv.done: // failed before a runtime took it (init error, exit)
		return inv.res, inv.err
	case <-ctx.Done():
		return s.abandon(inv, fmt.Errorf("lambdart: invoke %s: no runtime took the event: %w", inv.id, context.Cause(ctx)))
	case <-s.done:
		return s.abandon(inv, ErrClosed)
	}
	timer := time.NewTimer(time.Until(inv.deadline))
	defer timer.Stop()
	select {
	case <-inv.done:
	case <-timer.C:
		s.end(inv, Result{
			ErrorType:    "Sandbox.Timedout",
			ErrorMessage: fmt.Sprintf("RequestId: %s Error: Task timed out after %.2f seconds", inv.id, inv.timeout.Seconds()),
		}, ErrTimeout)
	case <-ctx.Done():
		return s.abandon(inv, fmt.Errorf("lambdart: invoke %s: %w", inv.id, context.Cause(ctx)))
	case <-s.done:
		return s.abandon(inv, ErrClosed)
	}
	return inv.res, inv.err
}

// abandon ends inv with err unless it ended already, and returns its
// outcome.
func (s *Server) abandon(inv *invocation, err error) (Result, error) {
	s.end(inv, Result{}, err)
	return inv.res, inv.err
}

// end makes res and err inv's outcome if it has none yet, and reports
// whether it did. It fills the request ID, deadline and duration.
func (s *Server) end(inv *invocation, res Result, err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.endLocked(inv, res, err)
}

func (s *Server) endLocked(inv *invocation, res Result, err error) bool {
	if inv.state == ended {
		return false
	}
	if inv.state == queued {
		for i, q := range s.queue {
			if q == inv {
				s.queue = append(s.queue[:i], s.queue[i+1:]...)
				break
			}
		}
	}
	res.RequestID = inv.id
	if !inv.start.IsZero() {
		res.Deadline, res.Duration = inv.deadline, time.Since(inv.start)
	}
	inv.state, inv.res, inv.err = ended, res, err
	close(inv.done)
	s.opts.Logf("lambdart: invocation %s ended: error type %q, err %v", inv.id, res.ErrorType, err)
	return true
}

// InitError returns the last error a runtime posted to /runtime/init/error.
func (s *Server) InitError() (Result, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.initErr == nil {
		return Result{}, false
	}
	return *s.initErr, true
}

// Close ends waiting next calls and Invokes, and shuts the API down. It is
// idempotent.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.done)
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err = s.srv.Shutdown(ctx); err != nil {
			err = errors.Join(err, s.srv.Close())
		}
		if serr := <-s.served; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
		s.watchers.Wait()
	})
	return err
}
