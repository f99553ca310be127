package pebblestore

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
)

// commitFatal is the format of Pebble's Fatalf when a commit cannot write
// or sync the WAL. Pebble raises it in the goroutine that called Commit,
// and if Fatalf returned, Commit would report success for a batch that is
// not durable.
const commitFatal = "pebble: fatal commit error: %v"

// fatalPanic carries a Fatalf of Pebble up to the recover of the store
// goroutine that called into Pebble (guarded).
type fatalPanic struct{ err error }

// pebbleLogger keeps Pebble off stderr and never lets its Fatalf end the
// process: a disk that fills or fails makes the store refuse requests (a
// sticky failure, see Fatalf), not crash.
type pebbleLogger struct {
	z       *zap.Logger
	limit   *logLimiter
	onFatal func(error) // the guard's Fail; set before Pebble opens
	// owned holds the ids of the goroutines that call into Pebble under
	// guarded: the Open call while it opens, and the flusher.
	owned sync.Map
	// park is what a Fatalf of a goroutine of Pebble's own waits on; nil
	// (forever) except in tests.
	park <-chan struct{}
}

func (l *pebbleLogger) Infof(format string, args ...any) {
	if ce := l.z.Check(zap.DebugLevel, ""); ce != nil {
		l.z.Debug(fmt.Sprintf("pebble: "+format, args...))
	}
}

// Errorf logs at most one line of each format per interval, with the
// number of lines it left out: a failing background job repeats the same
// error in a tight loop.
func (l *pebbleLogger) Errorf(format string, args ...any) {
	if ok, suppressed := l.limit.allow(format); ok {
		l.z.Error(fmt.Sprintf("pebble: "+format, args...), zap.Int("suppressed", suppressed))
	}
}

// Fatalf puts the store in the failed state (every request refused, Ping
// names the cause) and then never returns into Pebble where returning would
// be wrong:
//   - a commit error panics; the store's recover in the committing
//     goroutine turns it into the batch's error (a returned Fatalf would
//     acknowledge a batch that is not in the WAL);
//   - any other Fatalf in a store goroutine (Open) returns: there Pebble
//     returns the error itself, and Open fails cleanly;
//   - any other Fatalf in a goroutine of Pebble's own (a flush or
//     compaction whose MANIFEST write failed) parks that goroutine for
//     good: Pebble cannot tell whether its MANIFEST record was written, and a
//     retry could append after a torn record. Nothing of it reaches the disk
//     again; the next start recovers from the WAL and MANIFEST as after a
//     crash, and Close gives up on it after CloseTimeout.
func (l *pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if !strings.HasPrefix(msg, "pebble: ") {
		msg = "pebble: " + msg
	}
	err := errors.New(msg)
	l.z.Error("fatal error of pebble; the store refuses every request until restart", zap.Error(err))
	if l.onFatal != nil {
		l.onFatal(err)
	}
	if format == commitFatal {
		panic(fatalPanic{err})
	}
	if _, ok := l.owned.Load(goid()); ok {
		return
	}
	<-l.park
}

// guarded runs fn, which calls into Pebble, in a goroutine the Fatalf
// policy knows as the store's, and turns a Fatalf panic into an error.
func (l *pebbleLogger) guarded(fn func() error) (err error) {
	id := goid()
	l.owned.Store(id, struct{}{})
	defer l.owned.Delete(id)
	defer func() {
		if r := recover(); r != nil {
			fp, ok := r.(fatalPanic)
			if !ok {
				panic(r)
			}
			err = fp.err
		}
	}()
	return fn()
}

// goid returns the id of the calling goroutine, from the first line of its
// stack ("goroutine 42 [running]:"). Only Fatalf and guarded ask, so its
// cost does not matter.
func goid() uint64 {
	var buf [64]byte
	b := bytes.TrimPrefix(buf[:runtime.Stack(buf[:], false)], []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		if id, err := strconv.ParseUint(string(b[:i]), 10, 64); err == nil {
			return id
		}
	}
	return 0
}

// logLimiter lets one line per key through per interval and counts the
// others.
type logLimiter struct {
	every time.Duration
	now   func() time.Time
	mu    sync.Mutex
	seen  map[string]*limited
}

type limited struct {
	last       time.Time
	suppressed int
}

func newLogLimiter(every time.Duration) *logLimiter {
	return &logLimiter{every: every, now: time.Now, seen: map[string]*limited{}}
}

// allow reports whether a line of key may be logged now and, if so, how
// many were held back since the last one.
func (l *logLimiter) allow(key string) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	e := l.seen[key]
	if e == nil {
		if len(l.seen) >= 256 { // keys are Pebble's format strings: few
			clear(l.seen)
		}
		l.seen[key] = &limited{last: now}
		return true, 0
	}
	if now.Sub(e.last) < l.every {
		e.suppressed++
		return false, 0
	}
	suppressed, e.suppressed, e.last = e.suppressed, 0, now
	return true, suppressed
}

// repeated reports whether key was let through less than an interval ago.
func (l *logLimiter) repeated(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.seen[key]
	return e != nil && l.now().Sub(e.last) < l.every
}

// backgroundBackoff is how long a background job that fails again with the
// same kind of error waits before Pebble retries it: Pebble retries a failed
// flush at once, in a loop.
const backgroundBackoff = 250 * time.Millisecond

// eventListener routes Pebble's events: background errors and slow disk
// writes to the rate-limited log, corruption to the sticky failure.
func (l *pebbleLogger) eventListener() *pebble.EventListener {
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			const key = "background error"
			if l.limit.repeated(key) {
				// Called with the DB's mutex held, from the failing job's
				// goroutine: only that job (and writes, already refused
				// while the disk is full) wait.
				time.Sleep(backgroundBackoff)
			}
			if ok, suppressed := l.limit.allow(key); ok {
				l.z.Error("pebble: background error", zap.Error(err), zap.Int("suppressed", suppressed))
			}
		},
		DiskSlow: func(info pebble.DiskSlowInfo) {
			if ok, suppressed := l.limit.allow("disk slow"); ok {
				l.z.Warn("pebble: disk slow", zap.String("info", info.String()), zap.Int("suppressed", suppressed))
			}
		},
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			err := fmt.Errorf("pebble: data corruption: %s", info)
			l.z.Error("pebble: data corruption; the store refuses every request until restart", zap.Error(err))
			if l.onFatal != nil {
				l.onFatal(err)
			}
		},
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			if ok, suppressed := l.limit.allow("write stall"); ok {
				l.z.Warn("pebble: write stall", zap.String("reason", info.Reason), zap.Int("suppressed", suppressed))
			}
		},
	}
}
