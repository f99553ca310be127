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

// syncBuffer records what WriterCore writes and how often it syncs.
type syncBuffer struct {
	lines []string
	syncs int
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.lines = append(b.lines, string(p))
	return len(p), nil
}

func (b *syncBuffer) Sync() error { b.syncs++; return nil }

var _ zapcore.WriteSyncer = (*syncBuffer)(nil)

// WriterCore gives the log stream and the ring the same line: what /logs
// shows is what went to the stream, without its newline, at the core's
// level, filtered by request ID as Core's entries are.
func TestWriterCoreSameLineToBoth(t *testing.T) {
	r := New(10)
	var out syncBuffer
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	log := zap.New(r.WriterCore(enc, &out, zapcore.InfoLevel))
	log.Debug("below the level")
	log.Info("request", zap.String(RequestIDKey, "A"), zap.Int("status", 200))
	log.With(zap.String(RequestIDKey, "B")).Error("failed", zap.String("why", "because"))
	got := r.Entries(Query{})
	if len(out.lines) != 2 || len(got) != 2 {
		t.Fatalf("%d lines written and %d in the ring, want 2 and 2: %q", len(out.lines), len(got), out.lines)
	}
	for i, e := range got {
		if want := out.lines[i]; string(e.JSON)+"\n" != want {
			t.Errorf("ring entry %d = %s, want the line written, %q", i, e.JSON, want)
		}
	}
	if a := r.Entries(Query{RequestID: "A"}); len(a) != 1 || a[0].RequestID != "A" || a[0].Level != zapcore.InfoLevel {
		t.Errorf("request A: %+v", a)
	}
	if b := r.Entries(Query{RequestID: "B", MinLevel: zapcore.ErrorLevel}); len(b) != 1 || b[0].RequestID != "B" {
		t.Errorf("request B at error: %+v", b)
	}
	if out.syncs != 0 {
		t.Errorf("%d syncs after lines at or below error, want 0", out.syncs)
	}
	if err := log.Sync(); err != nil || out.syncs != 1 {
		t.Errorf("Sync: %v, %d syncs of the stream, want 1", err, out.syncs)
	}
}

// An entry Entries returned stays as it was when its slot takes newer
// lines (the ring reuses its slots' buffers).
func TestEntriesAreCopies(t *testing.T) {
	r := New(2)
	log := newLogger(r)
	log.Info("first", zap.String(RequestIDKey, "one"))
	kept := r.Entries(Query{})
	want := string(kept[0].JSON)
	for i := 0; i < 10; i++ {
		log.Info(fmt.Sprintf("later %d", i), zap.String(RequestIDKey, fmt.Sprintf("r%d", i)))
	}
	if string(kept[0].JSON) != want || kept[0].RequestID != "one" {
		t.Fatalf("kept entry became %s (request %s), want %s", kept[0].JSON, kept[0].RequestID, want)
	}
	// A long line does not leave a slot holding its buffer for the
	// short lines after it; the short line is stored whole.
	log.Info(string(make([]byte, 3*keepCap)))
	log.Info("short")
	log.Info("short again")
	for _, e := range r.Entries(Query{}) {
		var v map[string]any
		if err := json.Unmarshal(e.JSON, &v); err != nil || v["msg"] == "" {
			t.Fatalf("entry %s: %v", e.JSON, err)
		}
	}
	for i := range r.buf {
		if c := cap(r.buf[i].data); c > keepCap {
			t.Errorf("slot %d keeps %d bytes for a short line", i, c)
		}
	}
}

// Once every slot holds a line, a line of about the same length costs the
// ring no allocation.
func TestAddAllocatesNothing(t *testing.T) {
	r := New(4)
	line := []byte(`{"level":"info","msg":"request","request_id":"a1b2c3d4-17","status":200}` + "\n")
	for range 8 {
		r.add(zapcore.InfoLevel, "a1b2c3d4-17", line)
	}
	if n := testing.AllocsPerRun(100, func() { r.add(zapcore.InfoLevel, "a1b2c3d4-18", line[:len(line)-3]) }); n != 0 {
		t.Errorf("add: %v allocations, want 0", n)
	}
}
