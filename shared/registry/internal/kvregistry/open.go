package kvregistry

import (
	"fmt"
	"path/filepath"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry/diskguard"
)

// Validate reports the bounds of a configuration that every embedded
// store shares (shard, batch size, disk guard), prefixed with name.
func Validate(name string, shard uint8, maxBatch int, disk diskguard.Config) error {
	if shard > idcodec.MaxShard {
		return fmt.Errorf("%s: shard %d out of range", name, shard)
	}
	if maxBatch < 0 {
		return fmt.Errorf("%s: negative max batch", name)
	}
	if err := disk.Validate(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// Guarded starts the disk guard of a store in dir, its ballast file
// ballastName beside the store, then opens the store with open; the guard
// is closed again when open fails. Errors: diskguard.New's (ErrLowSpace:
// one line naming the directory, the free and the needed bytes), prefixed
// with name; open's.
func Guarded[S any](name string, disk diskguard.Config, dir, ballastName string, open func(*diskguard.Guard) (S, error)) (S, error) {
	// The guard comes before the lock so that a full disk is refused in
	// its one clear line before anything is written. A second opener that
	// then loses the lock can only have done to the ballast what the
	// holder's guard does itself at its next measure.
	guard, err := diskguard.New(disk, dir, filepath.Join(dir, ballastName))
	if err != nil {
		var zero S
		return zero, fmt.Errorf("%s: %w", name, err)
	}
	s, err := open(guard)
	if err != nil {
		guard.Close()
	}
	return s, err
}
