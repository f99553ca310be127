package pebblestore

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// testLogger returns a logger whose failures the returned func lists.
func testLogger(every time.Duration) (*pebbleLogger, *observer.ObservedLogs, func() []error) {
	core, logs := observer.New(zap.DebugLevel)
	var (
		mu    sync.Mutex
		fails []error
	)
	l := &pebbleLogger{z: zap.New(core), limit: newLogLimiter(every), onFatal: func(err error) {
		mu.Lock()
		fails = append(fails, err)
		mu.Unlock()
	}}
	return l, logs, func() []error {
		mu.Lock()
		defer mu.Unlock()
		return append([]error(nil), fails...)
	}
}

// TestFatalfPolicy: Pebble's Fatalf never ends the process. Each case
// fails the store; a commit error panics into the store's recover (it must
// not return), another Fatalf returns in a store goroutine and parks a
// goroutine of Pebble's own.
func TestFatalfPolicy(t *testing.T) {
	t.Run("commit error in a store goroutine", func(t *testing.T) {
		l, _, fails := testLogger(time.Second)
		err := l.guarded(func() error {
			l.Fatalf(commitFatal, errors.New("write 000004.log: no space left on device"))
			t.Error("Fatalf of a commit returned")
			return nil
		})
		if err == nil || !strings.Contains(err.Error(), "fatal commit error") || len(fails()) != 1 {
			t.Fatalf("guarded: %v, failures %v", err, fails())
		}
	})
	t.Run("other fatal in a store goroutine", func(t *testing.T) {
		l, _, fails := testLogger(time.Second)
		returned := false
		err := l.guarded(func() error {
			l.Fatalf("MANIFEST sync failed: %v", errors.New("EIO"))
			returned = true
			return errors.New("pebble's own error")
		})
		if !returned || err == nil || err.Error() != "pebble's own error" || len(fails()) != 1 {
			t.Fatalf("returned %v, guarded: %v, failures %v", returned, err, fails())
		}
	})
	t.Run("fatal in a goroutine of pebble", func(t *testing.T) {
		l, _, fails := testLogger(time.Second)
		park := make(chan struct{})
		l.park = park
		done := make(chan struct{})
		go func() {
			defer close(done)
			l.Fatalf("%s", "MANIFEST write failed: no space left on device")
		}()
		select {
		case <-done:
			t.Fatal("Fatalf returned into a goroutine of pebble")
		case <-time.After(50 * time.Millisecond):
		}
		if len(fails()) != 1 {
			t.Fatalf("failures %v", fails())
		}
		close(park) // only tests unpark: in service it waits for the exit
		<-done
	})
	t.Run("any other panic passes", func(t *testing.T) {
		l, _, _ := testLogger(time.Second)
		defer func() {
			if r := recover(); r != "bug" {
				t.Fatalf("recovered %v, want the original panic", r)
			}
		}()
		_ = l.guarded(func() error { panic("bug") })
	})
}

// TestErrorfRateLimited: a background error repeated in a loop is logged
// once per interval, with the count of the ones left out.
func TestErrorfRateLimited(t *testing.T) {
	l, logs, _ := testLogger(10 * time.Second)
	now := time.Unix(1_764_000_000, 0)
	l.limit.now = func() time.Time { return now }
	for i := 0; i < 1000; i++ {
		l.Errorf("background error: %s", "flush: no space left on device")
		now = now.Add(time.Millisecond)
	}
	l.Errorf("other error: %d", 1)
	now = now.Add(10 * time.Second)
	l.Errorf("background error: %s", "flush: no space left on device")
	var got []string
	for _, e := range logs.All() {
		got = append(got, e.Message)
	}
	if len(got) != 3 {
		t.Fatalf("%d lines, want 3: %q", len(got), got)
	}
	last := logs.All()[2]
	if n := last.ContextMap()["suppressed"]; n != int64(999) {
		t.Fatalf("suppressed = %v, want 999", n)
	}
}
