package kvregistry

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry/diskguard"
)

// Engine is the part of a Config that is one backend's own: the options of
// its engine, with the backend's name and its check of them.
type Engine interface {
	// Name is the backend's name, the prefix of its errors.
	Name() string
	// Validate reports options of the engine that cannot work.
	Validate() error
}

// Config of an embedded store whose engine has the options E; the zero
// value means the documented defaults.
type Config[E Engine] struct {
	// Dir is the data directory, created if missing. Default "./data".
	Dir string
	// Shard whose counter ClaimRange advances. Default 0.
	Shard uint8
	// MaxBatch bounds the operations of one group commit (one write
	// transaction). Default 4096.
	MaxBatch int
	// OpenTimeout bounds waiting for the lock of the store's file or
	// directory held by another process (or another Store of this
	// process). Default 2s.
	OpenTimeout time.Duration
	// NoSync skips fsync (tests of other packages only; never in service).
	NoSync bool
	// Observe, when set, is told the size and duration of every committed
	// batch (metrics).
	Observe func(ops int, d time.Duration)
	// Logger receives the disk guard's changes of state and what the
	// engine logs itself (see its package). Default: none are logged.
	Logger *zap.Logger
	// Disk configures the free-space and stall guard; its zero value means
	// its documented defaults. Disk.Logger defaults to Logger.
	Disk diskguard.Config
	// CloseTimeout bounds Close when a commit or the engine itself does not
	// return (a stalled disk, a failed store): Close then returns an error
	// and leaves them to the process exit. Default 30s.
	CloseTimeout time.Duration
	// Engine holds the options of the backend's engine.
	Engine E
}

// Validate reports a configuration that cannot work.
func (c Config[E]) Validate() error {
	name := c.Engine.Name()
	if c.OpenTimeout < 0 || c.CloseTimeout < 0 {
		return fmt.Errorf("%s: negative timeout", name)
	}
	if c.Shard > idcodec.MaxShard {
		return fmt.Errorf("%s: shard %d out of range", name, c.Shard)
	}
	if c.MaxBatch < 0 {
		return fmt.Errorf("%s: negative max batch", name)
	}
	if err := c.Disk.Validate(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return c.Engine.Validate()
}

// Open validates cfg, fills in its defaults, creates its directory with
// mkdir, starts the store's disk guard with its ballast file ballastName
// beside the store, then opens the store with open; the guard is closed
// again when open fails. Errors: cfg's, mkdir's, diskguard.New's
// (ErrLowSpace: one line naming the directory, the free and the needed
// bytes), each prefixed with the backend's name; open's.
func Open[E Engine, S any](cfg Config[E], ballastName string, mkdir func(string, os.FileMode) error, open func(Config[E], *diskguard.Guard) (S, error)) (S, error) {
	var zero S
	if err := cfg.Validate(); err != nil {
		return zero, err
	}
	name := cfg.Engine.Name()
	cfg.Dir = cmp.Or(cfg.Dir, "./data")
	cfg.MaxBatch = cmp.Or(cfg.MaxBatch, 4096)
	cfg.OpenTimeout = cmp.Or(cfg.OpenTimeout, 2*time.Second)
	cfg.CloseTimeout = cmp.Or(cfg.CloseTimeout, 30*time.Second)
	cfg.Logger = cmp.Or(cfg.Logger, zap.NewNop())
	cfg.Disk.Logger = cmp.Or(cfg.Disk.Logger, cfg.Logger)
	if err := mkdir(cfg.Dir, 0o700); err != nil {
		return zero, fmt.Errorf("%s: %w", name, err)
	}
	// The guard comes before the lock so that a full disk is refused in
	// its one clear line before anything is written. A second opener that
	// then loses the lock can only have done to the ballast what the
	// holder's guard does itself at its next measure.
	guard, err := diskguard.New(cfg.Disk, cfg.Dir, filepath.Join(cfg.Dir, ballastName))
	if err != nil {
		return zero, fmt.Errorf("%s: %w", name, err)
	}
	s, err := open(cfg, guard)
	if err != nil {
		guard.Close()
	}
	return s, err
}
