package proc

import (
	"context"
	"testing"
	"time"
)

type closer struct{ closed int }

func (c *closer) Close() error { c.closed++; return nil }

// logSink is a testing.TB that keeps what Logf writes.
type logSink struct {
	testing.TB
	lines []string
}

func (l *logSink) Logf(format string, args ...any) { l.lines = append(l.lines, format) }

// TestShared: start runs once and every Get returns its value; its Logf
// reaches the test using the value and nothing between tests; Close closes
// a started value only.
func TestShared(t *testing.T) {
	var s Shared[*closer]
	if _, err := s.Value(); err == nil {
		t.Fatal("Value before any Get: no error")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close before any Get: %v", err)
	}
	starts := 0
	var logf func(string, ...any)
	start := func(ctx context.Context, l func(string, ...any)) (*closer, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("start's context has no deadline")
		}
		starts++
		logf = l
		return &closer{}, nil
	}
	var first *closer
	t.Run("first", func(t *testing.T) {
		sink := &logSink{TB: t}
		first = s.Get(sink, "a closer", time.Minute, start)
		logf("during first")
		if len(sink.lines) != 1 {
			t.Errorf("log of the first test: %q", sink.lines)
		}
	})
	logf("between tests")
	t.Run("second", func(t *testing.T) {
		sink := &logSink{TB: t}
		if got := s.Get(sink, "a closer", time.Minute, start); got != first {
			t.Errorf("second Get returned %p, want %p", got, first)
		}
		logf("during second")
		if len(sink.lines) != 1 || sink.lines[0] != "during second" {
			t.Errorf("log of the second test: %q", sink.lines)
		}
	})
	if starts != 1 {
		t.Errorf("start ran %d times", starts)
	}
	if v, err := s.Value(); err != nil || v != first {
		t.Errorf("Value = %p, %v", v, err)
	}
	if err := s.Close(); err != nil || first.closed != 1 {
		t.Errorf("Close = %v, closed %d times", err, first.closed)
	}
}

// TestStartT: start gets a context with a deadline, and the value is closed
// when the test that started it ends.
func TestStartT(t *testing.T) {
	var c *closer
	t.Run("user", func(t *testing.T) {
		c = StartT(t, "a closer", time.Minute, func(ctx context.Context) (*closer, error) {
			if _, ok := ctx.Deadline(); !ok {
				t.Error("start's context has no deadline")
			}
			return &closer{}, nil
		})
		if c.closed != 0 {
			t.Error("closed before the test ended")
		}
	})
	if c.closed != 1 {
		t.Errorf("closed %d times after the test, want 1", c.closed)
	}
}
