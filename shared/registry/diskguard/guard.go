// Package diskguard keeps an embedded store from running its disk out of
// space and from queueing requests behind a stalled disk. One Guard watches
// one data directory; the store asks it before every write (Check), tells it
// when a commit starts and ends, and reports a failure it cannot recover
// from (Fail).
//
// Invariants:
//   - Writes are refused (Check returns an error wrapping
//     registry.ErrUnavailable and ErrLowSpace) while the filesystem has less
//     than the threshold free, max(MinFreeBytes, MinFreePercent of its
//     size): the store stops growing well before the kernel answers ENOSPC.
//     The free space is measured every PollInterval and again as soon as the
//     store has written a quarter of the headroom it had at the last
//     measure, so a burst cannot overshoot by more than that quarter.
//   - The ballast, a file of BallastBytes beside the store, exists only
//     while writes are admitted. Refusing deletes it, so flushes, compactions
//     and Close always have that much room; writes resume only once the
//     ballast fits again above the threshold with a margin, after which it
//     is re-created.
//     Resuming needs no restart.
//   - A commit in flight for longer than StallTimeout makes Check and Ping
//     fail (ErrStalled) until it returns: new requests fail fast instead of
//     queueing behind a disk that does not answer.
//   - Fail is sticky: after it, every check fails with ErrFailed naming the
//     cause, until the process restarts.
//   - New refuses to start on a filesystem below the threshold, counting a
//     ballast left by an earlier run as free: one error line names the
//     directory, the free bytes and the needed bytes.
package diskguard

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/platform/ticker"
	"github.com/idgen/idgen/shared/registry"
)

// Sentinel errors; the errors of Check and Ping also wrap
// registry.ErrUnavailable (the API answers 503 with Retry-After).
var (
	// ErrLowSpace means the filesystem of the data directory has less free
	// space than the threshold.
	ErrLowSpace = errors.New("diskguard: low disk space")
	// ErrStalled means a commit has been in flight for longer than
	// StallTimeout.
	ErrStalled = errors.New("diskguard: disk stalled")
	// ErrFailed means the store hit an error it cannot recover from without
	// a restart (Fail).
	ErrFailed = errors.New("diskguard: store failed")
)

// Defaults of Config.
const (
	DefaultMinFreeBytes   = 256 << 20
	DefaultMinFreePercent = 2.0
	DefaultMaxBallast     = 64 << 20
	DefaultBallastPercent = 1.0
	DefaultPollInterval   = time.Second
	DefaultStallTimeout   = 10 * time.Second
)

// Usage is what a filesystem reports of its space.
type Usage struct {
	FreeBytes  int64 // available to the store's writes
	TotalBytes int64
}

// Config of a Guard; the zero value means the documented defaults.
type Config struct {
	// MinFreeBytes is the free space below which writes are refused (or
	// the percentage below, whichever is larger). Default 256 MiB;
	// negative: none (the percentage alone).
	MinFreeBytes int64
	// MinFreePercent of the filesystem's size is the other bound of the
	// threshold. Default 2; negative: none.
	MinFreePercent float64
	// BallastBytes is the size of the ballast file. Default 1% of the
	// filesystem, at most 64 MiB; negative: no ballast.
	BallastBytes int64
	// PollInterval is how often the free space is measured. Default 1s.
	PollInterval time.Duration
	// StallTimeout bounds a commit before the store counts as stalled.
	// Default 10s.
	StallTimeout time.Duration
	// Usage measures the filesystem holding dir. Default: statfs.
	Usage func(dir string) (Usage, error)
	// Now is the clock of stall detection. Default time.Now.
	Now func() time.Time
	// Logger receives every change of state (refusing, resumed, stalled,
	// failed, ballast). Default: none.
	Logger *zap.Logger
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	if c.PollInterval < 0 {
		return errors.New("diskguard: negative poll interval")
	}
	if c.StallTimeout < 0 {
		return errors.New("diskguard: negative stall timeout")
	}
	if c.MinFreePercent > 50 {
		return fmt.Errorf("diskguard: min free percent %g above 50", c.MinFreePercent)
	}
	return nil
}

func (c *Config) setDefaults() {
	c.MinFreeBytes = cmp.Or(c.MinFreeBytes, DefaultMinFreeBytes)
	c.MinFreePercent = cmp.Or(c.MinFreePercent, DefaultMinFreePercent)
	c.PollInterval = cmp.Or(c.PollInterval, DefaultPollInterval)
	c.StallTimeout = cmp.Or(c.StallTimeout, DefaultStallTimeout)
	if c.Usage == nil {
		c.Usage = statfs
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

// threshold is the free space below which writes are refused.
func (c *Config) threshold(total int64) int64 {
	t := max(c.MinFreeBytes, 0)
	if c.MinFreePercent > 0 {
		t = max(t, int64(float64(total)*c.MinFreePercent/100))
	}
	return t
}

// ballast is the size of the ballast file on a filesystem of total bytes.
func (c *Config) ballast(total int64) int64 {
	switch {
	case c.BallastBytes < 0:
		return 0
	case c.BallastBytes > 0:
		return c.BallastBytes
	}
	return min(DefaultMaxBallast, int64(float64(total)*DefaultBallastPercent/100))
}

func statfs(dir string) (Usage, error) {
	u, err := vfs.Default.GetDiskUsage(dir)
	if err != nil {
		return Usage{}, err
	}
	return Usage{FreeBytes: int64(u.AvailBytes), TotalBytes: int64(u.TotalBytes)}, nil
}

// State is what the Guard knows now, for metrics and health details.
type State struct {
	Dir            string
	FreeBytes      int64 // at the last measure
	TotalBytes     int64
	ThresholdBytes int64
	BallastBytes   int64 // held on disk now (0 while refusing)
	Refusing       bool  // free space below the threshold: writes refused
	Stalled        bool  // a commit in flight for longer than StallTimeout
	StalledFor     time.Duration
	Failed         error // the cause given to Fail, or nil
	MeasuredAt     time.Time
}

// Guard watches one data directory. Safe for concurrent use.
type Guard struct {
	cfg     Config
	dir     string
	ballast string // path of the ballast file

	// mu serializes measuring and the ballast; it guards st and
	// measureFailing (a failing statfs is logged once, not every poll).
	mu             sync.Mutex
	st             State
	measureFailing bool

	// The fast path of Check reads only these.
	refusing    atomic.Bool
	lowErr      atomic.Pointer[error] // the answer while refusing
	failed      atomic.Pointer[error]
	commitStart atomic.Int64 // unix ns of the commit in flight, 0 when none
	stallNoted  atomic.Bool  // the stall in flight has been logged
	written     atomic.Int64 // bytes written since the last measure
	headroom    atomic.Int64 // free minus threshold at the last measure

	stop context.CancelFunc // ends poll
	done chan struct{}      // closed when poll has returned
}

// New measures dir's filesystem, refuses to start below the threshold
// (ErrLowSpace: the error names dir, the free and the needed bytes), lays
// the ballast at ballastPath when space allows and starts polling. Close
// stops it.
func New(cfg Config, dir, ballastPath string) (*Guard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	g := &Guard{cfg: cfg, dir: dir, ballast: ballastPath, done: make(chan struct{})}
	g.st.Dir = dir
	u, err := cfg.Usage(dir)
	if err != nil {
		return nil, fmt.Errorf("diskguard: measure %s: %w", dir, err)
	}
	held := ballastSize(ballastPath)
	need := cfg.threshold(u.TotalBytes)
	if u.FreeBytes+held < need {
		counting := ""
		if held > 0 {
			counting = fmt.Sprintf(" (counting the %s ballast %s)", Bytes(held), ballastPath)
		}
		return nil, fmt.Errorf("%w: %s has %s free%s, needs at least %s: free space on its filesystem, then start again",
			ErrLowSpace, dir, Bytes(u.FreeBytes+held), counting, Bytes(need))
	}
	g.mu.Lock()
	g.st.BallastBytes = held
	switch {
	case u.FreeBytes < need:
		// The ballast is what lets this start: give its room to the store.
		g.releaseLocked("start-up below the threshold without it")
	case held > 0 && cfg.ballast(u.TotalBytes) == 0:
		g.releaseLocked("no ballast configured")
	}
	g.measureLocked()
	g.mu.Unlock()
	ctx, stop := context.WithCancel(context.Background())
	g.stop = stop
	go g.poll(ctx)
	return g, nil
}

// Close stops polling. The ballast stays on disk for the next start.
func (g *Guard) Close() {
	g.stop()
	<-g.done
}

// Check is asked before every write: nil, or an error wrapping
// registry.ErrUnavailable and one of ErrFailed, ErrStalled, ErrLowSpace.
func (g *Guard) Check() error {
	if err := g.CheckFailed(); err != nil {
		return err
	}
	if start := g.commitStart.Load(); start != 0 {
		if d := g.cfg.Now().Sub(time.Unix(0, start)); d > g.cfg.StallTimeout {
			return fmt.Errorf("%w: %w: a commit in %s has been in flight for %s (bound %s)",
				registry.ErrUnavailable, ErrStalled, g.dir, d.Round(time.Millisecond), g.cfg.StallTimeout)
		}
	}
	if g.refusing.Load() {
		if p := g.lowErr.Load(); p != nil {
			return *p
		}
	}
	return nil
}

// CheckFailed is asked before every read: nil, or the sticky failure.
func (g *Guard) CheckFailed() error {
	if p := g.failed.Load(); p != nil {
		return *p
	}
	return nil
}

// Fail puts the guard in the failed state for good; the first cause wins.
// It reports whether this call set it.
func (g *Guard) Fail(cause error) bool {
	err := fmt.Errorf("%w: %w: %w; restart once the disk is healthy", registry.ErrUnavailable, ErrFailed, cause)
	if !g.failed.CompareAndSwap(nil, &err) {
		return false
	}
	g.cfg.Logger.Error("store failed: refusing every request until restart", zap.String("dir", g.dir), zap.Error(cause))
	return true
}

// CommitStarted marks the start of a commit (one at a time).
func (g *Guard) CommitStarted() {
	g.commitStart.Store(g.cfg.Now().UnixNano())
}

// CommitDone marks the end of the commit of CommitStarted, which wrote
// about n bytes (or failed with err). A failed commit, or one that brings the
// written bytes near the threshold, is followed by a measure at once.
func (g *Guard) CommitDone(n int64, err error) {
	start := g.commitStart.Swap(0)
	if g.stallNoted.Swap(false) {
		g.cfg.Logger.Warn("disk stall over: the commit returned", zap.String("dir", g.dir),
			zap.Duration("after", g.cfg.Now().Sub(time.Unix(0, start))), zap.Error(err))
	}
	if g.written.Add(n) > g.headroom.Load()/4 || err != nil {
		// TryLock: when the poller is measuring, its measure serves.
		if g.mu.TryLock() {
			g.measureLocked()
			g.mu.Unlock()
		}
	}
}

// DiskFull is told that a write hit ENOSPC: the ballast goes at once and
// writes are refused until the space returns. It is cheap (one unlink and
// one statfs), for callers that block writes while it runs.
func (g *Guard) DiskFull() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.refuseLocked("a write hit ENOSPC")
	g.measureLocked()
}

// State returns the current state (for metrics).
func (g *Guard) State() State {
	g.mu.Lock()
	st := g.st
	g.mu.Unlock()
	st.Failed = g.CheckFailed()
	if start := g.commitStart.Load(); start != 0 {
		if d := g.cfg.Now().Sub(time.Unix(0, start)); d > g.cfg.StallTimeout {
			st.Stalled, st.StalledFor = true, d
		}
	}
	return st
}

// poll measures every PollInterval, and logs a stall once, until ctx ends.
func (g *Guard) poll(ctx context.Context) {
	defer close(g.done)
	ticker.Every(ctx, g.cfg.PollInterval, func() {
		g.mu.Lock()
		g.measureLocked()
		g.mu.Unlock()
		if st := g.State(); st.Stalled && !g.stallNoted.Swap(true) {
			g.cfg.Logger.Error("disk stalled: a commit is in flight past the bound; refusing writes and reporting not ready",
				zap.String("dir", g.dir), zap.Duration("for", st.StalledFor), zap.Duration("bound", g.cfg.StallTimeout))
		}
	})
}

// measureLocked measures the filesystem and moves between admitting and
// refusing writes, releasing or laying the ballast. g.mu is held.
//
// Admitting → refusing when free < threshold (the ballast goes).
// Refusing → admitting when free ≥ threshold + ballast + margin (the
// larger of 1 MiB and threshold/16): the ballast fits again above the
// threshold with room to spare, so neither re-laying it nor a filesystem
// hovering at the threshold flips the state straight back, and the room an
// ENOSPC freed by releasing the ballast stays free for the store.
func (g *Guard) measureLocked() {
	u, err := g.cfg.Usage(g.dir)
	if err != nil {
		if !g.measureFailing {
			g.cfg.Logger.Warn("cannot measure free disk space; keeping the last state", zap.String("dir", g.dir), zap.Error(err))
		}
		g.measureFailing = true
		return
	}
	g.measureFailing = false
	threshold, ballast := g.cfg.threshold(u.TotalBytes), g.cfg.ballast(u.TotalBytes)
	resume := threshold + ballast + max(1<<20, threshold/16)
	changed := true
	switch refusing := g.refusing.Load(); {
	case !refusing && u.FreeBytes < threshold:
		g.refuseLocked(fmt.Sprintf("%s free, below the threshold %s", Bytes(u.FreeBytes), Bytes(threshold)))
	case refusing && u.FreeBytes >= resume:
		if ballast > 0 {
			g.layLocked(ballast)
		}
		g.refusing.Store(false)
		g.cfg.Logger.Info("free disk space is back: admitting writes", zap.String("dir", g.dir),
			zap.Int64("free_bytes", u.FreeBytes), zap.Int64("threshold_bytes", threshold))
	case !refusing && g.st.BallastBytes == 0 && ballast > 0 && u.FreeBytes-ballast >= threshold:
		g.layLocked(ballast)
	default:
		changed = false
	}
	if changed {
		// The ballast came or went: measure what is left.
		if u2, err := g.cfg.Usage(g.dir); err == nil {
			u = u2
		}
	}
	g.written.Store(0)
	g.headroom.Store(u.FreeBytes - threshold)
	g.st.FreeBytes, g.st.TotalBytes, g.st.ThresholdBytes, g.st.MeasuredAt = u.FreeBytes, u.TotalBytes, threshold, g.cfg.Now()
	g.st.Refusing = g.refusing.Load()
	if g.st.Refusing {
		err := fmt.Errorf("%w: %w: %s has %s free, below the threshold %s; writes resume by themselves at %s free",
			registry.ErrUnavailable, ErrLowSpace, g.dir, Bytes(u.FreeBytes), Bytes(threshold), Bytes(resume))
		g.lowErr.Store(&err)
	}
}

// refuseLocked starts refusing writes and deletes the ballast.
func (g *Guard) refuseLocked(why string) {
	if !g.refusing.Swap(true) {
		err := fmt.Errorf("%w: %w: %s: %s", registry.ErrUnavailable, ErrLowSpace, g.dir, why)
		g.lowErr.Store(&err)
		g.cfg.Logger.Error("low disk space: refusing writes until space is freed", zap.String("dir", g.dir), zap.String("why", why))
	}
	g.releaseLocked(why)
}

// Bytes formats a byte count for people (binary units).
type Bytes int64

func (b Bytes) String() string {
	const unit = 1 << 10
	if b < unit && b > -unit {
		return fmt.Sprintf("%d B", int64(b))
	}
	v, i := float64(b), -1
	for v >= unit || v <= -unit {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.2f %ciB", v, "KMGTPE"[i])
}
