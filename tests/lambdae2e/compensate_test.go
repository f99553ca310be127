package lambdae2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/idgen/idgen/harness/lambdart"
	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/redisstore"
)

// TestCompensateFunction: SQS batches with good, duplicate and bad records
// answer exactly the bad ones in batchItemFailures; an EventBridge event
// whose detail is the envelope compensates too; each effect is audited once.
func TestCompensateFunction(t *testing.T) {
	rds := redisharness.StartStandaloneT(t, redisharness.Options{AppendFsyncAlways: true}) // idgen refuses a Redis without persistence outside --dev
	ctx := context.Background()
	reg, err := redisstore.Open(ctx, redisstore.Config{Addrs: []string{rds.Addr()}})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	var ids []idcodec.ID
	var iss registry.Issue
	for i := uint64(0); i < 3; i++ {
		id := idcodec.MustCompose(idcodec.Fields{TimestampMS: uint64(time.Now().UnixMilli()), Counter: 500 + i})
		ids = append(ids, id)
		iss.Records = append(iss.Records, registry.Record{ID: id, State: registry.Pending, IssuedAtMS: time.Now().UnixMilli(),
			History: []registry.Step{{State: registry.Pending, AtMS: time.Now().UnixMilli()}}})
	}
	if _, err := reg.Register(ctx, iss, 1000, time.Now().UnixMilli()); err != nil {
		t.Fatal(err)
	}
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	rt := lambdart.StartT(t, lambdart.Options{FunctionName: "idgen-compensate"})
	rt.RunBootstrapT(t, bootstrap, "_HANDLER=compensate", "IDGEN_REDIS_ADDR="+rds.Addr(), "IDGEN_AUDIT_LOG="+auditPath)

	body := func(id, reason string) string {
		b, _ := json.Marshal(map[string]string{"id": id, "reason": reason, "source": "payments"})
		return string(b)
	}
	sqs := events.SQSEvent{Records: []events.SQSMessage{
		{MessageId: "m1", Body: body(ids[0].String(), "card declined")},
		{MessageId: "m2", Body: body(ids[0].String(), "card declined")}, // duplicate delivery
		{MessageId: "m3", Body: `{"id":"not-an-id","reason":"x"}`},      // poison
		{MessageId: "m4", Body: `not json`},                             // poison
		{MessageId: "m5", Body: body(ids[1].String(), "timeout upstream")},
	}}
	payload, _ := json.Marshal(sqs)
	res, err := rt.Invoke(ctx, payload, 10*time.Second)
	if err != nil || res.Failed() {
		t.Fatalf("invoke: %v %s %s", err, res.ErrorType, res.ErrorMessage)
	}
	var out events.SQSEventResponse
	if err := json.Unmarshal(res.Payload, &out); err != nil {
		t.Fatalf("answer %s: %v", res.Payload, err)
	}
	failed := map[string]bool{}
	for _, f := range out.BatchItemFailures {
		failed[f.ItemIdentifier] = true
	}
	if len(failed) != 2 || !failed["m3"] || !failed["m4"] {
		t.Fatalf("batchItemFailures %v, want exactly m3 and m4", out.BatchItemFailures)
	}
	eb, _ := json.Marshal(events.EventBridgeEvent{Version: "0", ID: "e1", DetailType: "TransactionFailed", Source: "payments",
		Detail: json.RawMessage(body(ids[2].String(), "fraud"))})
	if res, err := rt.Invoke(ctx, eb, 10*time.Second); err != nil || res.Failed() {
		t.Fatalf("eventbridge: %v %s %s", err, res.ErrorType, res.ErrorMessage)
	}
	for _, id := range ids {
		rec, err := reg.Get(ctx, id)
		if err != nil || rec.State != registry.Compensated {
			t.Fatalf("%s: %+v %v", id, rec.State, err)
		}
	}
	raw, _ := os.ReadFile(auditPath)
	var n int
	for _, line := range splitLines(raw) {
		var m struct {
			Action string `json:"action"`
		}
		if json.Unmarshal(line, &m) == nil && m.Action == "id.compensate" {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("%d compensation audit entries, want 3 (one per effect, none for the duplicate)", n)
	}
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	start := 0
	for i, c := range b {
		if c == '\n' {
			out = append(out, b[start:i])
			start = i + 1
		}
	}
	return out
}
