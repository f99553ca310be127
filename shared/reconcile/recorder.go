// Package reconcile accounts for every counter of every claimed range: the
// Recorder writes each claim to the registry's claim ledger before any ID
// of it is issued and each counter given up to the claim's releases, and
// Run reads the ledger and the registry's records back into a Report.
//
// Invariants: a range reaches the generator only once its claim is
// durable in the ledger, so every ID the registry holds of this source is
// inside a recorded claim; a ZooKeeper claim is announced in the ledger
// before its compare-and-set is sent, so every range that may have been
// committed is in the ledger, confirmed or not. Every counter of a
// confirmed claim is then exactly one of issued (a record), released (with
// the generator's reason), or neither because its instance still holds it
// or stopped without releasing it (a crash); no counter of an unconfirmed
// claim is issued. Anything else is a violation.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/generator"
	"github.com/idgen/idgen/shared/platform/backoff"
	"github.com/idgen/idgen/shared/registry"
)

// Ledger is what the Recorder writes to: the registry's claim ledger.
type Ledger interface {
	RecordClaim(ctx context.Context, c registry.Claim) error
	RecordRelease(ctx context.Context, claimStart uint64, r registry.Release) error
}

// RecorderConfig configures a Recorder. Source, Ledger and Kind are
// required.
type RecorderConfig struct {
	Source   generator.RangeSource
	Ledger   Ledger
	Kind     string // registry.SourceZooKeeper or registry.SourceClockFloor
	Shard    uint8
	Instance string
	// Worker names the worker slot recorded with each claim (nil: 0).
	Worker generator.WorkerSource
	Log    *zap.Logger
	// Now is the clock of the claims' and releases' times (nil: time.Now).
	Now func() time.Time
}

// Recorder is a generator.RangeSource that records each claim of Source in
// the Ledger before handing it out, and a generator.Config.Released that
// records releases from a background writer. Safe for concurrent use.
type Recorder struct {
	cfg RecorderConfig

	mu      sync.Mutex
	claims  []registry.Claim // recent claims, oldest first (releases name one)
	pending []write          // ledger writes not yet done, in order
	idle    *sync.Cond       // broadcast when pending empties
	wake    chan struct{}

	stop     chan struct{} // closed by Close: the writer gives up
	stopOnce sync.Once
	done     chan struct{} // closed when the writer returned
}

// write is one ledger write of the background writer: a claim, or a
// release of the claim starting at claimStart.
type write struct {
	claim      *registry.Claim
	claimStart uint64
	rel        registry.Release
}

// keptClaims bounds the claims a Recorder remembers: a release is always
// of the range in use or the prefetched one, among the last few.
const keptClaims = 64

// NewRecorder returns a Recorder; Close stops its writer.
func NewRecorder(cfg RecorderConfig) (*Recorder, error) {
	if cfg.Source == nil || cfg.Ledger == nil {
		return nil, errors.New("reconcile: a Recorder needs a Source and a Ledger")
	}
	// A claim the ledger refuses as malformed would stop every claim:
	// its fields are checked once here.
	if err := (registry.Claim{Shard: cfg.Shard, Start: 0, End: 1, Instance: cfg.Instance, Source: cfg.Kind}).Validate(); err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Recorder{cfg: cfg, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	r.idle = sync.NewCond(&r.mu)
	go r.writer()
	return r, nil
}

// ClaimRange claims from Source and records the claim, retrying until ctx
// ends. A claim that cannot be recorded in time is not handed out: the
// background writer records it later with a release of all of it
// (registry.ReleasedUnused), so the ledger still accounts for it.
func (r *Recorder) ClaimRange(ctx context.Context, n uint64) (generator.Range, error) {
	var (
		rg  generator.Range
		err error
	)
	if is, ok := r.cfg.Source.(generator.IntentSource); ok {
		// The announcement is written before the commit, so that a death
		// between the commit and the claim's record leaves it behind.
		rg, err = is.ClaimRangeIntent(ctx, n, func(ctx context.Context, g generator.Range) error {
			c := r.claimOf(g)
			c.Unconfirmed = true
			return r.record(ctx, c)
		})
	} else {
		rg, err = r.cfg.Source.ClaimRange(ctx, n)
	}
	if err != nil {
		return rg, err
	}
	c := r.claimOf(rg)
	err = r.record(ctx, c)
	r.remember(c)
	if err != nil {
		r.cfg.Log.Warn("claim not recorded: its range is not used, and is recorded as unused in the background",
			zap.Uint64("start", c.Start), zap.Uint64("end", c.End), zap.Error(err))
		r.enqueue(write{claim: &c}, write{claimStart: c.Start, rel: registry.Release{Start: c.Start, End: c.End, Reason: registry.ReleasedUnused, AtMS: c.AtMS}})
		return generator.Range{}, fmt.Errorf("record claim [%d, %d): %w", c.Start, c.End, err)
	}
	return rg, nil
}

// claimOf is the claim of g made now.
func (r *Recorder) claimOf(g generator.Range) registry.Claim {
	now := r.cfg.Now()
	c := registry.Claim{
		Shard: r.cfg.Shard, Start: g.Start, End: g.End, Instance: r.cfg.Instance,
		Source: r.cfg.Kind, AtMS: now.UnixMilli(),
	}
	if r.cfg.Worker != nil {
		if w, err := r.cfg.Worker.Worker(now); err == nil {
			c.Worker = w
		}
	}
	return c
}

// record writes c, retrying until ctx ends.
func (r *Recorder) record(ctx context.Context, c registry.Claim) error {
	for attempt := 0; ; attempt++ {
		err := r.cfg.Ledger.RecordClaim(ctx, c)
		if err == nil || errors.Is(err, registry.ErrBadClaim) {
			return err
		}
		if !backoff.Sleep(ctx, backoff.Equal(attempt, 20*time.Millisecond, time.Second)) {
			return err
		}
	}
}

func (r *Recorder) remember(c registry.Claim) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.claims = append(r.claims, c)
	if len(r.claims) > keptClaims {
		r.claims = append(r.claims[:0], r.claims[len(r.claims)-keptClaims:]...)
	}
}

// Released is the generator's Config.Released: it queues the release for
// the background writer and never waits for the ledger.
func (r *Recorder) Released(rg generator.Range, reason string) {
	r.mu.Lock()
	start, found := uint64(0), false
	for i := len(r.claims) - 1; i >= 0 && !found; i-- {
		if c := r.claims[i]; c.Contains(rg.Start) && rg.End <= c.End {
			start, found = c.Start, true
		}
	}
	r.mu.Unlock()
	if !found {
		r.cfg.Log.Error("a release of no recorded claim is not recorded",
			zap.Uint64("start", rg.Start), zap.Uint64("end", rg.End), zap.String("reason", reason))
		return
	}
	r.enqueue(write{claimStart: start, rel: registry.Release{Start: rg.Start, End: rg.End, Reason: reason, AtMS: r.cfg.Now().UnixMilli()}})
}

func (r *Recorder) enqueue(ws ...write) {
	select {
	case <-r.done:
		r.cfg.Log.Error("claim ledger write after close, not written", zap.Int("writes", len(ws)),
			zap.Uint64("claim_start", ws[0].claimStart), zap.String("reason", ws[0].rel.Reason))
		return
	default:
	}
	r.mu.Lock()
	r.pending = append(r.pending, ws...)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// writer writes the pending writes in order, each retried until it lands
// or Close gives up.
func (r *Recorder) writer() {
	defer close(r.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-r.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		r.mu.Lock()
		if len(r.pending) == 0 {
			r.idle.Broadcast()
			r.mu.Unlock()
			select {
			case <-r.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		w := r.pending[0]
		r.mu.Unlock()
		for attempt := 0; ; attempt++ {
			err := r.do(ctx, w)
			if err == nil || errors.Is(err, registry.ErrBadClaim) {
				if err != nil {
					r.cfg.Log.Error("claim ledger write refused", zap.Error(err))
				}
				break
			}
			if attempt == 0 {
				r.cfg.Log.Warn("claim ledger write failed; retrying", zap.Error(err))
			}
			if !backoff.Sleep(ctx, backoff.Equal(attempt, 50*time.Millisecond, 2*time.Second)) {
				r.mu.Lock()
				r.cfg.Log.Error("claim ledger writes not done at close", zap.Int("writes", len(r.pending)))
				r.idle.Broadcast()
				r.mu.Unlock()
				return
			}
		}
		r.mu.Lock()
		r.pending = r.pending[1:]
		r.mu.Unlock()
	}
}

func (r *Recorder) do(ctx context.Context, w write) error {
	if w.claim != nil {
		return r.cfg.Ledger.RecordClaim(ctx, *w.claim)
	}
	return r.cfg.Ledger.RecordRelease(ctx, w.claimStart, w.rel)
}

// Flush waits until every queued write landed, or ctx ends (then it
// returns ctx's error and the writes stay queued).
func (r *Recorder) Flush(ctx context.Context) error {
	stopWake := context.AfterFunc(ctx, func() {
		r.mu.Lock()
		r.idle.Broadcast()
		r.mu.Unlock()
	})
	defer stopWake()
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.pending) > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("reconcile: %d claim ledger writes pending: %w", len(r.pending), ctx.Err())
		case <-r.done:
			return fmt.Errorf("reconcile: %d claim ledger writes pending at close", len(r.pending))
		default:
		}
		r.idle.Wait()
	}
	return nil
}

// Close flushes for at most ctx, then stops the writer; what is still
// pending is logged, not written, and so is a release queued after it.
// Close again returns nil.
func (r *Recorder) Close(ctx context.Context) error {
	var err error
	r.stopOnce.Do(func() {
		err = r.Flush(ctx)
		close(r.stop)
		<-r.done
	})
	return err
}
