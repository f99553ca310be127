package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/saga"
)

// lambdaCompensateFn voids the IDs of failure events delivered by SQS (one
// result per record: the records that failed, malformed or transiently, are
// returned in batchItemFailures so SQS redelivers only them and its redrive
// policy dead-letters the poison ones) or by EventBridge (detail = the
// envelope; an error makes EventBridge retry).
func lambdaCompensateFn(ctx context.Context, stderr io.Writer) error {
	c, err := parseCompensateFlags(nil, stderr)
	if err != nil {
		return err
	}
	log, err := c.Log.logger(stderr, nil)
	if err != nil {
		return err
	}
	name := os.Getenv("AWS_LAMBDA_FUNCTION_NAME")
	cc, err := openCompensateCore(ctx, c, "lambda:"+name, log)
	if err != nil {
		return err
	}
	h := lambdaCompensateHandler{core: cc.core, log: log}
	lambda.StartWithOptions(h.handle, lambda.WithContext(ctx), lambda.WithEnableSIGTERM(cc.close))
	return nil
}

type lambdaCompensateHandler struct {
	core *saga.Core
	log  *zap.Logger
}

// handle tells SQS and EventBridge events apart by their shape.
func (h lambdaCompensateHandler) handle(ctx context.Context, raw json.RawMessage) (any, error) {
	var probe struct {
		Records    []json.RawMessage `json:"Records"`
		DetailType string            `json:"detail-type"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("compensate: event is not JSON: %w", err)
	}
	switch {
	case probe.Records != nil:
		var ev events.SQSEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, fmt.Errorf("compensate: not an SQS event: %w", err)
		}
		return h.sqs(ctx, ev), nil
	case probe.DetailType != "":
		var ev events.EventBridgeEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, fmt.Errorf("compensate: not an EventBridge event: %w", err)
		}
		var fe saga.Event
		if err := json.Unmarshal(ev.Detail, &fe); err != nil {
			return nil, fmt.Errorf("%w: detail: %w", saga.ErrMalformed, err)
		}
		res, err := h.core.Compensate(ctx, fe)
		if err != nil {
			return nil, err
		}
		return res, nil
	}
	return nil, errors.New("compensate: neither an SQS nor an EventBridge event")
}

// sqs compensates each record on its own; one bad record never fails the
// batch.
func (h lambdaCompensateHandler) sqs(ctx context.Context, ev events.SQSEvent) events.SQSEventResponse {
	var out events.SQSEventResponse
	for _, r := range ev.Records {
		var fe saga.Event
		err := json.Unmarshal([]byte(r.Body), &fe)
		if err != nil {
			err = fmt.Errorf("%w: body: %w", saga.ErrMalformed, err)
		} else {
			fe.EventID = firstNonEmpty(fe.EventID, r.MessageId)
			fe.Redelivered = r.Attributes["ApproximateReceiveCount"] != "" && r.Attributes["ApproximateReceiveCount"] != "1"
			_, err = h.core.Compensate(ctx, fe)
		}
		if err != nil {
			h.log.Warn("compensation failed; SQS will redeliver the record", zap.String("message_id", r.MessageId),
				zap.Bool("permanent", saga.Permanent(err)), zap.Error(err))
			out.BatchItemFailures = append(out.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
		}
	}
	return out
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
