package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/ticker"
)

// faultClockEnv names the FAULT-INJECTION knob for chaos tests only (never
// set it in production): a file holding a Go duration ("-30s", "0") that is
// added to the wall clock stamping IDs and timing the worker-slot lease.
// The file is read at start (an instance that starts with a clock behind
// its previous life) and every faultClockPoll after (a running instance's
// clock stepping backwards, as NTP or a VM migration does). A missing or
// empty file means no offset. It exists because Go reads time through the
// vDSO, so faketime and LD_PRELOAD tricks do not reach a Go program.
//
// The offset moves the monotonic reading with the wall reading
// (time.Time.Add), so the lease sees a step too: a step back stretches the
// local lease by the step while it lasts. Chaos programs do not combine it
// with partitions.
const faultClockEnv = "IDGEN_FAULT_CLOCK_OFFSET_FILE"

// faultClockPoll is how often the offset file is re-read.
const faultClockPoll = 100 * time.Millisecond

// faultClock is the injected clock: time.Now plus the file's offset.
type faultClock struct {
	path   string
	offset atomic.Int64 // time.Duration
}

// Now is the injected time source.
func (f *faultClock) Now() time.Time { return time.Now().Add(time.Duration(f.offset.Load())) }

// readOffset parses the file: missing or blank means 0.
func readOffset(path string) (time.Duration, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// injectFaultClock installs the fault clock on clock when faultClockEnv is
// set, and re-reads the offset until ctx ends. A file that cannot be parsed
// at start is an error (the instance refuses to start); later, a bad
// content keeps the last offset and is logged.
func injectFaultClock(ctx context.Context, clock *idcodec.Clock, log *zap.Logger) error {
	path := os.Getenv(faultClockEnv)
	if path == "" {
		return nil
	}
	d, err := readOffset(path)
	if err != nil {
		return fmt.Errorf("%s: %w", faultClockEnv, err)
	}
	fc := &faultClock{path: path}
	fc.offset.Store(int64(d))
	clock.Now = fc.Now
	log.Warn("FAULT INJECTION: the clock is offset by the duration in "+faultClockEnv+"; for chaos tests only",
		zap.String("file", path), zap.Duration("offset", d))
	go fc.watch(ctx, log)
	return nil
}

func (f *faultClock) watch(ctx context.Context, log *zap.Logger) {
	ticker.Every(ctx, faultClockPoll, func() {
		d, err := readOffset(f.path)
		if err != nil {
			log.Warn("FAULT INJECTION: clock offset file unreadable; keeping the last offset", zap.Error(err))
			return
		}
		if old := time.Duration(f.offset.Swap(int64(d))); old != d {
			log.Warn("FAULT INJECTION: clock stepped", zap.Duration("from", old), zap.Duration("to", d))
		}
	})
}
