// Package generator is the hot path of idgen: it hands out IDs from an
// in-memory counter range with one atomic add, and keeps a second range
// claimed in the background (double buffer) so callers do not wait on the
// range source under steady load.
//
// Invariants: every counter value is handed out at most once (ranges come from
// a RangeSource that never repeats a range, and each value of a range is taken
// by exactly one atomic add); a batch is one contiguous run of counters with one
// timestamp, so its IDs are in increasing order; timestamps never go back
// within a Generator. Counters skipped at the end of a range (a batch that did
// not fit) are burnt, never reused.
package generator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// ErrUnavailable means no counter range is available right now (the range
// source failed and the claimed ranges are used up) or the instance may not
// issue (worker slot lost). Callers answer 503 with Retry-After.
var ErrUnavailable = errors.New("generator: no ID range available")

// ErrBatchSize means a batch larger than Config.MaxBatch was asked for.
var ErrBatchSize = errors.New("generator: batch size out of range")

// ErrClosed is returned after Close.
var ErrClosed = errors.New("generator: closed")

// segment is one claimed range being used by atomic adds.
type segment struct {
	next       atomic.Uint64 // next counter to hand out; may overshoot end
	_          [56]byte      // keep the hot counter on its own cache line
	end        uint64
	prefetchAt uint64
}

func newSegment(r Range, ratio float64) *segment {
	s := &segment{end: r.End, prefetchAt: r.Start + uint64(float64(r.Len())*ratio)}
	s.next.Store(r.Start)
	return s
}

func (s *segment) remaining() uint64 {
	n := s.next.Load()
	if n >= s.end {
		return 0
	}
	return s.end - n
}

// Stats is a snapshot of a Generator's counters, for metrics.
type Stats struct {
	Claims       uint64 // ranges claimed successfully
	ClaimErrors  uint64 // failed claims
	Step         uint64 // size of the next claim
	Headroom     uint64 // counters left in the current and the prefetched range
	LastClaimDur time.Duration
	LastError    string // error of the last claim when it failed, "" after a success
}

// Generator issues IDs. It is safe for concurrent use.
type Generator struct {
	cfg    Config
	src    RangeSource
	worker WorkerSource
	clock  *idcodec.Clock

	cur atomic.Pointer[segment]

	ctx    context.Context // cancelled by Close; parent of background claims
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	next        *segment      // prefetched range, guarded by mu
	claiming    bool          // a claim is in flight
	claimDone   chan struct{} // closed when the in-flight claim ends
	lastErr     error         // error of the last failed claim
	lastFailure string        // error of the last claim when it failed, "" after a success
	failedUntil time.Time     // no new claim from the hot path before this
	step        uint64
	lastClaimAt time.Time
	lastClaimed uint64      // size of the previous claim
	retry       *time.Timer // a claim again after a failed one left nothing to hand out
	closed      bool

	claims, claimErrors atomic.Uint64
	lastClaimDur        atomic.Int64

	// The coarse clock of the fixed-worker path (see coarseMillis):
	// coarseMS is the ticker's last reading, 0 while no ticker runs;
	// coarseUsed says an ID used it since the ticker's last tick;
	// coarseRunning (guarded by mu) says the ticker goroutine exists.
	coarseMS      atomic.Uint64
	coarseUsed    atomic.Bool
	coarseRunning bool
}

// The coarse clock: with a fixed worker (no lease to check against the
// time), an ID's timestamp comes from a reading a ticker goroutine refreshes
// every coarseTick, instead of one clock read per ID (a vDSO call that is
// most of the hot path's cost). The timestamp is then late by at most
// coarseTick plus the ticker's scheduling delay (both far below the ID's own
// 1 ms resolution in practice), never ahead of the clock, and still never
// goes back (Clock.ObserveMillis). The ticker stops after coarseIdleTicks
// without an ID (an idle instance does not wake every millisecond); the next
// ID then reads the clock itself and restarts it. Injected clocks (tests)
// are always read directly.
const (
	coarseTick      = time.Millisecond
	coarseIdleTicks = 100
)

// New returns a Generator that claims ranges from src and stamps the worker
// slot of worker. It claims nothing until the first ID is asked for (lazy cold
// start) unless Warm is called. A failed claim that leaves it with nothing to
// hand out is retried in the background every RetryAfter until one succeeds.
func New(src RangeSource, worker WorkerSource, cfg Config) (*Generator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &Generator{cfg: cfg, src: src, worker: worker, clock: cfg.Clock, step: cfg.InitialStep, ctx: ctx, cancel: cancel}, nil
}

// Warm claims the first range now (and waits for it), so the first request
// does not pay for the claim.
func (g *Generator) Warm(ctx context.Context) error {
	return g.advance(ctx, nil)
}

// Next returns one fresh ID.
func (g *Generator) Next(ctx context.Context) (idcodec.ID, error) {
	var out [1]idcodec.ID
	_, err := g.fill(ctx, out[:])
	return out[0], err
}

// NextN appends n fresh IDs in increasing order to dst: one contiguous run of
// counters with one timestamp.
func (g *Generator) NextN(ctx context.Context, n int, dst []idcodec.ID) ([]idcodec.ID, error) {
	if n < 1 || n > g.cfg.MaxBatch {
		return dst, fmt.Errorf("%w: %d not in 1..%d", ErrBatchSize, n, g.cfg.MaxBatch)
	}
	start := len(dst)
	dst = append(dst, make([]idcodec.ID, n)...)
	if _, err := g.fill(ctx, dst[start:]); err != nil {
		return dst[:start], err
	}
	return dst, nil
}

// fill writes len(out) consecutive IDs into out.
func (g *Generator) fill(ctx context.Context, out []idcodec.ID) (int, error) {
	n := uint64(len(out))
	fixed, isFixed := g.worker.(FixedWorker)
	if isFixed {
		// No lease to check: the cheapest clock read will do.
		first, _, err := g.take(ctx, n)
		if err != nil {
			return 0, err
		}
		idcodec.FillRun(out, idcodec.Fields{TimestampMS: g.coarseMillis(), Worker: uint16(fixed), Shard: g.cfg.Shard, Counter: first})
		return len(out), nil
	}
	// A fenced instance refuses at once: no counters taken, no wait for a
	// range claim that cannot reach its coordinator.
	now := g.clock.Read()
	w, err := g.worker.Worker(now)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	first, waited, err := g.take(ctx, n)
	if err != nil {
		return 0, err
	}
	if waited {
		// The take waited for a range claim: the lease may have run out
		// meanwhile, so it is checked again at the time that stamps the IDs.
		// Without a wait the first reading is nanoseconds old and serves
		// both (one clock read per ID instead of two).
		now = g.clock.Read()
		if w, err = g.worker.Worker(now); err != nil {
			// The counters are burnt: they were taken but are never stamped.
			g.release(Range{Start: first, End: first + n}, registry.ReleasedLeaseLost)
			return 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	idcodec.FillRun(out, idcodec.Fields{TimestampMS: g.clock.Observe(now), Worker: w, Shard: g.cfg.Shard, Counter: first})
	return len(out), nil
}

// coarseMillis returns the timestamp of the fixed-worker path: the coarse
// clock's reading when its ticker runs, else an exact read (which starts the
// ticker, unless the clock is injected or the Generator closed).
func (g *Generator) coarseMillis() uint64 {
	if ms := g.coarseMS.Load(); ms != 0 {
		if !g.coarseUsed.Load() {
			g.coarseUsed.Store(true)
		}
		return g.clock.ObserveMillis(ms)
	}
	ms := g.clock.Millis()
	if g.clock.Now != nil {
		return ms
	}
	g.mu.Lock()
	if !g.closed && !g.coarseRunning {
		g.coarseRunning = true
		g.coarseUsed.Store(true)
		g.coarseMS.Store(ms)
		g.wg.Add(1)
		go g.tick()
	}
	g.mu.Unlock()
	return ms
}

// tick refreshes the coarse clock every coarseTick until Close or until it
// has been idle for coarseIdleTicks.
func (g *Generator) tick() {
	defer g.wg.Done()
	t := time.NewTicker(coarseTick)
	defer t.Stop()
	stop := func() {
		g.mu.Lock()
		g.coarseMS.Store(0)
		g.coarseRunning = false
		g.mu.Unlock()
	}
	idle := 0
	for {
		select {
		case <-g.ctx.Done():
			stop()
			return
		case <-t.C:
		}
		if g.coarseUsed.Swap(false) {
			idle = 0
		} else if idle++; idle >= coarseIdleTicks {
			stop()
			return
		}
		g.coarseMS.Store(g.clock.Millis())
	}
}

// take reserves n consecutive counters and returns the first; waited says
// whether it had to move to another range (and may have waited for a claim).
func (g *Generator) take(ctx context.Context, n uint64) (first uint64, waited bool, err error) {
	for {
		s := g.cur.Load()
		if s != nil {
			v := s.next.Add(n)
			if v <= s.end {
				if first := v - n; first <= s.prefetchAt && v > s.prefetchAt {
					g.prefetch(ctx) // exactly one taker crosses the mark
				}
				return v - n, waited, nil
			}
			if first := v - n; first < s.end {
				// Exactly one taker crosses the end: it gives up the tail.
				g.release(Range{Start: first, End: s.end}, registry.ReleasedBatchTail)
			}
		}
		if err := g.advance(ctx, s); err != nil {
			return 0, true, err
		}
		waited = true
	}
}

// prefetch starts a background claim unless one is running or done; ctx
// is the context of the caller that started it (its span is the claim's
// parent).
func (g *Generator) prefetch(ctx context.Context) {
	g.mu.Lock()
	g.startClaimLocked(ctx)
	g.mu.Unlock()
}

func (g *Generator) startClaimLocked(ctx context.Context) {
	if g.claiming || g.next != nil || g.closed {
		return
	}
	g.claiming = true
	g.claimDone = make(chan struct{})
	g.wg.Add(1)
	go g.claim(g.claimDone, trace.SpanContextFromContext(ctx))
}

// claim runs one claim against the source and publishes the result.
// parent is the span context of the caller that started it.
func (g *Generator) claim(done chan struct{}, parent trace.SpanContext) {
	defer g.wg.Done()
	g.mu.Lock()
	step := g.step
	g.mu.Unlock()

	ctx, cancel := context.WithTimeout(g.ctx, g.cfg.ClaimTimeout)
	var span trace.Span
	if g.cfg.Tracer != nil {
		ctx, span = g.cfg.Tracer.Start(trace.ContextWithSpanContext(ctx, parent), "generator.claim_range",
			trace.WithAttributes(attribute.Int64("idgen.step", int64(step))))
	}
	t0 := time.Now()
	r, err := g.src.ClaimRange(ctx, step)
	cancel()
	if span != nil {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.SetAttributes(attribute.Int64("idgen.range_start", int64(r.Start)), attribute.Int64("idgen.range_end", int64(r.End)))
		span.End()
	}
	dur := time.Since(t0)
	g.lastClaimDur.Store(int64(dur))
	if err == nil && r.Len() < uint64(g.cfg.MaxBatch) {
		err = fmt.Errorf("range source returned %d counters, fewer than max batch %d", r.Len(), g.cfg.MaxBatch)
		if r.Len() > 0 {
			g.release(r, registry.ReleasedTooShort)
		}
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	g.claiming = false
	if err != nil {
		g.claimErrors.Add(1)
		g.lastErr = err
		g.lastFailure = err.Error()
		g.failedUntil = time.Now().Add(g.cfg.RetryAfter)
		if g.emptyLocked() && !g.closed {
			// Nothing left to hand out: claim again after RetryAfter, caller
			// or not. Behind a load balancer that routes only to ready
			// instances no caller comes while health reports no range, so
			// without this the instance would stay out of rotation after
			// the range source recovered.
			g.retry = time.AfterFunc(g.cfg.RetryAfter, g.retryClaim)
		}
	} else {
		g.claims.Add(1)
		g.lastFailure = ""
		g.next = newSegment(r, g.cfg.PrefetchRatio)
		g.adaptStepLocked(t0, r.Len())
	}
	close(done)
}

// emptyLocked reports whether no counter is left to hand out (current
// range used up or never claimed, none prefetched). The caller holds mu.
func (g *Generator) emptyLocked() bool {
	s := g.cur.Load()
	return g.next == nil && (s == nil || s.remaining() == 0)
}

// retryClaim is the background claim after a failed one left the
// generator empty; a failure schedules the next one.
func (g *Generator) retryClaim() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.emptyLocked() {
		g.startClaimLocked(context.Background())
	}
}

// adaptStepLocked sizes the next claim so that a range lasts about
// TargetLifetime at the rate the previous range was consumed: one range of
// the previous size was used (up to the prefetch mark) between two claims.
// The step moves at most 32× up or 4× down per claim, within [MinStep, MaxStep].
func (g *Generator) adaptStepLocked(now time.Time, claimed uint64) {
	if !g.lastClaimAt.IsZero() && g.lastClaimed > 0 {
		since := max(now.Sub(g.lastClaimAt), time.Millisecond)
		want := uint64(float64(g.lastClaimed) * float64(g.cfg.TargetLifetime) / float64(since))
		want = min(want, g.step*32)
		want = max(want, g.step/4)
		g.step = min(max(want, g.cfg.MinStep), g.cfg.MaxStep)
	}
	g.lastClaimAt, g.lastClaimed = now, claimed
}

// advance replaces the exhausted segment old with the prefetched one,
// claiming (and waiting for) a range when none is ready.
func (g *Generator) advance(ctx context.Context, old *segment) error {
	g.mu.Lock()
	for {
		if g.closed {
			g.mu.Unlock()
			return ErrClosed
		}
		if g.cur.Load() != old {
			g.mu.Unlock()
			return nil
		}
		if g.next != nil {
			g.cur.Store(g.next)
			g.next = nil
			g.mu.Unlock()
			return nil
		}
		if !g.claiming && time.Now().Before(g.failedUntil) {
			// The last claim failed moments ago: answer at once (503 with
			// Retry-After) instead of queueing every request behind retries.
			err := g.lastErr
			g.mu.Unlock()
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		g.startClaimLocked(ctx)
		done := g.claimDone
		g.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
		}
		g.mu.Lock()
	}
}

// RetryAfter is the wait to advise callers after ErrUnavailable.
func (g *Generator) RetryAfter() time.Duration { return g.cfg.RetryAfter }

// Stats returns a snapshot for metrics.
func (g *Generator) Stats() Stats {
	g.mu.Lock()
	step, lastFailure := g.step, g.lastFailure
	var head uint64
	if g.next != nil {
		head = g.next.remaining()
	}
	g.mu.Unlock()
	if s := g.cur.Load(); s != nil {
		head += s.remaining()
	}
	return Stats{
		Claims:       g.claims.Load(),
		ClaimErrors:  g.claimErrors.Load(),
		Step:         step,
		Headroom:     head,
		LastClaimDur: time.Duration(g.lastClaimDur.Load()),
		LastError:    lastFailure,
	}
}

// release tells Config.Released of r.
func (g *Generator) release(r Range, reason string) {
	if g.cfg.Released != nil {
		g.cfg.Released(r, reason)
	}
}

// Drain closes the Generator, stops it handing out counters at once, and
// gives up what it holds: the unissued tail of the range in use
// (registry.ReleasedAtShutdown) and the prefetched range
// (registry.ReleasedPrefetch), told to Config.Released and returned. A call racing Drain either took its
// counters before it (and issues them) or gets ErrClosed.
func (g *Generator) Drain() []Range {
	g.Close()
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []Range
	if s := g.cur.Load(); s != nil {
		if old := s.next.Swap(s.end); old < s.end {
			out = append(out, Range{Start: old, End: s.end})
			g.release(out[len(out)-1], registry.ReleasedAtShutdown)
		}
	}
	if g.next != nil {
		r := Range{Start: g.next.next.Load(), End: g.next.end}
		g.next = nil
		if r.Len() > 0 {
			out = append(out, r)
			g.release(r, registry.ReleasedPrefetch)
		}
	}
	return out
}

// Close stops background claims and waits for them. IDs already handed out
// stay valid; later calls return ErrClosed once the current range is used
// up (Drain stops them at once).
func (g *Generator) Close() {
	g.mu.Lock()
	g.closed = true
	if g.retry != nil {
		g.retry.Stop()
	}
	g.mu.Unlock()
	g.cancel()
	g.wg.Wait()
}
