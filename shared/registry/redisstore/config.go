package redisstore

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/idcodec"
)

// Defaults of Config.
const (
	DefaultAddr         = "127.0.0.1:6379"
	DefaultPrefix       = "idgen:"
	DefaultRetention    = 30 * 24 * time.Hour
	DefaultTombstoneTTL = 14 * 24 * time.Hour
	DefaultMaxBatch     = 4096
	DefaultWaitTimeout  = time.Second
	DefaultFlushTimeout = 5 * time.Second
	// DefaultCheckInterval is how often the checker reads every master.
	DefaultCheckInterval = time.Second
)

// Config of a Store; the zero value means the documented defaults and a
// standalone Redis on DefaultAddr. The caller (main) reads secrets from the
// environment or files; this package never does.
type Config struct {
	// Addrs: one address for a standalone server (or a cluster endpoint,
	// which Open detects), several for a cluster seed list, or the Sentinels
	// when MasterName is set. Default [DefaultAddr].
	Addrs []string
	// MasterName selects Sentinel mode: Addrs are Sentinels monitoring this
	// master, and the client follows failovers.
	MasterName string
	// Cluster forces Redis Cluster mode (it is also chosen for several Addrs
	// without MasterName, and detected with INFO for a single address).
	Cluster bool
	// Username and Password authenticate (ACL user, or password only with
	// the default user). SentinelPassword authenticates to the Sentinels.
	Username, Password string
	SentinelUsername   string
	SentinelPassword   string
	// TLS, when set, is used for every connection (servers and Sentinels).
	TLS *tls.Config

	// WaitReplicas > 0 is durable mode: every flush ends with WAIT
	// WaitReplicas WaitTimeout on the connection that wrote, and the whole
	// batch fails with registry.ErrUnavailable when fewer replicas
	// acknowledged. Pair it with appendfsync always and
	// min-replicas-to-write on the servers.
	WaitReplicas int
	// WaitTimeout bounds WAIT. Default DefaultWaitTimeout (durable mode only).
	WaitTimeout time.Duration

	// Retention: a record bucket (128 consecutive counters of one shard)
	// and its state map live at least Retention after the bucket's last
	// write, and at most 1 % longer (see batchSource). Default 30 days.
	Retention time.Duration
	// TombstoneTTL is the minimum life of a null-compensation tombstone;
	// it should exceed the longest upstream retry horizon. Default 14 days.
	TombstoneTTL time.Duration
	// Prefix of every key. It must not contain '{' or '}' (hash tags).
	// Default DefaultPrefix.
	Prefix string
	// Shard whose deadline index Expired reads and whose high-water mark
	// HighWater/RaiseHighWater keep. Records of any shard can be stored.
	Shard uint8

	// MaxBatch bounds the operations of one group commit. Default 4096.
	MaxBatch int
	// FlushTimeout bounds one flush (all its round trips, WAIT excluded).
	// Default DefaultFlushTimeout.
	FlushTimeout time.Duration
	// PoolSize of the client's connection pool; 0 means go-redis' default.
	PoolSize int
	// ConnMaxIdleTime closes connections idle that long; 0 means go-redis'
	// default (30 minutes), -1 keeps them (a pool warmed at start stays
	// warm).
	ConnMaxIdleTime time.Duration

	// CheckInterval: how often the checker reads every master's eviction
	// policy, evictions, persistence and epoch marker; a change is refused
	// within about one interval (a reconnect checks the marker at once).
	// Default DefaultCheckInterval.
	CheckInterval time.Duration
	// RequirePersistence makes the checker refuse a master with neither
	// appendonly yes nor save points (ReasonNoPersistence): a restart would
	// empty it. Set it outside development. Default false.
	RequirePersistence bool

	// Logger receives collisions, failed flushes and failed clean-ups.
	// Default: none.
	Logger *zap.Logger
	// Observe, when set, is told the size and duration of every flush (on
	// the flusher goroutine: it must not block).
	Observe func(ops int, d time.Duration)
	// Collision, when set, is called for every ID found held by another
	// writer (an alarm: uniqueness comes from the ranges). Stats counts them
	// either way. It runs on the flusher goroutine: it must not block.
	Collision func(id idcodec.ID)
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Shard > idcodec.MaxShard:
		return fmt.Errorf("redisstore: shard %d out of range", c.Shard)
	case c.MaxBatch < 0:
		return errors.New("redisstore: negative max batch")
	case c.WaitReplicas < 0:
		return errors.New("redisstore: negative wait replicas")
	case c.WaitTimeout < 0 || c.Retention < 0 || c.TombstoneTTL < 0 || c.FlushTimeout < 0 || c.CheckInterval < 0:
		return errors.New("redisstore: negative duration")
	case strings.ContainsAny(c.Prefix, "{}"):
		return fmt.Errorf("redisstore: prefix %q contains a hash tag brace", c.Prefix)
	case c.MasterName != "" && c.Cluster:
		return errors.New("redisstore: Sentinel (MasterName) and Cluster are exclusive")
	case c.MasterName != "" && len(c.Addrs) == 0:
		return errors.New("redisstore: Sentinel mode needs the Sentinel addresses")
	case c.PoolSize < 0:
		return errors.New("redisstore: negative pool size")
	}
	for _, a := range c.Addrs {
		if a == "" {
			return errors.New("redisstore: empty address")
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if len(c.Addrs) == 0 {
		c.Addrs = []string{DefaultAddr}
	}
	c.Prefix = cmp.Or(c.Prefix, DefaultPrefix)
	c.Retention = cmp.Or(c.Retention, DefaultRetention)
	c.TombstoneTTL = cmp.Or(c.TombstoneTTL, DefaultTombstoneTTL)
	c.MaxBatch = cmp.Or(c.MaxBatch, DefaultMaxBatch)
	c.WaitTimeout = cmp.Or(c.WaitTimeout, DefaultWaitTimeout)
	c.FlushTimeout = cmp.Or(c.FlushTimeout, DefaultFlushTimeout)
	c.CheckInterval = cmp.Or(c.CheckInterval, DefaultCheckInterval)
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	return c
}
