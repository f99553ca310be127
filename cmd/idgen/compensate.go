package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/idgen/idgen/functions/compensate"
	"github.com/idgen/idgen/shared/audit"
	"github.com/idgen/idgen/shared/compensation"
	"github.com/idgen/idgen/shared/registry/redisstore"
)

// compensateConfig is what the flags and IDGEN_* variables of `idgen
// compensate` configure. The Redis flags mean what they mean for serve.
type compensateConfig struct {
	RedisAddr         string
	RedisMaster       string
	RedisWait         int
	RedisCluster      bool
	RedisUsername     string
	RedisPasswordFile string
	RedisTLSCA        string
	RedisTLSCert      string
	RedisTLSKey       string
	RedisRetention    time.Duration
	AuditLog          string
	LogLevel          string
	FailureStream     string
	Consumer          string
	MaxDeliveries     int
	ClaimIdle         time.Duration
	MetricsListen     string
}

func parseCompensateFlags(args []string, stderr io.Writer) (compensateConfig, error) {
	var c compensateConfig
	fs := flag.NewFlagSet("idgen compensate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: idgen compensate [flags]\n\nConsumes failure events {id, reason, event_id} from a Redis Stream (consumer group \"compensate\")\nand compensates their IDs in the registry; entries that keep failing go to <stream>:dlq.\n\n")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.RedisAddr, "redis-addr", "", "Redis address (Sentinel addresses with --redis-master, nodes with --redis-cluster); required")
	fs.StringVar(&c.RedisMaster, "redis-master", "", "Sentinel mode: the master name")
	fs.IntVar(&c.RedisWait, "redis-wait-replicas", 0, "durable mode: a compensation is stored only after N replicas acknowledged (WAIT)")
	fs.BoolVar(&c.RedisCluster, "redis-cluster", false, "--redis-addr lists Redis Cluster nodes")
	fs.StringVar(&c.RedisUsername, "redis-username", "", "Redis ACL user")
	fs.StringVar(&c.RedisPasswordFile, "redis-password-file", "", "file holding the Redis password (or set IDGEN_REDIS_PASSWORD); also used for Sentinels")
	fs.StringVar(&c.RedisTLSCA, "redis-tls-ca", "", "PEM CA file: connect to Redis with TLS")
	fs.StringVar(&c.RedisTLSCert, "redis-tls-cert", "", "PEM client certificate for Redis TLS")
	fs.StringVar(&c.RedisTLSKey, "redis-tls-key", "", "PEM client key for Redis TLS")
	fs.DurationVar(&c.RedisRetention, "redis-retention", 30*24*time.Hour, "how long registry records live in Redis after their last write (as for serve)")
	fs.StringVar(&c.AuditLog, "audit-log", "-", "audit log file (JSON lines); - for stderr")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.FailureStream, "failure-stream", compensate.DefaultStream, "Redis Stream of failure events; dead letters go to <stream>:dlq")
	fs.StringVar(&c.Consumer, "consumer", "", "consumer name in the group, unique per running worker (default <hostname>-<pid>)")
	fs.IntVar(&c.MaxDeliveries, "max-deliveries", compensate.DefaultMaxDeliveries, "an entry delivered more often is dead-lettered")
	fs.DurationVar(&c.ClaimIdle, "claim-idle", compensate.DefaultClaimIdle, "entries pending this long at another (dead) consumer are taken over")
	fs.StringVar(&c.MetricsListen, "metrics-listen", "", "serve /metrics and /health on this address (empty = off)")
	withEnvUsage(fs)
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := applyEnv(fs); err != nil {
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
	case c.RedisAddr == "":
		return errors.New("--redis-addr is required: the worker reads the failure stream and the registry from Redis")
	case c.RedisWait < 0:
		return errors.New("--redis-wait-replicas must not be negative")
	case c.MaxDeliveries < 1:
		return errors.New("--max-deliveries must be at least 1")
	case c.ClaimIdle < 100*time.Millisecond:
		return errors.New("--claim-idle must be at least 100ms")
	case c.FailureStream == "":
		return errors.New("--failure-stream must not be empty")
	}
	return nil
}

// compensateCmd runs the compensate worker until ctx ends (SIGTERM), then
// lets in-flight entries finish and exits.
func compensateCmd(ctx context.Context, args []string, _, stderr io.Writer) (err error) {
	c, err := parseCompensateFlags(args, stderr)
	if err != nil {
		return err
	}
	lvl, err := zapcore.ParseLevel(c.LogLevel)
	if err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey, ec.EncodeTime = "time", zapcore.RFC3339NanoTimeEncoder
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(ec), zapcore.Lock(zapcore.AddSync(stderr)), lvl), zap.AddCaller())
	defer func() { _ = log.Sync() }()

	cc, err := openCompensateCore(ctx, c, c.Consumer, log)
	if err != nil {
		return err
	}
	defer cc.close()
	auditLog, store, rdb, core := cc.audit, cc.store, cc.rdb, cc.core

	metrics := compensate.NewMetrics()
	registerStoreMetrics(metrics.Registry, cc.store)
	registerAuditMetrics(metrics.Registry, cc.audit)
	w, err := compensate.New(rdb, core, auditLog, compensate.Config{
		Stream: c.FailureStream, Consumer: c.Consumer, MaxDeliveries: c.MaxDeliveries, ClaimIdle: c.ClaimIdle,
		Logger: log.Named("compensate"), Metrics: metrics,
	})
	if err != nil {
		return err
	}
	if c.MetricsListen != "" {
		stop, err := serveCompensateMetrics(c.MetricsListen, compensate.Handler(metrics, map[string]compensate.Check{
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

// compensateStreamClient connects the failure stream's client the way
// openRedis connects the registry's (same servers, credentials and TLS).
func compensateStreamClient(c compensateConfig, cluster bool) (redis.UniversalClient, error) {
	password := os.Getenv("IDGEN_REDIS_PASSWORD")
	if c.RedisPasswordFile != "" {
		b, err := os.ReadFile(c.RedisPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("--redis-password-file: %w", err)
		}
		password = strings.TrimSpace(string(b))
	}
	tlsCfg, err := clientTLS("--redis-tls", c.RedisTLSCA, c.RedisTLSCert, c.RedisTLSKey)
	if err != nil {
		return nil, err
	}
	return redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: strings.Split(c.RedisAddr, ","), MasterName: c.RedisMaster, IsClusterMode: cluster,
		Username: c.RedisUsername, Password: password, SentinelPassword: password, TLSConfig: tlsCfg,
		DisableIdentity: true, ContextTimeoutEnabled: true,
		// A connection ready for every entry in flight (opened by the
		// worker at start and kept): the audited mark that follows an audit
		// entry is sent at once, never queued for a connection (see
		// compensate.New).
		PoolSize: 2*compensate.DefaultCount + 16, ConnMaxIdleTime: -1,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}), nil
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
	rdb   redis.UniversalClient
	core  *compensation.Core
}

func openCompensateCore(ctx context.Context, c compensateConfig, instance string, log *zap.Logger) (_ *compensateCore, err error) {
	cc := &compensateCore{}
	defer func() {
		if err != nil {
			cc.close()
		}
	}()
	if cc.audit, err = audit.Open(c.AuditLog, instance); err != nil {
		return nil, err
	}
	cc.store, err = openRedis(ctx, ServeConfig{
		RedisAddr: c.RedisAddr, RedisMaster: c.RedisMaster, RedisWait: c.RedisWait, RedisCluster: c.RedisCluster,
		RedisUsername: c.RedisUsername, RedisPasswordFile: c.RedisPasswordFile,
		RedisTLSCA: c.RedisTLSCA, RedisTLSCert: c.RedisTLSCert, RedisTLSKey: c.RedisTLSKey, RedisRetention: c.RedisRetention,
	}, nil, log)
	if err != nil {
		return nil, err
	}
	if cc.rdb, err = compensateStreamClient(c, cc.store.Cluster()); err != nil {
		return nil, err
	}
	cc.core = &compensation.Core{Registry: cc.store, Audit: cc.audit, Marks: &compensation.RedisMarks{Client: cc.rdb, WaitReplicas: c.RedisWait}}
	return cc, nil
}

// httpCompensationMarks is the compensation.Marker of serve's POST
// /compensate (generate.Deps.CompensationMarks): in Redis mode RedisMarks on
// the client of the sweeper's claims (shared by every instance, like the
// worker's marks), durable like the registry (waitReplicas); in embedded
// mode StoreMarks in the embedded store, so that a retry of a request whose
// effect was stored but whose audit entry failed writes the entry once.
func httpCompensationMarks(claims sweepClaimer, waitReplicas int) compensation.Marker {
	switch r := claims.(type) {
	case *redisSweepClaims:
		return &compensation.RedisMarks{Client: r.client, WaitReplicas: waitReplicas}
	case soleSweeper:
		if r.marks != nil {
			return &compensation.StoreMarks{Store: r.marks}
		}
	}
	return nil
}

// commitMarkPrefix keeps the audited marks of POST /commit apart from those
// of compensations (an ID may have both).
const commitMarkPrefix = "idgen:commit:audited:"

// httpCommitMarks is httpCompensationMarks for POST /commit.
func httpCommitMarks(claims sweepClaimer, waitReplicas int) compensation.Marker {
	switch r := claims.(type) {
	case *redisSweepClaims:
		return &compensation.RedisMarks{Client: r.client, Prefix: commitMarkPrefix, WaitReplicas: waitReplicas}
	case soleSweeper:
		if r.marks != nil {
			return &compensation.StoreMarks{Store: r.marks, Prefix: commitMarkPrefix}
		}
	}
	return nil
}

func (cc *compensateCore) close() {
	if cc.rdb != nil {
		_ = cc.rdb.Close()
	}
	if cc.store != nil {
		_ = cc.store.Close()
	}
	if cc.audit != nil {
		_ = cc.audit.Close()
	}
}
