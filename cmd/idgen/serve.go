package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	oklogrun "github.com/oklog/run"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/idgen/idgen/functions/console"
	"github.com/idgen/idgen/functions/failurestream"
	"github.com/idgen/idgen/functions/httpapi"
	"github.com/idgen/idgen/functions/sweeper"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/platform/limits"
	"github.com/idgen/idgen/shared/registry/diskguard"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// ServeConfig is what the flags and IDGEN_* variables configure.
type ServeConfig struct {
	Listen          string
	Advertise       string
	DataDir         string
	StoreEngine     string
	MetadataKeyFile string
	Shard           uint
	Dev             bool

	Redis redisFlags
	// FailureStream is the compensate workers' stream, whose gauges
	// /metrics and the console show (Redis registry only).
	FailureStream string
	ZK            zkFlags
	Audit         auditFlags
	Log           logFlags

	TLSCert       string
	TLSKey        string
	TLSClientCA   string
	JWTPublicKey  string
	JWTSecretFile string
	JWTIssuer     string
	JWTAudience   string

	AuditFailOpen  bool
	RateLimit      float64
	RateBurst      int
	AccessLogEvery int
	RequestTimeout time.Duration
	ShutdownGrace  time.Duration
	DrainDelay     time.Duration
	SweepInterval  time.Duration
	PprofListen    string

	DiskMinFreeBytes   int64
	DiskMinFreePercent float64
	DiskBallastBytes   int64
	DiskStallTimeout   time.Duration
}

// Serve is the `idgen serve` program: ParseFlags, Run, Close. End-to-end
// tests run it in-process through the same three calls.
type Serve struct {
	Config ServeConfig
	stderr io.Writer

	// Ready, when set, receives the listening address once the service
	// accepts requests.
	Ready chan<- string
}

// NewServe returns a Serve logging to stderr.
func NewServe(stderr io.Writer) *Serve { return &Serve{stderr: stderr} }

// ParseFlags reads args, then IDGEN_* variables for flags not given.
func (m *Serve) ParseFlags(args []string) error {
	c := &m.Config
	fs := flag.NewFlagSet("idgen serve", flag.ContinueOnError)
	fs.SetOutput(m.stderr)
	fs.StringVar(&c.Listen, "listen", ":8080", "address to serve on")
	fs.StringVar(&c.DataDir, "data-dir", "./data", "embedded store directory (used when no ZooKeeper is set)")
	c.Redis.register(fs)
	fs.StringVar(&c.FailureStream, "failure-stream", failurestream.DefaultStream, "with --redis-addr: the compensate workers' Redis Stream, whose lag and dead letters /metrics and the console show")
	c.Redis.registerDurability(fs)
	c.ZK.register(fs)
	c.Audit.register(fs)
	c.Log.register(fs)
	fs.UintVar(&c.Shard, "shard", 0, "shard (coordination domain) 0..63")
	fs.BoolVar(&c.Dev, "dev", false, "development mode: authentication OFF")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate file; serve HTTPS only (TLS 1.2+)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key file for --tls-cert")
	fs.StringVar(&c.TLSClientCA, "tls-client-ca", "", "PEM CA file: require client certificates signed by it (mTLS)")
	fs.StringVar(&c.JWTPublicKey, "jwt-public-key", "", "PEM public key or JWKS file verifying bearer tokens")
	fs.StringVar(&c.JWTSecretFile, "jwt-hs256-secret-file", "", "file holding an HS256 secret (development and tests)")
	fs.StringVar(&c.JWTIssuer, "jwt-issuer", "", "required iss claim")
	fs.StringVar(&c.JWTAudience, "jwt-audience", "", "required aud claim")
	fs.BoolVar(&c.AuditFailOpen, "audit-fail-open", false, "keep accepting state changes while the audit log cannot be written (default: refuse them with 503)")
	fs.Float64Var(&c.RateLimit, "rate-limit", 0, "requests per second allowed to one subject (0 = no limit); over it: 429 with Retry-After")
	fs.IntVar(&c.RateBurst, "rate-burst", 0, "burst of --rate-limit (default: one second's worth)")
	fs.IntVar(&c.AccessLogEvery, "access-log-every", 1, "log the access line (info) of one request in N answered below 500; 0 = none (answers of 500 and above are always logged)")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", 5*time.Second, "bound on the work of one request")
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", 20*time.Second, "how long SIGTERM waits for in-flight requests")
	fs.DurationVar(&c.DrainDelay, "drain-delay", 0, "on SIGTERM, answer /health/ready with 503 this long before closing the listener, so load balancers stop routing first")
	fs.DurationVar(&c.SweepInterval, "sweep-interval", time.Second, "how often pending IDs past their deadline are compensated")
	fs.StringVar(&c.Advertise, "advertise-addr", "", "address other instances and /instances show (default: the listen address, or the host name and its port when that is a wildcard such as [::]:8080)")
	fs.StringVar(&c.StoreEngine, "store-engine", "pebble", "embedded store engine: pebble (one WAL fsync per group commit) or bbolt (one file, two fsyncs per commit)")
	fs.StringVar(&c.MetadataKeyFile, "metadata-key-file", "", "AES-256 keys sealing metadata at rest: lines \"<key-id> <64 hex>\", first is primary (default: <data-dir>/metadata.key, created when missing)")
	fs.Int64Var(&c.DiskMinFreeBytes, "disk-min-free-bytes", 0, "refuse new writes to the embedded store (503) while its filesystem has less free space than this or --disk-min-free-percent, whichever is larger (0 = 256 MiB, -1 = only the percentage)")
	fs.Float64Var(&c.DiskMinFreePercent, "disk-min-free-percent", 0, "the percentage bound of the embedded store's free-space guard (0 = 2, -1 = only the bytes)")
	fs.Int64Var(&c.DiskBallastBytes, "disk-ballast-bytes", 0, "emergency ballast file beside the embedded store, deleted when the disk fills so the store can close cleanly (0 = 1% of the filesystem, at most 64 MiB; -1 = none)")
	fs.DurationVar(&c.DiskStallTimeout, "disk-stall-timeout", 0, "a store commit in flight longer than this marks the instance not ready and refuses new writes (0 = 10s)")
	fs.StringVar(&c.PprofListen, "pprof-listen", "", "serve Go pprof profiles on this address (loopback only; empty = off)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return err
	}
	if c.MetadataKeyFile == "" {
		if c.Redis.Addr != "" {
			// Every instance must open every other's sealed metadata.
			return errors.New("--redis-addr needs --metadata-key-file: one key file shared by all instances")
		}
		c.MetadataKeyFile = filepath.Join(c.DataDir, "metadata.key")
	}
	return nil
}

// Validate reports a configuration the service refuses to start with.
func (c *ServeConfig) Validate() error {
	switch {
	case c.Shard > 63:
		return fmt.Errorf("--shard %d out of range 0..63", c.Shard)
	case c.StoreEngine != "pebble" && c.StoreEngine != "bbolt":
		return fmt.Errorf("--store-engine %q: want pebble or bbolt", c.StoreEngine)
	case c.Redis.Addr == "" && (c.Redis.Master != "" || c.Redis.WaitReplicas != 0 || c.Redis.Cluster):
		return errors.New("--redis-master, --redis-wait-replicas and --redis-cluster need --redis-addr")
	case c.Redis.Addr != "" && c.ZK.Servers == "":
		return errors.New("--redis-addr needs --zookeeper: instances sharing a registry must also share the counter ranges (ZooKeeper); one instance alone runs the embedded store")
	case c.SweepInterval <= 0:
		return errors.New("--sweep-interval must be positive")
	case c.RequestTimeout <= 0:
		return errors.New("--request-timeout must be positive")
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return errors.New("--tls-cert and --tls-key go together")
	case c.TLSClientCA != "" && c.TLSCert == "":
		return errors.New("--tls-client-ca needs --tls-cert and --tls-key")
	case c.JWTPublicKey != "" && c.JWTSecretFile != "":
		return errors.New("--jwt-public-key and --jwt-hs256-secret-file exclude each other")
	case c.Dev && (c.JWTPublicKey != "" || c.JWTSecretFile != ""):
		return errors.New("--dev turns authentication off: do not combine it with --jwt-* keys")
	case !c.Dev && c.JWTPublicKey == "" && c.JWTSecretFile == "":
		return errors.New("authentication is not configured: pass --jwt-public-key or --jwt-hs256-secret-file, or --dev to run WITHOUT authentication on a development machine")
	case c.DiskStallTimeout < 0:
		return errors.New("--disk-stall-timeout must not be negative")
	case c.DiskMinFreePercent > 50:
		return errors.New("--disk-min-free-percent must be at most 50")
	}
	return errors.Join(c.Redis.validate(), c.ZK.validate(), c.Audit.validate())
}

// diskGuard is the embedded store's free-space and stall guard.
func (c *ServeConfig) diskGuard(log *zap.Logger) diskguard.Config {
	return diskguard.Config{MinFreeBytes: c.DiskMinFreeBytes, MinFreePercent: c.DiskMinFreePercent, BallastBytes: c.DiskBallastBytes, StallTimeout: c.DiskStallTimeout, Logger: log.Named("disk")}
}

// Run serves until ctx ends (SIGTERM), then drains: readiness goes down, the
// listener closes, in-flight requests finish, the registry flushes, exit.
func (m *Serve) Run(ctx context.Context) (err error) {
	c := m.Config
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", c.Listen, err)
	}
	defer ln.Close() // on early returns; the server closes it on shutdown
	addr := ln.Addr().String()
	advertise := c.Advertise
	if advertise == "" {
		advertise = defaultAdvertise(addr, os.Hostname)
	}
	st, err := buildStack(ctx, c, m.stderr, advertise)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	log := st.log
	lim := limits.Apply(log)
	ln = lim.Listener(ln, c.TLSCert != "")
	// Every long-lived actor is an (execute, interrupt) pair: the first to
	// return (SIGTERM, or the listener failing) interrupts the rest, in
	// this order, and Run returns when all have; the stack then closes
	// (registry flushed last but one, the logger last).
	var g oklogrun.Group
	if c.TLSCert != "" {
		tlsLn, stopReload, err := tlsListener(ln, c, log)
		if err != nil {
			return err
		}
		ln = tlsLn
		g.Add(untilInterrupted(stopReload))
	}
	if c.PprofListen != "" {
		stopPprof, err := startPprof(c.PprofListen, log)
		if err != nil {
			return err
		}
		g.Add(untilInterrupted(stopPprof))
	}
	stopped := make(chan struct{})
	g.Add(func() error {
		select {
		case <-ctx.Done():
			log.Info("shutdown: draining in-flight requests")
		case <-stopped:
		}
		return nil
	}, func(error) { close(stopped) })

	srv := newServer(st.svc, c.RequestTimeout)
	lim.Server(srv)
	g.Add(func() error {
		if err := srv.Serve(ln); err != nil {
			log.Error("listener failed", zap.Error(err))
			return fmt.Errorf("serve: %w", err)
		}
		return nil
	}, func(cause error) {
		st.svc.SetDraining()
		if c.DrainDelay > 0 && cause == nil {
			log.Info("shutdown: readiness down, waiting before closing the listener", zap.Duration("drain_delay", c.DrainDelay))
			time.Sleep(c.DrainDelay)
		}
		shCtx, cancel := context.WithTimeout(context.Background(), c.ShutdownGrace)
		defer cancel()
		if err := srv.ShutdownWithContext(shCtx); err != nil {
			log.Warn("shutdown: grace period over with requests in flight", zap.Error(err))
		}
		log.Info("shutdown: listener closed, requests drained")
	})

	sw, err := sweeper.New(sweeper.Config{Interval: c.SweepInterval}, sweeper.Deps{
		Store: st.store, Audit: st.audit, Marks: st.marks(sweeper.MarkPrefix),
		Leads: st.leads, Purge: st.purge, Logger: log.Named("sweeper"),
	})
	if err != nil {
		return err
	}
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	g.Add(func() error { sw.Run(sweepCtx); return nil }, func(error) { stopSweep() })

	log.Info("serving", zap.String("addr", addr), zap.String("mode", st.mode), zap.Bool("tls", c.TLSCert != ""), zap.String("data_dir", c.DataDir),
		zap.Uint("shard", c.Shard), zap.String("version", version), zap.Duration("startup", time.Since(st.started)))
	if m.Ready != nil {
		m.Ready <- addr
	}
	_ = st.audit.Record(audit.Event{Actor: "system", Action: audit.ActionServiceStart, Resource: advertise, Outcome: audit.OutcomeSuccess, Reason: "mode " + st.mode})
	defer func() {
		_ = st.audit.Record(audit.Event{Actor: "system", Action: audit.ActionServiceStop, Resource: advertise, Outcome: audit.OutcomeSuccess})
	}()
	return g.Run()
}

// untilInterrupted is a run group actor that only waits: stop ends what
// runs in the background (a reload loop, a side listener).
func untilInterrupted(stop func()) (func() error, func(error)) {
	done := make(chan struct{})
	return func() error { <-done; return nil }, func(error) { stop(); close(done) }
}

// newServer configures fasthttp: the console's few asset paths, the API for
// every other path, body and header limits, timeouts, and JSON errors for
// what fasthttp refuses before the handler runs.
func newServer(svc *httpapi.Service, timeout time.Duration) *fasthttp.Server {
	return &fasthttp.Server{
		Handler: func(c *fasthttp.RequestCtx) {
			if console.Owns(c.URI().PathOriginal()) {
				console.Serve(c)
				return
			}
			svc.Handle(c)
		},
		ErrorHandler:          svc.HandleServerError,
		Name:                  "idgen",
		NoDefaultServerHeader: true,
		MaxRequestBodySize:    svc.MaxBody(),
		ReadBufferSize:        8 << 10,
		ReadTimeout:           timeout + 5*time.Second,
		WriteTimeout:          timeout + 5*time.Second,
		IdleTimeout:           90 * time.Second,
		// Keep-alive connections get "Connection: close" on their last
		// answer during the drain instead of being cut.
		CloseOnShutdown: true,
	}
}

// defaultAdvertise is the address an instance shows when --advertise-addr
// is not set: the listen address, or, when that is a wildcard (0.0.0.0,
// ::), the host's name with its port, which tells instances apart in
// /instances, the claim ledger and their traces (a container's host name
// is its ID, resolvable on its network).
func defaultAdvertise(listen string, hostname func() (string, error)) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
		return listen
	}
	if h, err := hostname(); err == nil && h != "" {
		return net.JoinHostPort(h, port)
	}
	return listen
}
