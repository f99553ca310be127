// Package sweeper is the deadline sweeper: it compensates the pending IDs
// whose deadline has passed (reason saga.ReasonTimeout, actor
// saga.ActorSystem) and writes the audit entry of each of those
// compensations, once.
//
// Invariants:
//   - A compensation is the registry's compare-and-set from pending: with
//     every instance of a shared registry sweeping, and late commits
//     compensating the same IDs (saga.ReasonDeadline), each ID is
//     compensated once, whoever wins.
//   - One audit entry per timeout compensation, across instances: it is
//     written through saga.Once with marks of the sweeper's own key
//     space (MarkPrefix). The sweeper that applied a compensation writes
//     its entry; when that fails (the audit log refuses it, the marks
//     cannot be reached) or the transition's outcome is unknown (it failed
//     after its write may have been applied, and the ID has left the
//     deadline index, so no later sweep lists it), the ID is kept as a
//     suspect and read again at every tick, and the entry of a suspect
//     compensated by the sweeper is written, marked recovered, once the
//     log accepts it (Once.Recover). A process that dies with suspects
//     unresolved loses their entries; a suspect unresolved for
//     saga.DefaultRecoverWithin is dropped, logged.
//   - Run returns when its context ends, once the page in flight is done.
package sweeper

import (
	"cmp"
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/ticker"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/saga"
)

// MarkPrefix is the key prefix of the sweeper's audit marks
// (saga.RedisMarks.Prefix, saga.StoreMarks.Prefix).
const MarkPrefix = "idgen:sweep:audited:"

// Defaults of Config.
const (
	DefaultInterval       = time.Second
	DefaultIdempotencyTTL = 24 * time.Hour
)

// page is how many expired IDs one sweep step compensates; they are sent
// together so that the store group-commits them.
const page = 512

// purgeLimit bounds the idempotency keys and the marks purged per tick.
const purgeLimit = 1000

// Config of a Sweeper; the zero value means the defaults.
type Config struct {
	// Interval between ticks. Default DefaultInterval (1 s).
	Interval time.Duration
	// IdempotencyTTL is how long an Idempotency-Key is kept; older ones
	// are purged at every tick the sweeper leads. Default
	// DefaultIdempotencyTTL (24 h), the API's.
	IdempotencyTTL time.Duration
	// Now is the clock of deadlines and history steps. Default time.Now.
	Now func() time.Time
}

// Validate reports a negative duration.
func (c Config) Validate() error {
	if c.Interval < 0 || c.IdempotencyTTL < 0 {
		return errors.New("sweeper: negative duration in config")
	}
	return nil
}

func (c Config) withDefaults() Config {
	c.Interval = cmp.Or(c.Interval, DefaultInterval)
	c.IdempotencyTTL = cmp.Or(c.IdempotencyTTL, DefaultIdempotencyTTL)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Store is the registry as the sweeper needs it (*redisstore.Store and the
// embedded stores provide it).
type Store interface {
	Expired(ctx context.Context, nowMS int64, limit int) ([]idcodec.ID, error)
	Transition(ctx context.Context, id idcodec.ID, ch registry.Change) (registry.Record, registry.Outcome, error)
	Get(ctx context.Context, id idcodec.ID) (registry.Record, error)
	PurgeIdempotency(ctx context.Context, cutoffMS int64, limit int) (int, error)
}

// Purger deletes the audit marks that ran out (*saga.StoreMarks).
type Purger interface {
	Purge(ctx context.Context, limit int) (int, error)
}

// Deps are the collaborators of a Sweeper.
type Deps struct {
	// Store is the registry. Required.
	Store Store
	// Audit is the audit log. Required.
	Audit saga.Recorder
	// Marks elect the one sweeper that writes a timeout compensation's
	// entry and remember that it is written, under MarkPrefix: with a
	// registry shared by several instances, marks they share
	// (saga.RedisMarks); with an embedded store,
	// saga.StoreMarks in it. Required: without marks a refused
	// entry could not be written later. Purged at every tick the sweeper
	// leads when they implement Purger.
	Marks saga.Marker
	// Leads reports before each tick whether this instance sweeps now (an
	// election among the instances of a shared registry). Default nil:
	// always. Suspects are resolved either way.
	Leads func(context.Context) (bool, error)
	// Purge are other marks purged at every tick the sweeper leads (the
	// HTTP API's StoreMarks). Default none.
	Purge []Purger
	// Logger. Default zap.NewNop().
	Logger *zap.Logger
}

// Sweeper compensates expired IDs; see the package. Its methods are for
// one goroutine (Run's).
type Sweeper struct {
	cfg    Config
	d      Deps
	once   saga.Once
	purge  []Purger
	leader bool // led at the last tick (for the log line of a change)

	mu       sync.Mutex
	suspects map[idcodec.ID]time.Time // unresolved: since when
}

// New returns a Sweeper. Errors: an invalid Config, or a required Deps
// field missing.
func New(cfg Config, d Deps) (*Sweeper, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if d.Store == nil || d.Audit == nil || d.Marks == nil {
		return nil, errors.New("sweeper: Store, Audit and Marks are required")
	}
	cfg = cfg.withDefaults()
	if d.Leads == nil {
		d.Leads = func(context.Context) (bool, error) { return true, nil }
	}
	if d.Logger == nil {
		d.Logger = zap.NewNop()
	}
	purge := d.Purge
	if p, ok := d.Marks.(Purger); ok {
		purge = append([]Purger{p}, purge...)
	}
	return &Sweeper{
		cfg: cfg, d: d, purge: purge, suspects: map[idcodec.ID]time.Time{},
		once: saga.Once{Audit: d.Audit, Marks: d.Marks, Now: cfg.Now},
	}, nil
}

// Run sweeps every Interval until ctx ends. Pages are swept back to back
// while they come back full, so that a burst of deadlines is caught up at
// group-commit speed rather than one page per tick.
func (s *Sweeper) Run(ctx context.Context) {
	ticker.Every(ctx, s.cfg.Interval, func() { s.tick(ctx) })
}

// tick resolves the suspects, then, when this instance leads, sweeps and
// purges.
func (s *Sweeper) tick(ctx context.Context) {
	// Suspects are this process's own: resolved whether it leads or not.
	s.resolve(ctx)
	if !s.lead(ctx) {
		return
	}
	for ctx.Err() == nil {
		n, err := s.sweep(ctx)
		if err != nil && ctx.Err() == nil {
			s.d.Logger.Warn("listing expired IDs", zap.Error(err))
		}
		if n < page {
			break
		}
	}
	if ctx.Err() != nil {
		return
	}
	if _, err := s.d.Store.PurgeIdempotency(ctx, s.cfg.Now().Add(-s.cfg.IdempotencyTTL).UnixMilli(), purgeLimit); err != nil && ctx.Err() == nil {
		s.d.Logger.Warn("purging idempotency keys", zap.Error(err))
	}
	for _, p := range s.purge {
		if _, err := p.Purge(ctx, purgeLimit); err != nil && ctx.Err() == nil {
			s.d.Logger.Warn("purging audit marks", zap.Error(err))
		}
	}
}

// lead asks whether this instance sweeps now and logs a change.
func (s *Sweeper) lead(ctx context.Context) bool {
	ok, err := s.d.Leads(ctx)
	if err != nil && ctx.Err() == nil {
		s.d.Logger.Debug("not leading", zap.Error(err))
	}
	if ok != s.leader {
		s.leader = ok
		s.d.Logger.Info("leadership changed", zap.Bool("leader", ok))
	}
	return ok
}
