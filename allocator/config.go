package allocator

import (
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
	DefaultRoot           = "/idgen"
	DefaultSessionTimeout = 10 * time.Second
	DefaultMaxSlots       = idcodec.MaxWorker + 1 // 4096
)

// DigestAuth is a ZooKeeper digest user. See Config.Auth.
type DigestAuth struct {
	User, Password string
}

// Config of an Allocator. The zero value means the documented defaults, except
// Servers, which is required.
type Config struct {
	// Servers are the ZooKeeper addresses, host:port. Required.
	Servers []string
	// Root is the znode under which everything lives. Default "/idgen".
	Root string
	// Shard is the coordination domain whose counter is claimed (0..63).
	Shard uint8
	// SessionTimeout asked of ZooKeeper. Default 10s. The local lease is
	// 2/3 of it. ZooKeeper clamps the timeout to [2, 20] ticks; pick a value
	// inside the servers' bounds, or the lease may outlive a shortened session.
	SessionTimeout time.Duration
	// Address and Version are advertised in the member znode (discovery).
	Address, Version string
	// Auth, when set, is added to the session (scheme "digest"), and every
	// znode this service creates gets DigestACL(PermAll, User, Password). The
	// discovery znodes (members/, workers/ and their children) also get world
	// READ so operators and load balancers can list instances without the
	// secret; the counter and its parents are readable and writable only by
	// the digest user. Existing znodes keep the ACL they have.
	Auth *DigestAuth
	// TLS, when set, dials every server with TLS (ZooKeeper's
	// secureClientPort). Set ServerName when the servers' certificates do not
	// name the dialed host.
	TLS *tls.Config
	// Logger receives structured logs. Nil means zap.NewNop().
	Logger *zap.Logger
	// Clock is the time source for the lease. Nil means time.Now. It must be
	// the clock whose readings are passed to Worker, and should carry a
	// monotonic reading (time.Now does).
	Clock func() time.Time
	// MaxSlots bounds the worker slots 0..MaxSlots-1. Default 4096, at most
	// 4096 (12 bits).
	MaxSlots int
}

func (c Config) withDefaults() Config {
	if c.Root == "" {
		c.Root = DefaultRoot
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.MaxSlots == 0 {
		c.MaxSlots = DefaultMaxSlots
	}
	return c
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if len(c.Servers) == 0 {
		errs = append(errs, errors.New("no ZooKeeper servers"))
	}
	for _, s := range c.Servers {
		if strings.TrimSpace(s) == "" {
			errs = append(errs, errors.New("empty server address"))
			break
		}
	}
	if !strings.HasPrefix(c.Root, "/") || c.Root == "/" || strings.HasSuffix(c.Root, "/") || strings.Contains(c.Root, "//") {
		errs = append(errs, fmt.Errorf("root %q is not an absolute znode path below /", c.Root))
	}
	if c.Shard > idcodec.MaxShard {
		errs = append(errs, fmt.Errorf("shard %d out of range 0..%d", c.Shard, idcodec.MaxShard))
	}
	if c.SessionTimeout < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("session timeout %v below 100ms", c.SessionTimeout))
	}
	if c.MaxSlots < 1 || c.MaxSlots > DefaultMaxSlots {
		errs = append(errs, fmt.Errorf("max slots %d out of range 1..%d", c.MaxSlots, DefaultMaxSlots))
	}
	if c.Auth != nil && (c.Auth.User == "" || strings.Contains(c.Auth.User, ":")) {
		errs = append(errs, errors.New("digest user must be non-empty and contain no ':'"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("allocator: invalid config: %w", err)
	}
	return nil
}

// leaseDuration is how long after the last proof of a live session the slot
// may still be stamped: 2/3 of the session timeout, the same margin the
// client library uses as its receive timeout, so the server (which expires
// the session a full timeout after it last heard from us) cannot have handed
// the slot to someone else yet.
func (c Config) leaseDuration() time.Duration { return c.SessionTimeout * 2 / 3 }

// pingInterval is how often the keeper proves the session alive and the slot
// still owned while idle: a sixth of the timeout keeps the lease at least
// half a timeout ahead.
func (c Config) pingInterval() time.Duration { return c.SessionTimeout / 6 }
