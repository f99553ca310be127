package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/idgen/idgen/shared/idcodec"
)

// offsetFile sets IDGEN_FAULT_CLOCK_OFFSET_FILE, for the rest of t, to a
// new file holding offset, and returns its path.
func offsetFile(t *testing.T, offset string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "offset")
	setOffset(t, path, offset)
	t.Setenv(faultClockEnv, path)
	return path
}

// setOffset writes offset to the offset file at path.
func setOffset(t *testing.T, path, offset string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(offset), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFaultClock: IDGEN_FAULT_CLOCK_OFFSET_FILE offsets the clock from the
// start, a later step backwards is picked up by the running clock, the
// stamped timestamps never go back across the step (max(now, last)), and a
// bad file refuses to start; without the variable nothing is injected.
func TestFaultClock(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := zaptest.NewLogger(t)

	t.Run("unset", func(t *testing.T) {
		t.Setenv(faultClockEnv, "")
		var c idcodec.Clock
		if err := injectFaultClock(ctx, &c, log); err != nil || c.Now != nil {
			t.Fatalf("injected without the variable: %v", err)
		}
	})

	t.Run("bad file refuses", func(t *testing.T) {
		offsetFile(t, "yesterday")
		var c idcodec.Clock
		if err := injectFaultClock(ctx, &c, log); err == nil {
			t.Fatal("a bad offset file was accepted")
		}
	})

	t.Run("offset and step", func(t *testing.T) {
		path := offsetFile(t, "-1h\n")
		var c idcodec.Clock
		if err := injectFaultClock(ctx, &c, log); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(c.Read()); d < time.Hour-time.Minute || d > time.Hour+time.Minute {
			t.Fatalf("clock is %v behind, want about 1h", d)
		}
		// Step forward to the real time, stamp, then step back 10 s.
		setOffset(t, path, "0")
		waitClock(t, &c, func(d time.Duration) bool { return d < time.Minute })
		before := c.Millis()
		setOffset(t, path, "-10s")
		waitClock(t, &c, func(d time.Duration) bool { return d > 9*time.Second })
		after := c.Millis()
		if after < before {
			t.Fatalf("timestamp went back across the step: %d then %d", before, after)
		}
		// A bad content later keeps the last offset.
		setOffset(t, path, "garbage")
		time.Sleep(3 * faultClockPoll)
		if d := time.Since(c.Read()); d < 9*time.Second || d > 11*time.Second {
			t.Fatalf("clock is %v behind after a bad file, want the last offset (10s)", d)
		}
		// A removed file means no offset.
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		waitClock(t, &c, func(d time.Duration) bool { return d < time.Second })
	})
}

// waitClock waits until the lag of c behind the real clock satisfies ok.
func waitClock(t *testing.T, c *idcodec.Clock, ok func(time.Duration) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d := time.Since(c.Read())
		if ok(d) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("clock lag %v not as expected after 5s", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
