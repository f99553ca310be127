package proc

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// fatalSink is a testing.TB whose Fatalf records the message and ends the
// goroutine, as testing's own does.
type fatalSink struct {
	testing.TB
	msg string
}

func (f *fatalSink) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// TestEventually: a condition that comes true passes without failing the
// test; one that never does fails it once within has passed, naming what.
func TestEventually(t *testing.T) {
	for _, tc := range []struct {
		name     string
		trueFrom int // the call from which cond holds; 0: never
		want     string
	}{
		{"at once", 1, ""},
		{"after a few polls", 4, ""},
		{"never", 0, "not within 50ms: the thing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &fatalSink{TB: t}
			calls := 0
			began := time.Now()
			done := make(chan struct{})
			go func() {
				defer close(done)
				Eventually(sink, 50*time.Millisecond, "the thing", func() bool {
					calls++
					return tc.trueFrom > 0 && calls >= tc.trueFrom
				})
			}()
			<-done
			if sink.msg != tc.want {
				t.Fatalf("failure %q, want %q", sink.msg, tc.want)
			}
			if tc.trueFrom > 0 && calls != tc.trueFrom {
				t.Errorf("cond called %d times, want %d", calls, tc.trueFrom)
			}
			if tc.trueFrom == 0 && time.Since(began) < 50*time.Millisecond {
				t.Errorf("failed after %v, before within passed", time.Since(began))
			}
		})
	}
}
