package generator

import (
	"fmt"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/idgen/idgen/shared/idcodec"
)

// Config of a Generator. The zero value means the documented defaults.
type Config struct {
	// Shard stamped into every ID (0..63). Default 0.
	Shard uint8
	// InitialStep is the size of the first range claimed: small, so that a
	// cold start that scales back to zero burns few counters. Default 1000.
	InitialStep uint64
	// MinStep and MaxStep bound the adaptive step. Defaults 1000 and 1<<22.
	// MinStep must be at least MaxBatch so any batch fits one range.
	MinStep, MaxStep uint64
	// TargetLifetime is how long one range should last at the observed
	// consumption rate; the step adapts towards it (see adaptStepLocked).
	// Default 10s.
	TargetLifetime time.Duration
	// PrefetchRatio is the fraction of a range used before the next range is
	// claimed in the background. Default 0.5.
	PrefetchRatio float64
	// MaxBatch is the largest count accepted by NextN. Default 1000.
	MaxBatch int
	// ClaimTimeout bounds one background claim. Default 10s.
	ClaimTimeout time.Duration
	// RetryAfter is how long callers are told to wait after a failed claim;
	// during it no new claim is started by the hot path. A failed claim
	// that left no counter is retried in the background after it. Default 1s.
	RetryAfter time.Duration
	// Clock stamps timestamps; nil means a fresh Clock on time.Now.
	Clock *idcodec.Clock
	// Tracer, when set, makes each claim a span (generator.claim_range),
	// the child of the span of the request that started it: the one that
	// crossed the prefetch mark, or that waits for the range. Default nil:
	// no span.
	Tracer trace.Tracer
	// Released, when set, is told of every part of a claimed range the
	// Generator gives up without handing it out, with the reason (one of
	// registry.Released*), exactly once per counter: the claim ledger's
	// account of counters never issued. It is called on the goroutine that
	// gave the range up, the request path included: it must not block.
	Released func(r Range, reason string)
}

func (c Config) withDefaults() Config {
	if c.InitialStep == 0 {
		c.InitialStep = 1000
	}
	if c.MinStep == 0 {
		c.MinStep = 1000
	}
	if c.MaxStep == 0 {
		c.MaxStep = 1 << 22
	}
	if c.TargetLifetime == 0 {
		c.TargetLifetime = 10 * time.Second
	}
	if c.PrefetchRatio == 0 {
		c.PrefetchRatio = 0.5
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = 1000
	}
	if c.ClaimTimeout == 0 {
		c.ClaimTimeout = 10 * time.Second
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = time.Second
	}
	if c.Clock == nil {
		c.Clock = &idcodec.Clock{}
	}
	return c
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Shard > idcodec.MaxShard:
		return fmt.Errorf("generator: shard %d out of range 0..%d", c.Shard, idcodec.MaxShard)
	case c.MinStep > c.MaxStep:
		return fmt.Errorf("generator: min step %d above max step %d", c.MinStep, c.MaxStep)
	case c.MinStep < uint64(c.MaxBatch):
		return fmt.Errorf("generator: min step %d below max batch %d", c.MinStep, c.MaxBatch)
	case c.InitialStep < c.MinStep || c.InitialStep > c.MaxStep:
		return fmt.Errorf("generator: initial step %d outside [%d, %d]", c.InitialStep, c.MinStep, c.MaxStep)
	case c.PrefetchRatio <= 0 || c.PrefetchRatio >= 1:
		return fmt.Errorf("generator: prefetch ratio %v outside (0, 1)", c.PrefetchRatio)
	}
	return nil
}
