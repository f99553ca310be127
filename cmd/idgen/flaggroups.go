package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/idgen/idgen/functions/failurestream"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/platform/logring"
	"github.com/idgen/idgen/shared/platform/tracing"
	"github.com/idgen/idgen/shared/registry/redisstore"
	"github.com/idgen/idgen/shared/saga"
)

// The flag groups every command that needs them registers the same way:
// one name, one help text and one IDGEN_* variable per setting, and one
// place that turns them into an open component.

// redisFlags reach the Redis registry and the failure stream: servers,
// credentials, TLS, durability.
type redisFlags struct {
	Addr         string
	Master       string
	Cluster      bool
	Username     string
	PasswordFile string
	TLS          clientTLSFlags
	WaitReplicas int
	Retention    time.Duration
}

func (r *redisFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.Addr, "redis-addr", "", "Redis address (Sentinel addresses with --redis-master, nodes with --redis-cluster)")
	fs.StringVar(&r.Master, "redis-master", "", "Sentinel mode: the master name")
	fs.BoolVar(&r.Cluster, "redis-cluster", false, "--redis-addr lists Redis Cluster nodes")
	fs.StringVar(&r.Username, "redis-username", "", "Redis ACL user")
	fs.StringVar(&r.PasswordFile, "redis-password-file", "", "file holding the Redis password (or set IDGEN_REDIS_PASSWORD); also used for Sentinels")
	r.TLS.register(fs, "redis", "Redis", "connect to Redis with TLS")
}

// registerDurability adds the settings of the commands that write records.
func (r *redisFlags) registerDurability(fs *flag.FlagSet) {
	fs.IntVar(&r.WaitReplicas, "redis-wait-replicas", 0, "durable mode: a write is answered only after N replicas acknowledged it (WAIT)")
	fs.DurationVar(&r.Retention, "redis-retention", 30*24*time.Hour, "how long registry records live in Redis after their last write (at least: up to 1 % more)")
}

func (r redisFlags) validate() error {
	if r.WaitReplicas < 0 {
		return errors.New("--redis-wait-replicas must not be negative")
	}
	return nil
}

// password reads --redis-password-file, or IDGEN_REDIS_PASSWORD.
func (r redisFlags) password() (string, error) {
	if r.PasswordFile == "" {
		return os.Getenv("IDGEN_REDIS_PASSWORD"), nil
	}
	b, err := os.ReadFile(r.PasswordFile)
	if err != nil {
		return "", fmt.Errorf("--redis-password-file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// config is the registry's configuration; dev allows a Redis without
// persistence.
func (r redisFlags) config(dev bool, shard uint8, observe func(int, time.Duration), log *zap.Logger) (redisstore.Config, error) {
	password, err := r.password()
	if err != nil {
		return redisstore.Config{}, err
	}
	tlsCfg, err := r.TLS.config()
	if err != nil {
		return redisstore.Config{}, err
	}
	return redisstore.Config{
		Addrs: strings.Split(r.Addr, ","), MasterName: r.Master, Cluster: r.Cluster,
		Username: r.Username, Password: password, SentinelPassword: password, TLS: tlsCfg,
		WaitReplicas: r.WaitReplicas, Retention: r.Retention, Shard: shard,
		RequirePersistence: !dev,
		// One pool per process serves the registry, the audit marks and the
		// failure stream: a connection ready for every entry a worker has
		// in flight (opened at start and kept), so that the audited mark
		// that follows an audit entry is sent at once, never queued for a
		// connection (see failurestream.New), beside go-redis' default for
		// the registry's flushes.
		PoolSize: 10*runtime.GOMAXPROCS(0) + 2*failurestream.DefaultCount + 16, ConnMaxIdleTime: -1,
		Logger: log.Named("redis"), Observe: observe,
		Collision: func(id idcodec.ID) {
			log.Error("registry collision: ID held by another writer", zap.Stringer("id", id))
		},
	}, nil
}

// open connects the Redis registry and refuses an evicting server (a
// registry that evicts is lying) and, unless dev, one without persistence.
// The store keeps checking both, and its epoch marker, while it runs.
func (r redisFlags) open(ctx context.Context, dev bool, shard uint8, observe func(int, time.Duration), log *zap.Logger) (*redisstore.Store, error) {
	cfg, err := r.config(dev, shard, observe, log)
	if err != nil {
		return nil, err
	}
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := redisstore.Open(octx, cfg)
	if err != nil {
		return nil, fmt.Errorf("redis %s: %w", r.Addr, err)
	}
	switch err := s.CheckEvictionPolicy(octx); {
	case errors.Is(err, redisstore.ErrPolicyUnknown):
		log.Warn("cannot read the Redis maxmemory-policy (CONFIG not permitted): make sure it is noeviction, or the registry may lose records", zap.Error(err))
	case err != nil:
		s.Close()
		return nil, fmt.Errorf("refusing a Redis that evicts keys: %w", err)
	}
	if !dev {
		// A Redis that a restart empties loses every acknowledged ID.
		switch err := s.CheckPersistence(octx); {
		case errors.Is(err, redisstore.ErrPersistenceUnknown):
			log.Warn("cannot read the Redis persistence settings (CONFIG not permitted): make sure appendonly is yes, or a restart loses acknowledged IDs", zap.Error(err))
		case err != nil:
			s.Close()
			return nil, fmt.Errorf("refusing a Redis without persistence outside --dev: %w", err)
		}
	}
	return s, nil
}

// auditFlags configure the audit log.
type auditFlags struct {
	Path               string
	RetryInterval      time.Duration
	Wait               time.Duration
	Backlog            int
	SigningKey         string
	CheckpointEvery    int
	CheckpointInterval time.Duration
}

func (a *auditFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.Path, "audit-log", "-", "audit log file (JSON lines); - for stderr")
	fs.DurationVar(&a.RetryInterval, "audit-retry-interval", 0, "while the audit log cannot be written, how often its backlog is retried (0 = 1s)")
	fs.DurationVar(&a.Wait, "audit-wait", 0, "how long one audit entry waits in the backlog before its request fails with 503 (0 = 1s)")
	fs.IntVar(&a.Backlog, "audit-backlog", 0, "most audit entries waiting for a writable log; more fail at once (0 = 4096)")
	fs.StringVar(&a.SigningKey, "audit-signing-key", "", "PEM Ed25519 key file (idgen keygen: audit-signing.key): sign checkpoints of the audit log's hash chain")
	fs.IntVar(&a.CheckpointEvery, "audit-checkpoint-every", 0, "with --audit-signing-key, a checkpoint after this many audit lines (0 = 1000)")
	fs.DurationVar(&a.CheckpointInterval, "audit-checkpoint-interval", 0, "with --audit-signing-key, a checkpoint at least this often while audit lines are written (0 = 1m)")
}

func (a auditFlags) settings() audit.Settings {
	return audit.Settings{RetryInterval: a.RetryInterval, Wait: a.Wait, MaxBacklog: a.Backlog,
		CheckpointEvery: a.CheckpointEvery, CheckpointInterval: a.CheckpointInterval}
}

func (a auditFlags) validate() error {
	s := a.settings()
	if err := s.Validate(); err != nil {
		return fmt.Errorf("--audit-*: %w", err)
	}
	// An entry's wait and one retry stay under the audit claim's lease, so
	// that no other attempt can claim an entry this process may still write.
	if max(s.Wait, audit.DefaultWait)+max(s.RetryInterval, audit.DefaultRetryInterval) >= saga.DefaultLeaseTTL {
		return fmt.Errorf("--audit-wait plus --audit-retry-interval must stay under %s, the lease of an audit claim", saga.DefaultLeaseTTL)
	}
	return nil
}

// open opens the audit log; instance names the writer in every entry.
// With --audit-signing-key the log signs checkpoints of its chain.
// open opens the audit log; keep, when set, receives each signed
// checkpoint for a second place.
func (a auditFlags) open(instance string, keep func(audit.Checkpoint)) (*audit.Log, error) {
	s := a.settings()
	s.Checkpoint = keep
	if a.SigningKey != "" {
		key, err := audit.LoadSigningKey(a.SigningKey)
		if err != nil {
			return nil, fmt.Errorf("--audit-signing-key: %w", err)
		}
		s.SigningKey = key
	}
	l, err := audit.OpenWith(a.Path, instance, s)
	if err != nil {
		return nil, fmt.Errorf("--audit-log: %w", err)
	}
	return l, nil
}

// logFlags configure the JSON log and the traces.
type logFlags struct {
	Level        string
	OTLPEndpoint string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.Level, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&l.OTLPEndpoint, "otlp-endpoint", "", "OpenTelemetry collector (OTLP/HTTP) URL, e.g. http://collector:4318: export traces (default: the OTEL_EXPORTER_OTLP_ENDPOINT variable; none: tracing off)")
}

// tracing sets up the traces of a process named instance (tracing.Setup)
// and hands their flush at exit to onClose; nil when tracing is off.
func (l logFlags) tracing(ctx context.Context, instance string, log *zap.Logger, onClose func(func() error)) (*tracing.Provider, error) {
	tp, err := tracing.Setup(ctx, tracing.Config{Endpoint: l.OTLPEndpoint, Instance: instance, Version: version})
	if err != nil || tp == nil {
		return nil, err
	}
	log.Info("tracing on: spans are exported over OTLP/HTTP", zap.String("endpoint", l.OTLPEndpoint))
	onClose(func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return tp.Shutdown(sctx)
	})
	return tp, nil
}

// logger builds the JSON logger to w and, when ring is set, into ring
// (the /logs route): each line is encoded once for both.
func (l logFlags) logger(w io.Writer, ring *logring.Ring) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(l.Level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey, ec.EncodeTime = "time", zapcore.RFC3339NanoTimeEncoder
	enc := zapcore.NewJSONEncoder(ec)
	out := zapcore.Lock(zapcore.AddSync(w))
	if ring != nil {
		return zap.New(ring.WriterCore(enc, out, lvl), zap.AddCaller()), nil
	}
	return zap.New(zapcore.NewCore(enc, out, lvl), zap.AddCaller()), nil
}

// zkFlags reach the ZooKeeper ensemble.
type zkFlags struct {
	Servers        string
	Root           string
	SessionTimeout time.Duration
	TLS            clientTLSFlags
	User           string
	PasswordFile   string
}

func (z *zkFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&z.Servers, "zookeeper", "", "comma-separated ZooKeeper servers; enables the distributed allocator")
	fs.StringVar(&z.Root, "zookeeper-root", "/idgen", "znode under which idgen keeps its state")
	fs.DurationVar(&z.SessionTimeout, "zookeeper-session-timeout", 10*time.Second, "ZooKeeper session timeout; the worker slot lease is 2/3 of it")
	z.TLS.register(fs, "zookeeper", "ZooKeeper", "dial ZooKeeper with TLS (secureClientPort)")
	fs.StringVar(&z.User, "zookeeper-user", "", "ZooKeeper digest user; znodes idgen creates get its ACL")
	fs.StringVar(&z.PasswordFile, "zookeeper-password-file", "", "file holding the ZooKeeper digest password")
}

func (z zkFlags) validate() error {
	switch {
	case z.SessionTimeout < time.Second:
		return errors.New("--zookeeper-session-timeout must be at least 1s")
	case (z.User == "") != (z.PasswordFile == ""):
		return errors.New("--zookeeper-user and --zookeeper-password-file go together")
	}
	return nil
}

// clientTLSFlags are the TLS settings of a connection idgen dials to a
// server: --<name>-tls-ca, --<name>-tls-cert and --<name>-tls-key.
type clientTLSFlags struct {
	CA   string
	Cert string
	Key  string

	prefix string // "--<name>-tls", which the errors name
}

// register adds the flags of the server named name (server in the help
// texts); caUse tells what a CA file turns on.
func (t *clientTLSFlags) register(fs *flag.FlagSet, name, server, caUse string) {
	t.prefix = "--" + name + "-tls"
	fs.StringVar(&t.CA, name+"-tls-ca", "", "PEM CA file: "+caUse)
	fs.StringVar(&t.Cert, name+"-tls-cert", "", "PEM client certificate for "+server+" TLS")
	fs.StringVar(&t.Key, name+"-tls-key", "", "PEM client key for "+server+" TLS")
}

// config builds the client TLS config from the PEM files (CA, optional
// client certificate); nil when none is given.
func (t clientTLSFlags) config() (*tls.Config, error) {
	if t.CA == "" && t.Cert == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, fmt.Errorf("%s-ca: %w", t.prefix, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s-ca %s: no PEM certificate", t.prefix, t.CA)
		}
		cfg.RootCAs = pool
	}
	if (t.Cert == "") != (t.Key == "") {
		return nil, fmt.Errorf("%s-cert and %s-key go together", t.prefix, t.prefix)
	}
	if t.Cert != "" {
		cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("%s-cert: %w", t.prefix, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
