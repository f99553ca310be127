// Command echo is the bootstrap the lambdart tests run as Lambda runs a
// provided.al2023 function. The event's "op" picks the behaviour: "echo"
// (default) answers what the handler saw, "fail" returns an *EchoError,
// "panic" panics, "exit" exits with "code", "sleep" sleeps "sleep_ms"
// ignoring its context, "big" answers "size" bytes.
package main

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type request struct {
	Op      string          `json:"op"`
	Message string          `json:"message"`
	Code    int             `json:"code"`
	SleepMS int             `json:"sleep_ms"`
	Size    int             `json:"size"`
	Data    json.RawMessage `json:"data"`
}

type response struct {
	Data        json.RawMessage   `json:"data,omitempty"`
	PID         int               `json:"pid"`
	Invocation  int64             `json:"invocation"` // 1-based count in this process
	RequestID   string            `json:"request_id"`
	FunctionARN string            `json:"function_arn"`
	DeadlineMS  int64             `json:"deadline_ms"`
	TraceID     string            `json:"trace_id"`
	Env         map[string]string `json:"env"`
	Padding     string            `json:"padding,omitempty"`
}

// EchoError is the error of op "fail"; its type name is the errorType.
type EchoError struct{ Message string }

func (e *EchoError) Error() string { return e.Message }

var invocations atomic.Int64

func handle(ctx context.Context, req request) (response, error) {
	n := invocations.Add(1)
	switch req.Op {
	case "fail":
		return response{}, &EchoError{Message: req.Message}
	case "panic":
		panic(req.Message)
	case "exit":
		os.Exit(req.Code)
	case "sleep":
		time.Sleep(time.Duration(req.SleepMS) * time.Millisecond)
	}
	out := response{Data: req.Data, PID: os.Getpid(), Invocation: n, Env: map[string]string{}}
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		out.RequestID, out.FunctionARN = lc.AwsRequestID, lc.InvokedFunctionArn
	}
	if dl, ok := ctx.Deadline(); ok {
		out.DeadlineMS = dl.UnixMilli()
	}
	out.TraceID, _ = ctx.Value("x-amzn-trace-id").(string)
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		out.Env[k] = v
	}
	if req.Op == "big" {
		out.Padding = strings.Repeat("x", req.Size)
	}
	return out, nil
}

func main() { lambda.Start(handle) }
