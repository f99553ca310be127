package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/idgen/idgen/allocator"
	"github.com/idgen/idgen/functions/failurestream"
	"github.com/idgen/idgen/functions/httpapi"
	"github.com/idgen/idgen/functions/sweeper"
	"github.com/idgen/idgen/shared/generator"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/platform/audit/redischeckpoints"
	"github.com/idgen/idgen/shared/platform/auth"
	"github.com/idgen/idgen/shared/platform/logring"
	"github.com/idgen/idgen/shared/platform/sealer"
	"github.com/idgen/idgen/shared/platform/tracing"
	"github.com/idgen/idgen/shared/reconcile"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/datadir"
	"github.com/idgen/idgen/shared/saga"
)

// stack is the wired service without its listener: what `idgen serve` puts
// behind fasthttp and the Lambda bootstrap puts behind the Runtime API.
type stack struct {
	svc   *httpapi.Service
	log   *zap.Logger
	store registryStore
	audit *audit.Log
	// marks returns the audit marker of one key prefix (the HTTP API's
	// compensations and commits, the sweeper's timeouts): RedisMarks with a
	// Redis registry, StoreMarks in the embedded store. Each prefix is
	// asked for once: a StoreMarks keeps its leases in memory. purge are
	// the markers the sweeper purges.
	marks func(prefix string) saga.Marker
	purge []sweeper.Purger
	// leads reports whether this instance sweeps now: with a registry shared
	// by several instances (Redis), the ZooKeeper election of the shard's
	// sweeper; with a store of its own, always.
	leads func(context.Context) (bool, error)
	// rdb is the Redis client of the audit marks (nil without Redis); it
	// also reads the failure stream's gauges for the console.
	rdb redis.UniversalClient
	// tp exports the traces (nil: tracing off).
	tp      *tracing.Provider
	mode    string
	started time.Time
	closers []func() error // run in reverse by close
}

// close releases everything in reverse order of acquisition: generator,
// allocator, audit log, registry (flushed), data directory, logger.
func (st *stack) close() error {
	var first error
	for i := len(st.closers) - 1; i >= 0; i-- {
		if err := st.closers[i](); err != nil && first == nil {
			first = err
		}
	}
	st.closers = nil
	return first
}

func (st *stack) onClose(f func() error) { st.closers = append(st.closers, f) }

// buildStack wires the service of c: logger, registry (Redis or
// embedded), coordination (ZooKeeper or embedded), generator, audit,
// authentication, the API. advertise names this instance in /instances
// and audit lines. Each step hands its closer to the stack, so an error
// releases what the steps before it opened.
func buildStack(ctx context.Context, c ServeConfig, stderr io.Writer, advertise string) (_ *stack, err error) {
	st := &stack{mode: "embedded", started: time.Now()}
	defer func() {
		if err != nil {
			_ = st.close()
		}
	}()
	ring := logring.New(2000)
	if st.log, err = c.Log.logger(stderr, ring); err != nil {
		return nil, err
	}
	log := st.log
	st.onClose(func() error { _ = log.Sync(); return nil })
	if st.tp, err = c.Log.tracing(ctx, advertise, log, st.onClose); err != nil {
		return nil, err
	}
	if c.Dev {
		log.Warn("DEVELOPMENT MODE: authentication is OFF; every caller can issue, commit and compensate IDs. Never run --dev in production.")
	}
	clock := &idcodec.Clock{}
	if err := injectFaultClock(ctx, clock, log); err != nil {
		return nil, err
	}
	var metrics *httpapi.Metrics
	observe := func(n int, d time.Duration) {
		if metrics != nil {
			metrics.ObserveFlush(n, d.Seconds())
		}
	}
	instance := fmt.Sprintf("%s/%s", advertise, st.started.UTC().Format("20060102T150405.000"))
	co, err := st.coordinate(ctx, c, clock, observe, instance, advertise)
	if err != nil {
		return nil, err
	}
	gen, err := st.newGenerator(c, co, clock)
	if err != nil {
		return nil, err
	}
	metrics = st.newMetrics(c, gen, co.alloc, advertise)
	if err := st.newService(c, co, gen, metrics, ring, instance); err != nil {
		return nil, err
	}
	// The first range is claimed in the background: the listener opens
	// meanwhile, and a request that arrives first waits for the claim (a
	// Lambda cold start or a scaled-out instance answers sooner).
	go func() {
		if err := gen.Warm(ctx); err != nil {
			log.Warn("first range claim failed; requests will retry it", zap.Error(err))
		}
	}()
	return st, nil
}

// coordinate opens the registry and the coordination of c: with
// ZooKeeper, the allocator (its handshake overlaps opening the registry),
// checked against the data directory and the registry's high-water mark;
// without, the embedded clock floor of worker 0. It sets st.leads and
// st.mode.
func (st *stack) coordinate(ctx context.Context, c ServeConfig, clock *idcodec.Clock, observe func(int, time.Duration), instance, advertise string) (coordination, error) {
	log := st.log
	var allocCh <-chan allocOpened
	if c.ZK.Servers != "" {
		// The handshake's context ends with coordinate: a refused start
		// does not wait for it, and the allocator keeps none of it.
		actx, cancel := context.WithCancel(ctx)
		defer cancel()
		allocCh = openAllocatorAsync(actx, c, log, clock.Read, advertise)
		defer func() {
			if allocCh != nil { // an early return before the allocator was taken
				cancel()
				if r := <-allocCh; r.a != nil {
					r.a.Close()
				}
			}
		}()
	}
	reg, err := st.openRegistry(ctx, c, observe, log)
	if err != nil {
		return coordination{}, err
	}
	co := coordination{
		src: reg.src, worker: generator.FixedWorker(0), kind: registry.SourceClockFloor, run: instance,
		membership: httpapi.StaticMembership{httpapi.Member{Worker: 0, Shard: uint8(c.Shard), Address: advertise, Version: version, StartedAt: st.started.UTC(), Instance: instance}},
		leads:      func(context.Context) (bool, error) { return true, nil },
	}
	if allocCh != nil {
		r := <-allocCh
		allocCh = nil
		if r.err != nil {
			return coordination{}, r.err
		}
		st.onClose(r.a.Close)
		if co, err = zkCoordination(ctx, c, r.a, reg, clock, log); err != nil {
			return coordination{}, err
		}
		co.run = zkRunName(advertise, r.a.InstanceID())
		st.mode = "zookeeper"
	}
	if c.Redis.Addr != "" {
		st.mode += "+redis"
	}
	st.leads = co.leads
	return co, nil
}

// newGenerator makes the generator of co's ranges. Each claim is in the
// registry's claim ledger before its range is used; what the generator
// gives up is recorded as released, also at shutdown.
func (st *stack) newGenerator(c ServeConfig, co coordination, clock *idcodec.Clock) (*generator.Generator, error) {
	log := st.log
	claims, err := reconcile.NewRecorder(reconcile.RecorderConfig{
		Source: co.src, Ledger: st.store, Kind: co.kind, Shard: uint8(c.Shard), Instance: co.run, Worker: co.worker, Log: log.Named("claims"),
	})
	if err != nil {
		return nil, err
	}
	gen, err := generator.New(claims, co.worker, generator.Config{Shard: uint8(c.Shard), Clock: clock, Tracer: st.tp.Tracer("idgen/generator"), Released: claims.Released})
	if err != nil {
		_ = claims.Close(context.Background())
		return nil, err
	}
	st.onClose(func() error {
		gen.Drain()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := claims.Close(ctx); err != nil {
			log.Warn("shutdown: releases not recorded; reconciliation counts them as abandoned", zap.Error(err))
		}
		return nil
	})
	return gen, nil
}

// newService makes the HTTP API of gen (st.svc) with its health checks,
// metadata keys, audit log, token verifier and audit marks.
func (st *stack) newService(c ServeConfig, co coordination, gen *generator.Generator, metrics *httpapi.Metrics, ring *logring.Ring, instance string) error {
	log := st.log
	checks := append([]httpapi.Check{{Name: "registry", Critical: true, Run: st.store.Ping}}, co.checks...)
	checks = append(checks, httpapi.RangeCheck(gen))
	keys, err := loadMetadataKeys(c)
	if err != nil {
		return err
	}
	if err := st.openAudit(c, instance, metrics); err != nil {
		return err
	}
	verifier, authChecks, err := openVerifier(c, log)
	if err != nil {
		return err
	}
	checks = append(checks, authChecks...)
	compMarks, commitMarks := st.marks(saga.DefaultMarkPrefix), st.marks(commitMarkPrefix)
	for _, m := range []saga.Marker{compMarks, commitMarks} {
		if p, ok := m.(sweeper.Purger); ok {
			st.purge = append(st.purge, p)
		}
	}
	st.svc, err = httpapi.New(httpapi.Config{Dev: c.Dev, RequestTimeout: c.RequestTimeout, AuditFailOpen: c.AuditFailOpen, Instance: instance, RateLimit: c.RateLimit, RateBurst: c.RateBurst,
		AccessLogEvery: c.AccessLogEvery, NoAccessLog: c.AccessLogEvery == 0}, httpapi.Deps{
		IDs: gen, Registry: st.store, Logger: log, Logs: ring, Metrics: metrics, Membership: co.membership, Checks: checks, Sealer: sealer.NewVault(keys, st.store), Auth: verifier, Audit: st.audit,
		CompensationMarks: compMarks, CommitMarks: commitMarks, Tracer: st.tp.Tracer("idgen/httpapi"),
		Ledger: st.store, Shard: uint8(c.Shard), SharedLedger: c.Redis.Addr != "",
	})
	return err
}

// newMetrics makes the service's metrics (those of the generator) and adds
// the allocator's, the store's, the instance's facts, the deadline index's
// and, with Redis, the failure stream's.
func (st *stack) newMetrics(c ServeConfig, gen *generator.Generator, alloc *allocator.Allocator, advertise string) *httpapi.Metrics {
	metrics := httpapi.NewMetrics(gen)
	if alloc != nil {
		alloc.RegisterMetrics(metrics.Registry)
	}
	registerStoreMetrics(metrics.Registry, st.store)
	engine := c.StoreEngine
	if c.Redis.Addr != "" {
		engine = ""
	}
	registerInstanceInfo(metrics.Registry, st.mode, engine, advertise, c.Redis.WaitReplicas)
	registerExpiringSoon(metrics.Registry, st.store)
	if st.rdb != nil {
		metrics.Registry.MustRegister(failurestream.NewStreamCollector(st.rdb, c.FailureStream, ""))
	}
	return metrics
}

// openAudit opens the audit log as instance and exports its health. With
// Redis, the signed checkpoints are also kept there, by a shipper closed
// after the log (whose Close writes the last checkpoint).
func (st *stack) openAudit(c ServeConfig, instance string, metrics *httpapi.Metrics) error {
	var keep func(audit.Checkpoint)
	if st.rdb != nil {
		ship := redischeckpoints.New(st.rdb, st.log.Named("audit"))
		st.onClose(func() error { ship.Close(); return nil })
		keep = ship.Hook
	}
	l, err := c.Audit.open(instance, keep)
	if err != nil {
		return err
	}
	st.audit = l
	st.onClose(l.Close)
	registerAuditMetrics(metrics.Registry, l)
	return nil
}

// registryParts is the opened registry: the store every mode has, the
// embedded one's data directory and range source (nil with Redis).
type registryParts struct {
	store registryStore
	dir   *datadir.Dir
	src   generator.RangeSource
}

// openRegistry opens Redis, shared by every instance, or the embedded
// store, which then also supplies the counter ranges when ZooKeeper does
// not. It sets st.store and st.marks and hands their closers to st.
func (st *stack) openRegistry(ctx context.Context, c ServeConfig, observe func(int, time.Duration), log *zap.Logger) (registryParts, error) {
	var reg registryParts
	if c.Redis.Addr != "" {
		rs, err := c.Redis.open(ctx, c.Dev, uint8(c.Shard), observe, log)
		if err != nil {
			return reg, err
		}
		// Audit marks are shared by every instance, durable like the
		// registry, and go through the registry's client: one pool.
		rdb := rs.Client()
		st.rdb = rdb
		st.marks = redisMarkers(rdb, c.Redis.WaitReplicas)
		reg.store = rs
	} else {
		local, dir, err := openStore(c, observe, log)
		if err != nil {
			return reg, err
		}
		st.onClose(dir.Close)
		st.marks = storeMarkers(local)
		// The data directory's own counter: raised to the clock floor, so
		// that a restored backup never hands out a counter again.
		reg.store, reg.dir, reg.src = local, dir, generator.NewClockFloor(local, time.Now)
	}
	st.store = reg.store
	st.onClose(func() error {
		err := reg.store.Close()
		log.Info("registry flushed and closed")
		return err
	})
	return reg, nil
}

// commitMarkPrefix keeps the audit marks of POST /commit apart from those
// of compensations (an ID may have both).
const commitMarkPrefix = "idgen:commit:audited:"

// redisMarkers are the audit markers of a Redis registry: shared by every
// instance (like the compensate worker's), durable like the registry
// (waitReplicas).
func redisMarkers(rdb redis.Cmdable, waitReplicas int) func(prefix string) saga.Marker {
	return func(p string) saga.Marker {
		return &saga.RedisMarks{Client: rdb, Prefix: p, WaitReplicas: waitReplicas}
	}
}

// storeMarkers are the audit markers of an embedded store: done marks in
// the store, leases in memory (one process owns the data directory).
func storeMarkers(s saga.MarkStore) func(prefix string) saga.Marker {
	return func(p string) saga.Marker { return &saga.StoreMarks{Store: s, Prefix: p} }
}

// coordination is where ranges and worker slots come from and who the
// members are: the embedded store and slot 0, or ZooKeeper.
type coordination struct {
	alloc      *allocator.Allocator
	src        generator.RangeSource
	kind       string // the claim ledger's name of src (registry.Source*)
	run        string // this run's name in the claim ledger and /instances
	worker     generator.WorkerSource
	membership httpapi.Membership
	checks     []httpapi.Check
	leads      func(context.Context) (bool, error)
}

// zkCoordination checks that the ensemble is the data directory's own and
// has not gone back below the registry's high-water mark, then claims
// ranges and slots from it.
func zkCoordination(ctx context.Context, c ServeConfig, alloc *allocator.Allocator, reg registryParts, clock *idcodec.Clock, log *zap.Logger) (coordination, error) {
	// The directory's own ensemble first: another ensemble fails the
	// high-water check too, but this names the cause.
	if reg.dir != nil {
		if err := reg.dir.BindZooKeeper(alloc.Root(), alloc.ClusterID()); err != nil {
			return coordination{}, fmt.Errorf("--data-dir: %w", err)
		}
	}
	if err := alloc.CheckHighWaterOf(ctx, reg.store); err != nil {
		return coordination{}, err
	}
	co := coordination{
		alloc: alloc, src: allocator.Marked(alloc, reg.store, log), worker: alloc, membership: zkMembership{alloc},
		kind:   registry.SourceZooKeeper,
		checks: zkChecks(alloc, clock.Read),
		leads:  func(context.Context) (bool, error) { return true, nil },
	}
	if c.Redis.Addr != "" {
		co.leads = func(ctx context.Context) (bool, error) { return alloc.Leader(ctx, "sweeper") }
	}
	return co, nil
}

// loadMetadataKeys reads --metadata-key-file, creating it under the data
// directory when it is the default there.
func loadMetadataKeys(c ServeConfig) (*sealer.Ring, error) {
	createKey := c.MetadataKeyFile == filepath.Join(c.DataDir, "metadata.key")
	if createKey {
		if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
			return nil, err
		}
	}
	keys, err := sealer.LoadKeyFile(c.MetadataKeyFile, createKey)
	if err != nil {
		return nil, fmt.Errorf("--metadata-key-file: %w", err)
	}
	return keys, nil
}

// openVerifier builds the bearer-token verifier (none in --dev) and its
// health check; its key file is re-read while it runs.
func openVerifier(c ServeConfig, log *zap.Logger) (httpapi.Authenticator, []httpapi.Check, error) {
	if c.Dev {
		return nil, nil, nil
	}
	v, err := auth.NewVerifier(auth.Config{PublicKeyFile: c.JWTPublicKey, HS256SecretFile: c.JWTSecretFile, Issuer: c.JWTIssuer, Audience: c.JWTAudience,
		OnReload: func(e auth.ReloadEvent) {
			if e.Err != nil {
				log.Error("JWT key file refused; verifying with the previous keys", zap.String("file", e.File), zap.Strings("kids", e.KeyIDs), zap.Error(e.Err))
				return
			}
			log.Info("JWT key file reloaded", zap.String("file", e.File), zap.Strings("kids", e.KeyIDs), zap.Bool("changed", e.Changed))
		}})
	if err != nil {
		return nil, nil, err
	}
	check := httpapi.Check{Name: "jwt_keys", Run: func(context.Context) error { _, _, err := v.ReloadStatus(); return err }}
	return v, []httpapi.Check{check}, nil
}
