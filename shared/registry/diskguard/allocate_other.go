//go:build !linux

package diskguard

import (
	"errors"
	"os"
)

// allocate creates path with size bytes written and synced.
func allocate(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = writeZeros(f, size)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}
