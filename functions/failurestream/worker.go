// Package failurestream voids the IDs of failed transactions from failure
// events: the Redis Stream worker of `idgen compensate` (consumer group,
// takeover of a dead worker's entries, retries, dead letters), its metrics
// and its /metrics and /health handler, and the Lambda handler of the same
// events delivered by SQS or EventBridge (LambdaHandler). What a
// compensation does (the failure envelope, the outcomes, audit once) is
// shared/saga's, which every transport uses.
//
// Invariants: the worker acknowledges a stream entry only after its effect
// and its audit entry are stored (see Worker); a malformed entry or one
// that keeps failing ends in the dead-letter stream with its error, never
// silently dropped; the stream holds no entry below the oldest one some
// consumer group has not acknowledged, beyond the last acknowledgement
// (trimSource), so it stays bounded by the unhandled entries.
package failurestream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/idgen/idgen/shared/platform/backoff"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/saga"
)

// Defaults of Config.
const (
	DefaultStream        = "idgen:failures"
	DefaultGroup         = "compensate"
	DefaultMaxDeliveries = 5
	DefaultClaimIdle     = 30 * time.Second
	DefaultBlock         = 2 * time.Second
	DefaultCount         = 64
	DefaultStreamSource  = "stream"
	DefaultBackoffBase   = 50 * time.Millisecond
	DefaultBackoffMax    = 5 * time.Second
	DefaultDrainTimeout  = 10 * time.Second
	// DLQSuffix makes the dead-letter stream's name: "<stream>:dlq".
	DLQSuffix = ":dlq"
)

// Config of a Worker; the zero value means the documented defaults, except
// Consumer, which is required.
type Config struct {
	// Stream of failure events. Default DefaultStream; dead letters go to
	// Stream+DLQSuffix.
	Stream string
	// Group is the consumer group; workers of one group share the stream.
	// Default DefaultGroup.
	Group string
	// Consumer names this worker in the group (required, unique per
	// running worker: two live workers with one name would take each
	// other's pending entries for their own).
	Consumer string
	// MaxDeliveries: an entry delivered more often is dead-lettered
	// unprocessed (it keeps killing or stalling its workers). Default 5.
	MaxDeliveries int
	// ClaimIdle: entries pending this long at another consumer (crashed, or
	// stalled) are taken over with XAUTOCLAIM. A worker keeps the entries
	// it has in flight fresh (XCLAIM JUSTID every ClaimIdle/3), so only
	// dead or stalled workers lose entries, not slow or retrying ones.
	// Default 30 s.
	ClaimIdle time.Duration
	// Block bounds one XREADGROUP wait, hence also how long shutdown waits
	// for a read in flight. Default 2 s.
	Block time.Duration
	// Count is the number of entries processed at once (and the most one
	// read returns). Default 64.
	Count int
	// Source is the event source of entries without a source field.
	// Default DefaultStreamSource.
	Source string
	// BackoffBase and BackoffMax shape the retries of transient failures:
	// attempt n waits a random time in [0, min(BackoffMax, BackoffBase·2ⁿ)]
	// (full jitter). Defaults 50 ms and 5 s.
	BackoffBase, BackoffMax time.Duration
	// DrainTimeout bounds how long in-flight entries may finish after the
	// context ends. Default 10 s.
	DrainTimeout time.Duration
	// Logger; default none.
	Logger *zap.Logger
	// Metrics; default a fresh NewMetrics().
	Metrics *Metrics
	// Tracer, when set, makes each processed entry a span (compensate),
	// continuing the trace context of its envelope (traceparent).
	// Default nil: no span.
	Tracer trace.Tracer
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Consumer == "":
		return errors.New("failurestream: consumer name required")
	case c.MaxDeliveries < 0 || c.Count < 0:
		return errors.New("failurestream: negative max deliveries or count")
	case c.ClaimIdle < 0 || c.Block < 0 || c.BackoffBase < 0 || c.BackoffMax < 0 || c.DrainTimeout < 0:
		return errors.New("failurestream: negative duration")
	case c.Stream != "" && c.Stream == c.Group:
		return errors.New("failurestream: stream and group must differ")
	}
	return nil
}

func (c Config) withDefaults() Config {
	c.Stream = cmp.Or(c.Stream, DefaultStream)
	c.Group = cmp.Or(c.Group, DefaultGroup)
	c.Source = cmp.Or(c.Source, DefaultStreamSource)
	c.ClaimIdle = cmp.Or(c.ClaimIdle, DefaultClaimIdle)
	c.Block = cmp.Or(c.Block, DefaultBlock)
	c.BackoffBase = cmp.Or(c.BackoffBase, DefaultBackoffBase)
	c.BackoffMax = cmp.Or(c.BackoffMax, DefaultBackoffMax)
	c.DrainTimeout = cmp.Or(c.DrainTimeout, DefaultDrainTimeout)
	c.MaxDeliveries = cmp.Or(c.MaxDeliveries, DefaultMaxDeliveries)
	c.Count = cmp.Or(c.Count, DefaultCount)
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics()
	}
	return c
}

// Compensator applies one event (*saga.Core provides it).
type Compensator interface {
	Compensate(ctx context.Context, ev saga.Event) (saga.Result, error)
}

var _ Compensator = (*saga.Core)(nil)

// Recorder is the audit log of dead-letter moves (*audit.Log provides it).
type Recorder interface {
	Record(e audit.Event) error
}

// Worker consumes the failure stream in a consumer group.
//
// Invariants: an entry is acknowledged (XACK) only after Compensate
// succeeded (effect and audit entry stored) or after it was added to the
// dead-letter stream (XADD and XACK in one MULTI outside Cluster mode);
// transient failures keep the entry pending and are retried in place with
// backoff until they succeed or the worker stops; entries of a dead worker
// are taken over after ClaimIdle; malformed entries and entries delivered
// more than MaxDeliveries times are dead-lettered with their error and one
// audit entry (event.dead_letter).
type Worker struct {
	cfg  Config
	rdb  redis.UniversalClient
	core Compensator
	aud  Recorder
	log  *zap.Logger
	m    *Metrics
	dlq  string
	tx   bool // MULTI for dead-letter moves (not in Cluster mode)

	acks chan string

	mu       sync.Mutex
	inflight map[string]bool
}

// New returns a worker of rdb's stream; aud receives the dead-letter
// entries (core writes the compensation entries). Errors:
// Config.Validate's.
//
// Give the client of core's saga.RedisMarks (usually rdb) a pool with a
// connection for every entry in flight (PoolSize above Count, idle
// connections kept): Run opens them at start (warm), and a mark that waits
// for a connection after its audit entry is written widens the window in
// which a crash repeats that entry.
func New(rdb redis.UniversalClient, core Compensator, aud Recorder, cfg Config) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	_, cluster := rdb.(*redis.ClusterClient)
	w := &Worker{
		cfg: cfg, rdb: rdb, core: core, aud: aud, log: cfg.Logger, m: cfg.Metrics,
		dlq: cfg.Stream + DLQSuffix, tx: !cluster,
		acks: make(chan string, 4*cfg.Count), inflight: map[string]bool{},
	}
	w.m.watch(w)
	return w, nil
}

// DLQ returns the name of the dead-letter stream.
func (w *Worker) DLQ() string { return w.dlq }

// entry is one delivery of a stream entry.
type entry struct {
	msg        redis.XMessage
	deliveries int64
}

// Run consumes until ctx ends, then stops reading, lets the entries in
// flight finish (at most DrainTimeout), acknowledges what finished and
// returns nil. It fails only when the consumer group cannot be created.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.ensureGroup(ctx); err != nil {
		return err
	}
	w.warm(ctx)
	procCtx, stopProc := context.WithCancel(context.WithoutCancel(ctx))
	defer stopProc()
	runDone := make(chan struct{})
	defer close(runDone)
	go func() {
		select {
		case <-runDone:
		case <-ctx.Done():
			t := time.NewTimer(w.cfg.DrainTimeout)
			defer t.Stop()
			select {
			case <-runDone:
			case <-t.C:
				stopProc()
			}
		}
	}()
	ackDone := make(chan struct{})
	go func() {
		defer close(ackDone)
		w.acker(procCtx)
	}()
	freshStop, freshDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(freshDone)
		w.keepFresh(procCtx, freshStop)
	}()

	w.log.Info("compensate worker started", zap.String("stream", w.cfg.Stream), zap.String("group", w.cfg.Group),
		zap.String("consumer", w.cfg.Consumer), zap.Int("max_deliveries", w.cfg.MaxDeliveries), zap.Duration("claim_idle", w.cfg.ClaimIdle))
	slots := make(chan struct{}, w.cfg.Count)
	for range w.cfg.Count {
		slots <- struct{}{}
	}
	var wg sync.WaitGroup
	rd := reader{ownCursor: "0", claimCursor: "0-0"}
	for failures := 0; ; {
		select {
		case <-slots:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		n := 1
	grab:
		for n < w.cfg.Count {
			select {
			case <-slots:
				n++
			default:
				break grab
			}
		}
		entries, err := w.next(ctx, &rd, n)
		for range n - len(entries) {
			slots <- struct{}{}
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			w.log.Warn("reading the stream failed; retrying", zap.Error(err), zap.Int("failures", failures))
			backoff.Sleep(ctx, w.backoff(failures))
			continue
		}
		failures = 0
		for _, e := range entries {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { slots <- struct{}{} }()
				w.handle(procCtx, ctx, e)
			}()
		}
	}
	w.log.Info("stopping; letting in-flight entries finish", zap.Int("in_flight", w.inFlight()))
	wg.Wait()
	close(freshStop)
	<-freshDone
	close(w.acks)
	<-ackDone
	w.log.Info("compensate worker stopped", zap.Int("left_pending", w.inFlight()))
	return nil
}

// warm opens and initializes a pool connection for every entry in flight,
// so that an audited mark is sent the moment its audit entry is written: a
// mark that first waits for a connection (dial, HELLO) widens the window in
// which a crash repeats the entry. Each of Count+2 concurrent BLPOPs of a
// key that never exists holds its connection for 50 ms, so they cannot
// share connections.
func (w *Worker) warm(ctx context.Context) {
	n := w.cfg.Count + 2
	if size := poolSize(w.rdb); size > 0 && size < n {
		w.log.Warn("the Redis pool has fewer connections than entries in flight; audited marks may wait for one",
			zap.Int("pool_size", size), zap.Int("in_flight", w.cfg.Count))
		n = size
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Raw: go-redis rounds BLPop timeouts up to whole seconds.
			_ = w.rdb.Do(ctx, "BLPOP", w.cfg.Stream+":warm", "0.05").Err()
		}()
	}
	wg.Wait()
}

// poolSize is the connection pool size of rdb (per node), 0 if unknown.
func poolSize(rdb redis.UniversalClient) int {
	switch c := rdb.(type) {
	case *redis.Client:
		return c.Options().PoolSize
	case *redis.ClusterClient:
		return c.Options().PoolSize
	}
	return 0
}

// handle processes one delivery. procCtx bounds the work of the attempt;
// runCtx ending stops further retries (the entry stays pending).
func (w *Worker) handle(procCtx, runCtx context.Context, e entry) {
	if e.msg.Values == nil {
		// Deleted from the stream while pending: nothing left to apply.
		w.acks <- e.msg.ID
		return
	}
	ev, err := saga.EventFromFields(e.msg.Values, w.cfg.Source)
	if err == nil {
		_, err = ev.Validate()
	}
	switch {
	case e.deliveries > int64(w.cfg.MaxDeliveries):
		w.deadLetter(procCtx, e, ev, causeMaxDeliveries,
			fmt.Errorf("delivered %d times without an acknowledgement (max deliveries %d)", e.deliveries, w.cfg.MaxDeliveries))
		return
	case err != nil:
		w.deadLetter(procCtx, e, ev, causeMalformed, err)
		return
	}
	ev.Redelivered = e.deliveries > 1
	span := noSpan
	if w.cfg.Tracer != nil {
		procCtx, span = w.cfg.Tracer.Start(ev.TraceContext(procCtx), "compensate", trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("idgen.id", ev.ID), attribute.String("idgen.entry", e.msg.ID), attribute.Int64("idgen.deliveries", e.deliveries)))
	}
	defer span.End()
	for attempt := 1; ; attempt++ {
		res, err := w.core.Compensate(procCtx, ev)
		span.AddEvent("attempt", trace.WithAttributes(attribute.Int("idgen.attempt", attempt)))
		if err == nil {
			span.SetAttributes(attribute.String("idgen.outcome", res.Outcome.String()))
			w.m.processed.WithLabelValues(res.Outcome.String()).Inc()
			if res.AuditRecovered {
				w.m.auditRecovered.Inc()
				w.log.Warn("wrote the audit entry an earlier attempt left out", zap.String("id", ev.ID), zap.String("entry", e.msg.ID))
			}
			if res.Unmarked {
				w.log.Warn("audit mark not stored; a redelivery after the lease may repeat the entry",
					zap.String("id", ev.ID), zap.String("entry", e.msg.ID), zap.Error(res.MarkErr))
			}
			if ce := w.log.Check(zap.DebugLevel, "compensated"); ce != nil {
				ce.Write(zap.String("id", ev.ID), zap.Stringer("outcome", res.Outcome), zap.String("entry", e.msg.ID), zap.Int64("deliveries", e.deliveries))
			}
			w.acks <- e.msg.ID
			return
		}
		if saga.Permanent(err) {
			span.SetStatus(codes.Error, err.Error())
			w.deadLetter(procCtx, e, ev, causePermanent, err)
			return
		}
		if runCtx.Err() != nil {
			w.log.Warn("stopping with an entry left pending", zap.String("entry", e.msg.ID), zap.String("id", ev.ID), zap.Error(err))
			w.unflight(e.msg.ID)
			return
		}
		w.m.retried.Inc()
		if attempt == 1 || attempt%10 == 0 {
			w.log.Warn("transient failure; retrying", zap.String("entry", e.msg.ID), zap.String("id", ev.ID), zap.Int("attempt", attempt), zap.Error(err))
		}
		ev.Redelivered = true // the failed attempt may have stored the effect
		if !backoff.Sleep(runCtx, w.backoff(attempt)) {
			w.unflight(e.msg.ID)
			return
		}
	}
}

// backoff is attempt's wait: full jitter under an exponential cap.
func (w *Worker) backoff(attempt int) time.Duration {
	return backoff.Full(attempt, w.cfg.BackoffBase, w.cfg.BackoffMax)
}

// acker acknowledges finished entries in groups: everything waiting rides
// in one XACK, followed by a trim of what every group has acknowledged
// (trimSource), so the stream stays bounded by what is unhandled.
func (w *Worker) acker(ctx context.Context) {
	ids := make([]string, 0, cap(w.acks))
	for id := range w.acks {
		ids = append(ids[:0], id)
	fill:
		for len(ids) < cap(ids) {
			select {
			case id, ok := <-w.acks:
				if !ok {
					break fill
				}
				ids = append(ids, id)
			default:
				break fill
			}
		}
		for attempt := 1; ; attempt++ {
			// The trim rides the acknowledgement's round trip.
			var ack *redis.IntCmd
			var trim *redis.Cmd
			_, _ = w.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				ack = p.XAck(ctx, w.cfg.Stream, w.cfg.Group, ids...)
				trim = trimScript.EvalSha(ctx, p, []string{w.cfg.Stream})
				return nil
			})
			err := ack.Err()
			if err == nil {
				if redis.HasErrorPrefix(trim.Err(), "NOSCRIPT") {
					w.trim(ctx)
				} else {
					w.trimmed(trim)
				}
				break
			}
			if ctx.Err() != nil {
				w.log.Warn("shutdown before acknowledging; the entries stay pending (their effect is stored: a redelivery replays)", zap.Int("entries", len(ids)), zap.Error(err))
				break
			}
			w.log.Warn("XACK failed; retrying", zap.Int("entries", len(ids)), zap.Error(err))
			backoff.Sleep(ctx, w.backoff(attempt))
		}
		w.unflight(ids...)
	}
}

func (w *Worker) unflight(ids ...string) {
	w.mu.Lock()
	for _, id := range ids {
		delete(w.inflight, id)
	}
	w.mu.Unlock()
}

func (w *Worker) inFlight() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.inflight)
}

// noSpan is the span of an entry with tracing off.
var noSpan = trace.SpanFromContext(context.Background())
