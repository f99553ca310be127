package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/idgen/idgen/functions/failurestream"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/platform/audit/redischeckpoints"
	"github.com/idgen/idgen/shared/registry/redisstore"
	"github.com/idgen/idgen/shared/saga"
)

// compensateConfig is what the flags and IDGEN_* variables of `idgen
// compensate` configure. The Redis, audit and log flags are serve's.
type compensateConfig struct {
	Redis         redisFlags
	Audit         auditFlags
	Log           logFlags
	FailureStream string
	Consumer      string
	MaxDeliveries int
	ClaimIdle     time.Duration
	MetricsListen string
}

const compensateUsage = `Usage: idgen compensate [flags]

Consumes failure events {id, reason, event_id} from a Redis Stream (consumer group "compensate")
and compensates their IDs in the registry; entries that keep failing go to <stream>:dlq.

`

func parseCompensateFlags(args []string, stderr io.Writer) (compensateConfig, error) {
	var c compensateConfig
	fs := newFlagSet("idgen compensate", compensateUsage, stderr)
	c.Redis.register(fs)
	c.Redis.registerDurability(fs)
	c.Audit.register(fs)
	c.Log.register(fs)
	fs.StringVar(&c.FailureStream, "failure-stream", failurestream.DefaultStream, "Redis Stream of failure events; dead letters go to <stream>:dlq")
	fs.StringVar(&c.Consumer, "consumer", "", "consumer name in the group, unique per running worker (default <hostname>-<pid>)")
	fs.IntVar(&c.MaxDeliveries, "max-deliveries", failurestream.DefaultMaxDeliveries, "an entry delivered more often is dead-lettered")
	fs.DurationVar(&c.ClaimIdle, "claim-idle", failurestream.DefaultClaimIdle, "entries pending this long at another (dead) consumer are taken over")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "", "serve /metrics and /health on this address (empty = off)")
	if err := parseFlags(fs, args); err != nil {
		return c, err
	}
	if c.Consumer == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "compensate"
		}
		c.Consumer = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	return c, c.validate()
}

func (c compensateConfig) validate() error {
	switch {
	case c.Redis.Addr == "":
		return errors.New("--redis-addr is required: the worker reads the failure stream and the registry from Redis")
	case c.MaxDeliveries < 1:
		return errors.New("--max-deliveries must be at least 1")
	case c.ClaimIdle < 100*time.Millisecond:
		return errors.New("--claim-idle must be at least 100ms")
	case c.FailureStream == "":
		return errors.New("--failure-stream must not be empty")
	}
	return errors.Join(c.Redis.validate(), c.Audit.validate())
}

// compensateFlagsAndLog parses the compensate flags of args (and their
// environment variables) and builds the logger they ask for, to stderr.
func compensateFlagsAndLog(args []string, stderr io.Writer) (compensateConfig, *zap.Logger, error) {
	c, err := parseCompensateFlags(args, stderr)
	if err != nil {
		return c, nil, err
	}
	log, err := c.Log.logger(stderr, nil)
	return c, log, err
}

// compensateCmd runs the compensate worker until ctx ends (SIGTERM), then
// lets in-flight entries finish and exits.
func compensateCmd(ctx context.Context, args []string, _, stderr io.Writer) (err error) {
	c, log, err := compensateFlagsAndLog(args, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	var flush []func() error
	defer func() {
		for _, f := range flush {
			_ = f()
		}
	}()
	tp, err := c.Log.tracing(ctx, c.Consumer, log, func(f func() error) { flush = append(flush, f) })
	if err != nil {
		return err
	}

	cc, err := openCompensateCore(ctx, c, c.Consumer, log)
	if err != nil {
		return err
	}
	defer cc.close()
	auditLog, store, rdb, core := cc.audit, cc.store, cc.rdb, cc.core

	metrics := failurestream.NewMetrics()
	registerStoreMetrics(metrics.Registry, cc.store)
	registerAuditMetrics(metrics.Registry, cc.audit)
	w, err := failurestream.New(rdb, core, auditLog, failurestream.Config{
		Stream: c.FailureStream, Consumer: c.Consumer, MaxDeliveries: c.MaxDeliveries, ClaimIdle: c.ClaimIdle,
		Logger: log.Named("compensate"), Metrics: metrics, Tracer: tp.Tracer("idgen/compensate"),
	})
	if err != nil {
		return err
	}
	if c.MetricsListen != "" {
		stop, err := serveCompensateMetrics(c.MetricsListen, failurestream.Handler(metrics, map[string]failurestream.Check{
			"redis":    w.Ping,
			"registry": store.Ping,
			"audit":    func(context.Context) error { return auditLog.Healthy() },
		}), log)
		if err != nil {
			return err
		}
		defer stop()
	}
	_ = auditLog.Record(audit.Event{Actor: "system", Action: audit.ActionServiceStart, Resource: c.FailureStream, Outcome: audit.OutcomeSuccess, Reason: "compensate worker " + c.Consumer})
	defer func() {
		_ = auditLog.Record(audit.Event{Actor: "system", Action: audit.ActionServiceStop, Resource: c.FailureStream, Outcome: audit.OutcomeSuccess, Reason: "compensate worker " + c.Consumer})
	}()
	return w.Run(ctx)
}

// serveCompensateMetrics serves h on addr until the returned stop is called.
func serveCompensateMetrics(addr string, h http.Handler, log *zap.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener failed", zap.Error(err))
		}
	}()
	log.Info("serving /metrics and /health", zap.String("addr", ln.Addr().String()))
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}

// compensateCore is the compensation core with what it needs open: audit
// log, registry, and the client of its audit marks. The stream worker and
// the SQS/EventBridge Lambda share it.
type compensateCore struct {
	audit *audit.Log
	store *redisstore.Store
	rdb   redis.UniversalClient // the store's client (one pool per process)
	ship  *redischeckpoints.Shipper
	core  *saga.Core
}

func openCompensateCore(ctx context.Context, c compensateConfig, instance string, log *zap.Logger) (_ *compensateCore, err error) {
	cc := &compensateCore{}
	defer func() {
		if err != nil {
			cc.close()
		}
	}()
	if cc.store, err = c.Redis.open(ctx, false, 0, nil, log); err != nil {
		return nil, err
	}
	cc.rdb = cc.store.Client()
	// The signed checkpoints are also kept in Redis (closed after the
	// log, whose Close writes the last one).
	cc.ship = redischeckpoints.New(cc.rdb, log.Named("audit"))
	if cc.audit, err = c.Audit.open(instance, cc.ship.Hook); err != nil {
		return nil, err
	}
	cc.core = &saga.Core{Registry: cc.store, Audit: cc.audit, Marks: &saga.RedisMarks{Client: cc.rdb, WaitReplicas: c.Redis.WaitReplicas}}
	return cc, nil
}

// close closes the log, then its checkpoint shipper, then the store and
// with it the Redis client they share.
func (cc *compensateCore) close() {
	if cc.audit != nil {
		_ = cc.audit.Close()
	}
	if cc.ship != nil {
		cc.ship.Close()
	}
	if cc.store != nil {
		_ = cc.store.Close()
	}
}
