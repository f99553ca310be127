package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"go.uber.org/zap"

	"github.com/idgen/idgen/functions/failurestream"
)

// Lambda functions of this binary, chosen by the function's Handler
// setting (_HANDLER): `make lambda` copies the one binary to both bootstraps.
const (
	lambdaGenerate   = "generate"
	lambdaCompensate = "compensate"
)

// inLambda reports whether the process was started by a Lambda runtime.
func inLambda() bool { return os.Getenv("AWS_LAMBDA_RUNTIME_API") != "" }

// runLambda serves one Lambda function through the Runtime API, configured
// by the same IDGEN_* variables as `idgen serve` and `idgen compensate`.
func runLambda(ctx context.Context, stderr io.Writer) error {
	switch fn := os.Getenv("_HANDLER"); fn {
	case lambdaGenerate:
		m := NewServe(stderr)
		if err := m.ParseFlags(nil); err != nil {
			return err
		}
		if m.Config.ZK.Servers == "" || m.Config.Redis.Addr == "" {
			// Concurrent Lambda instances share nothing local: only the
			// ZooKeeper ranges keep their IDs apart, only Redis holds them all.
			return errors.New("lambda: IDGEN_ZOOKEEPER and IDGEN_REDIS_ADDR are required (concurrent instances must share ranges and registry)")
		}
		return lambdaGenerateFn(ctx, m.Config, stderr)
	case lambdaCompensate:
		return lambdaCompensateFn(ctx, stderr)
	default:
		return fmt.Errorf("lambda: unknown handler %q (want %s or %s)", fn, lambdaGenerate, lambdaCompensate)
	}
}

// lambdaGenerateFn answers API Gateway HTTP API v2 events with the same
// handler as the fasthttp server.
func lambdaGenerateFn(ctx context.Context, c ServeConfig, stderr io.Writer) error {
	name := os.Getenv("AWS_LAMBDA_FUNCTION_NAME")
	st, err := buildStack(ctx, c, stderr, "lambda:"+name)
	if err != nil {
		return err
	}
	st.log.Info("lambda ready", zap.String("function", name), zap.String("mode", st.mode))
	handle := st.svc.HandleAPIGatewayV2
	if st.tp != nil {
		// The sandbox may freeze once the invocation returns: its spans
		// are exported before.
		handle = func(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
			resp, err := st.svc.HandleAPIGatewayV2(ctx, req)
			_ = st.tp.ForceFlush(ctx)
			return resp, err
		}
	}
	lambda.StartWithOptions(handle, lambda.WithContext(ctx),
		lambda.WithEnableSIGTERM(func() {
			// The runtime is shutting the sandbox down: flush the registry.
			_ = st.close()
		}))
	return nil
}

// lambdaCompensateFn voids the IDs of failure events delivered by SQS (one
// result per record: the records that failed, malformed or transiently, are
// returned in batchItemFailures so SQS redelivers only them and its redrive
// policy dead-letters the poison ones) or by EventBridge (detail = the
// envelope; an error makes EventBridge retry).
func lambdaCompensateFn(ctx context.Context, stderr io.Writer) error {
	c, log, err := compensateFlagsAndLog(nil, stderr)
	if err != nil {
		return err
	}
	name := os.Getenv("AWS_LAMBDA_FUNCTION_NAME")
	cc, err := openCompensateCore(ctx, c, "lambda:"+name, log)
	if err != nil {
		return err
	}
	tp, err := c.Log.tracing(ctx, "lambda:"+name, log, func(func() error) {})
	if err != nil {
		cc.close()
		return err
	}
	h := failurestream.LambdaHandler{Core: cc.core, Logger: log, Tracer: tp.Tracer("idgen/compensate")}
	handle := h.Handle
	if tp != nil {
		// The sandbox may freeze once the invocation returns: its spans
		// are exported before.
		handle = func(ctx context.Context, raw json.RawMessage) (any, error) {
			out, err := h.Handle(ctx, raw)
			_ = tp.ForceFlush(ctx)
			return out, err
		}
	}
	lambda.StartWithOptions(handle, lambda.WithContext(ctx), lambda.WithEnableSIGTERM(func() {
		cc.close()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = tp.Shutdown(sctx)
	}))
	return nil
}
