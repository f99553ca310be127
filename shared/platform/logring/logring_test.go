package logring

import (
	"encoding/json"
	"fmt"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func newLogger(r *Ring) *zap.Logger {
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	return zap.New(r.Core(enc, zapcore.DebugLevel))
}

func TestRingBoundedNewestLast(t *testing.T) {
	r := New(5)
	log := newLogger(r)
	for i := 0; i < 12; i++ {
		log.Info(fmt.Sprintf("m%d", i))
	}
	got := r.Entries(Query{})
	if len(got) != 5 {
		t.Fatalf("%d entries, want the 5 newest", len(got))
	}
	for i, e := range got {
		var v map[string]any
		if err := json.Unmarshal(e.JSON, &v); err != nil {
			t.Fatalf("entry %d is not JSON: %s", i, e.JSON)
		}
		if want := fmt.Sprintf("m%d", 7+i); v["msg"] != want {
			t.Fatalf("entry %d = %v, want %s (oldest first)", i, v["msg"], want)
		}
	}
	if got := r.Entries(Query{Limit: 2}); len(got) != 2 || string(got[1].JSON) != string(r.Entries(Query{})[4].JSON) {
		t.Fatalf("limit keeps the newest: %v", got)
	}
}

func TestRingFilters(t *testing.T) {
	r := New(100)
	log := newLogger(r)
	reqA := log.With(zap.String(RequestIDKey, "A"))
	reqA.Debug("a-debug")
	reqA.Warn("a-warn")
	log.Info("plain", zap.String(RequestIDKey, "B"))
	log.Error("no-request")
	tests := []struct {
		q    Query
		want []string
	}{
		{Query{MinLevel: zapcore.DebugLevel, RequestID: "A"}, []string{"a-debug", "a-warn"}},
		{Query{RequestID: "A"}, []string{"a-warn"}}, // zero MinLevel is info
		{Query{RequestID: "B"}, []string{"plain"}},
		{Query{MinLevel: zapcore.WarnLevel}, []string{"a-warn", "no-request"}},
		{Query{MinLevel: zapcore.WarnLevel, RequestID: "A"}, []string{"a-warn"}},
		{Query{RequestID: "nope"}, nil},
	}
	for _, tt := range tests {
		got := r.Entries(tt.q)
		if len(got) != len(tt.want) {
			t.Fatalf("%+v: %d entries, want %v", tt.q, len(got), tt.want)
		}
		for i, e := range got {
			var v map[string]any
			_ = json.Unmarshal(e.JSON, &v)
			if v["msg"] != tt.want[i] {
				t.Fatalf("%+v: entry %d = %v, want %s", tt.q, i, v["msg"], tt.want[i])
			}
		}
	}
}
