package failurestream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/aws/aws-lambda-go/events"
	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/saga"
)

// LambdaHandler voids the IDs of failure events that a Lambda function
// receives from SQS or EventBridge, through the same saga.Core as the
// stream Worker. SQS: each record is compensated on its own, and the
// records that failed (malformed or transiently) are returned in
// batchItemFailures, so that SQS redelivers only them and its redrive
// policy dead-letters the poison ones; a record received more than once is
// a redelivery (it may write an audit entry an earlier attempt did not).
// EventBridge: detail is the envelope; an error makes EventBridge retry.
type LambdaHandler struct {
	Core   *saga.Core
	Logger *zap.Logger
	// Tracer, when set, makes each event a span (compensate), continuing
	// the trace context of its envelope, as the stream worker does.
	// Default nil: no span.
	Tracer trace.Tracer
}

// compensate applies one event, in a span of its envelope's trace when
// tracing is on.
func (h LambdaHandler) compensate(ctx context.Context, fe saga.Event, source string) (saga.Result, error) {
	if h.Tracer == nil {
		return h.Core.Compensate(ctx, fe)
	}
	ctx, span := h.Tracer.Start(fe.TraceContext(ctx), "compensate", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("idgen.id", fe.ID), attribute.String("idgen.transport", source)))
	defer span.End()
	res, err := h.Core.Compensate(ctx, fe)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	} else {
		span.SetAttributes(attribute.String("idgen.outcome", res.Outcome.String()))
	}
	return res, err
}

// Handle tells SQS and EventBridge events apart by their shape and
// answers each as its source expects.
func (h LambdaHandler) Handle(ctx context.Context, raw json.RawMessage) (any, error) {
	var probe struct {
		Records    []json.RawMessage `json:"Records"`
		DetailType string            `json:"detail-type"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("failurestream: event is not JSON: %w", err)
	}
	switch {
	case probe.Records != nil:
		var ev events.SQSEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, fmt.Errorf("failurestream: not an SQS event: %w", err)
		}
		return h.sqs(ctx, ev), nil
	case probe.DetailType != "":
		var ev events.EventBridgeEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, fmt.Errorf("failurestream: not an EventBridge event: %w", err)
		}
		var fe saga.Event
		if err := json.Unmarshal(ev.Detail, &fe); err != nil {
			return nil, fmt.Errorf("%w: detail: %w", saga.ErrMalformed, err)
		}
		res, err := h.compensate(ctx, fe, "eventbridge")
		if err != nil {
			return nil, err
		}
		return res, nil
	}
	return nil, errors.New("failurestream: neither an SQS nor an EventBridge event")
}

// sqs compensates each record on its own; one bad record never fails the
// batch.
func (h LambdaHandler) sqs(ctx context.Context, ev events.SQSEvent) events.SQSEventResponse {
	var out events.SQSEventResponse
	for _, r := range ev.Records {
		var fe saga.Event
		err := json.Unmarshal([]byte(r.Body), &fe)
		if err != nil {
			err = fmt.Errorf("%w: body: %w", saga.ErrMalformed, err)
		} else {
			fe.EventID = firstNonEmpty(fe.EventID, r.MessageId)
			fe.Redelivered = r.Attributes["ApproximateReceiveCount"] != "" && r.Attributes["ApproximateReceiveCount"] != "1"
			_, err = h.compensate(ctx, fe, "sqs")
		}
		if err != nil {
			h.Logger.Warn("compensation failed; SQS will redeliver the record", zap.String("message_id", r.MessageId),
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
