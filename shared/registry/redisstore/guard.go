package redisstore

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/registry"
)

// ErrForgetful means the Redis behind the Store may have lost acknowledged
// records, or may lose them: it evicts, it has no persistence while
// Config.RequirePersistence asks for it, or its epoch marker is missing or
// names another registry. Every error that wraps it also wraps
// registry.ErrUnavailable (the API answers 503).
var ErrForgetful = errors.New("redisstore: the registry may have lost records")

// Reasons of a refusal: the label values of the idgen_registry_forgetful
// gauge. The epoch reasons and ReasonEvicted are sticky: they hold until the
// Store is closed, because records may be gone for good and re-creating a
// marker brings none of them back. The others hold while the check that
// found them still does.
const (
	// ReasonEvictionPolicy: a master's maxmemory-policy is not noeviction.
	ReasonEvictionPolicy = "eviction_policy"
	// ReasonEvicted: a master's INFO evicted_keys grew while the Store
	// watched it (sticky).
	ReasonEvicted = "evicted"
	// ReasonNoPersistence: Config.RequirePersistence is set and a master has
	// neither appendonly nor save points.
	ReasonNoPersistence = "no_persistence"
	// ReasonEpochMissing: a master lacks the epoch marker the Store saw (it
	// was emptied, restarted without persistence, flushed, or evicted), a
	// Store opened on registry keys without a marker, or an instance marked
	// the epoch lost (sticky).
	ReasonEpochMissing = "epoch_missing"
	// ReasonEpochChanged: the marker names another epoch than the one the
	// Store opened with (another registry, or a reset) (sticky).
	ReasonEpochChanged = "epoch_changed"
)

// Reasons lists every reason, for exporting zeros.
func Reasons() []string {
	return []string{ReasonEvictionPolicy, ReasonEvicted, ReasonNoPersistence, ReasonEpochMissing, ReasonEpochChanged}
}

// sticky reports whether reason outlives the check that found it.
func sticky(reason string) bool {
	return reason == ReasonEvicted || reason == ReasonEpochMissing || reason == ReasonEpochChanged
}

// guard holds why the Store refuses, if it does. Readers on the hot path
// load err only; writers hold mu.
type guard struct {
	log *zap.Logger
	err atomic.Pointer[error] // nil while nothing is wrong

	mu     sync.Mutex
	sticky map[string]string // reason → what was seen
	live   map[string]string // the last check's non-sticky findings
}

func newGuard(log *zap.Logger) *guard {
	return &guard{log: log, sticky: map[string]string{}, live: map[string]string{}}
}

// refusal returns the error every operation fails with, or nil.
func (g *guard) refusal() error {
	if p := g.err.Load(); p != nil {
		return *p
	}
	return nil
}

// latch records a sticky reason; it reports whether the reason is new.
func (g *guard) latch(reason, detail string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.sticky[reason]; ok {
		return false
	}
	g.sticky[reason] = detail
	g.log.Error("registry refuses every operation until an operator acts: it may have lost acknowledged records",
		zap.String("reason", reason), zap.String("seen", detail))
	g.publish()
	return true
}

// setLive replaces the non-sticky findings with those of the last check.
func (g *guard) setLive(found map[string]string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for r, d := range found {
		if _, ok := g.live[r]; !ok {
			g.log.Error("registry refuses every operation while this lasts", zap.String("reason", r), zap.String("seen", d))
		}
	}
	for r := range g.live {
		if _, ok := found[r]; !ok {
			g.log.Warn("registry condition cleared", zap.String("reason", r))
		}
	}
	g.live = maps.Clone(found)
	g.publish()
}

// publish rebuilds err from both maps. The caller holds mu.
func (g *guard) publish() {
	if len(g.sticky) == 0 && len(g.live) == 0 {
		g.err.Store(nil)
		return
	}
	all := maps.Clone(g.live)
	maps.Copy(all, g.sticky)
	var parts []string
	for _, r := range slices.Sorted(maps.Keys(all)) {
		parts = append(parts, r+": "+all[r])
	}
	err := fmt.Errorf("%w: %w: %s", registry.ErrUnavailable, ErrForgetful, strings.Join(parts, "; "))
	g.err.Store(&err)
}

// reasons returns the reasons that hold now, sorted.
func (g *guard) reasons() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.sticky) == 0 && len(g.live) == 0 {
		return nil
	}
	all := maps.Clone(g.live)
	maps.Copy(all, g.sticky)
	return slices.Sorted(maps.Keys(all))
}

// latched reports whether reason is latched.
func (g *guard) latched(reason string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	_, ok := g.sticky[reason]
	return ok
}

// liveNow returns a copy of the non-sticky findings.
func (g *guard) liveNow() map[string]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return maps.Clone(g.live)
}
