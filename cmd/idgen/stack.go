package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/idgen/idgen/allocator"
	"github.com/idgen/idgen/functions/generate"
	"github.com/idgen/idgen/shared/audit"
	"github.com/idgen/idgen/shared/auth"
	"github.com/idgen/idgen/shared/compensation"
	"github.com/idgen/idgen/shared/generator"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/logring"
	"github.com/idgen/idgen/shared/registry/datadir"
	"github.com/idgen/idgen/shared/sealer"
)

// stack is the wired service without its listener: what `idgen serve` puts
// behind fasthttp and the Lambda bootstrap puts behind the Runtime API.
type stack struct {
	svc    *generate.Service
	log    *zap.Logger
	store  registryStore
	dir    *datadir.Dir // the locked --data-dir of an embedded store; nil with Redis
	audit  *audit.Log
	claims sweepClaimer // elects the sweeper that audits a timeout compensation
	marks  []markPurger // the HTTP API's audit marks in the embedded store; none with Redis
	// leads reports whether this instance sweeps now: with a registry shared
	// by several instances (Redis), the ZooKeeper election of the shard's
	// sweeper; with a store of its own, always.
	leads   func(context.Context) (bool, error)
	mode    string
	started time.Time
	closers []func() error // run in reverse by close
}

// close releases everything in reverse order of acquisition: generator,
// allocator, audit log, registry (flushed), logger.
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

// buildStack wires the service of c: registry (Redis or embedded),
// allocator (ZooKeeper or embedded), generator, sealing, audit, auth.
// advertise names this instance in /instances and audit lines.
func buildStack(ctx context.Context, c ServeConfig, stderr io.Writer, advertise string) (_ *stack, err error) {
	st := &stack{mode: "embedded", started: time.Now()}
	defer func() {
		if err != nil {
			_ = st.close()
		}
	}()
	ring := logring.New(2000)
	log, err := c.Log.logger(stderr, ring)
	if err != nil {
		return nil, err
	}
	st.log = log
	st.onClose(func() error { _ = log.Sync(); return nil })
	if c.Dev {
		log.Warn("DEVELOPMENT MODE: authentication is OFF; every caller can issue, commit and compensate IDs. Never run --dev in production.")
	}

	var metrics *generate.Metrics
	observe := func(n int, d time.Duration) {
		if metrics != nil {
			metrics.ObserveFlush(n, d.Seconds())
		}
	}
	// The registry: Redis, shared by every instance, or the embedded store,
	// which then also supplies the counter ranges when ZooKeeper does not.
	// The ZooKeeper handshake overlaps opening it.
	clock := &idcodec.Clock{}
	if err := injectFaultClock(ctx, clock, log); err != nil {
		return nil, err
	}
	var allocCh <-chan allocOpened
	if c.ZK.Servers != "" {
		allocCh = openAllocatorAsync(ctx, c, log, clock.Read, advertise)
		defer func() {
			if allocCh != nil { // an early return before the allocator was taken
				if r := <-allocCh; r.a != nil {
					r.a.Close()
				}
			}
		}()
	}
	var src generator.RangeSource
	if c.Redis.Addr != "" {
		rs, err := c.Redis.open(ctx, c.Dev, uint8(c.Shard), observe, log)
		if err != nil {
			return nil, err
		}
		st.store = rs
		// Every instance sweeps: the audit entry of a timeout compensation
		// goes to the one that claims it in Redis.
		rdb, err := c.Redis.client(rs.Cluster())
		if err != nil {
			_ = rs.Close()
			return nil, err
		}
		st.onClose(rdb.Close)
		st.claims = newRedisSweepClaims(rdb)
	} else {
		local, dir, err := openStore(c, observe, log)
		if err != nil {
			return nil, err
		}
		st.claims = soleSweeper{marks: local}
		st.onClose(dir.Close)
		st.dir = dir
		// The data directory's own counter: raised to the clock floor, so
		// that a restored backup never hands out a counter again.
		st.store, src = local, generator.NewClockFloor(local, time.Now)
	}
	st.onClose(func() error {
		err := st.store.Close()
		log.Info("registry flushed and closed")
		return err
	})

	var (
		alloc      *allocator.Allocator
		worker     generator.WorkerSource = generator.FixedWorker(0)
		membership generate.Membership    = generate.StaticMembership{generate.Member{Worker: 0, Shard: uint8(c.Shard), Address: advertise, Version: version, StartedAt: st.started.UTC()}}
		checks                            = []generate.Check{{Name: "registry", Critical: true, Run: st.store.Ping}}
	)
	if allocCh != nil {
		r := <-allocCh
		allocCh = nil
		if r.err != nil {
			return nil, r.err
		}
		alloc = r.a
		st.onClose(alloc.Close)
		// The directory's own ensemble first: another ensemble fails the
		// high-water check too, but this names the cause.
		if st.dir != nil {
			if err := st.dir.BindZooKeeper(alloc.Root(), alloc.ClusterID()); err != nil {
				return nil, fmt.Errorf("--data-dir: %w", err)
			}
		}
		if err := checkHighWater(ctx, alloc, st.store); err != nil {
			return nil, err
		}
		src, worker, membership, st.mode = markedSource{alloc, st.store, log}, alloc, zkMembership{alloc}, "zookeeper"
		checks = append(checks, zkChecks(alloc, clock.Read)...)
		if c.Redis.Addr != "" {
			st.leads = func(ctx context.Context) (bool, error) { return alloc.Leader(ctx, "sweeper") }
		}
	}
	if st.leads == nil {
		st.leads = func(context.Context) (bool, error) { return true, nil }
	}
	if c.Redis.Addr != "" {
		st.mode += "+redis"
	}
	gen, err := generator.New(src, worker, generator.Config{Shard: uint8(c.Shard), Clock: clock})
	if err != nil {
		return nil, err
	}
	st.onClose(func() error { gen.Close(); return nil })
	metrics = generate.NewMetrics(gen)
	if alloc != nil {
		registerZKMetrics(metrics.Registry, alloc)
	}
	registerStoreMetrics(metrics.Registry, st.store)
	checks = append(checks, generate.RangeCheck(gen))
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
	instance := fmt.Sprintf("%s/%s", advertise, st.started.UTC().Format("20060102T150405.000"))
	if st.audit, err = c.Audit.open(instance); err != nil {
		return nil, err
	}
	st.onClose(st.audit.Close)
	registerAuditMetrics(metrics.Registry, st.audit)
	var verifier generate.Authenticator
	if !c.Dev {
		v, err := auth.NewVerifier(auth.Config{PublicKeyFile: c.JWTPublicKey, HS256SecretFile: c.JWTSecretFile, Issuer: c.JWTIssuer, Audience: c.JWTAudience,
			OnReload: func(e auth.ReloadEvent) {
				if e.Err != nil {
					log.Error("JWT key file refused; verifying with the previous keys", zap.String("file", e.File), zap.Strings("kids", e.KeyIDs), zap.Error(e.Err))
					return
				}
				log.Info("JWT key file reloaded", zap.String("file", e.File), zap.Strings("kids", e.KeyIDs), zap.Bool("changed", e.Changed))
			}})
		if err != nil {
			return nil, err
		}
		verifier = v
		checks = append(checks, generate.Check{Name: "jwt_keys", Run: func(context.Context) error { _, _, err := v.ReloadStatus(); return err }})
	}
	compMarks, commitMarks := httpCompensationMarks(st.claims, c.Redis.WaitReplicas), httpCommitMarks(st.claims, c.Redis.WaitReplicas)
	for _, m := range []compensation.Marker{compMarks, commitMarks} {
		if p, ok := m.(markPurger); ok {
			st.marks = append(st.marks, p)
		}
	}
	st.svc, err = generate.New(generate.Config{Dev: c.Dev, RequestTimeout: c.RequestTimeout, AuditFailOpen: c.AuditFailOpen, Instance: instance, RateLimit: c.RateLimit, RateBurst: c.RateBurst}, generate.Deps{
		IDs: gen, Registry: st.store, Logger: log, Logs: ring, Metrics: metrics, Membership: membership, Checks: checks, Sealer: sealer.NewVault(keys, st.store), Auth: verifier, Audit: st.audit,
		CompensationMarks: compMarks, CommitMarks: commitMarks,
	})
	if err != nil {
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
