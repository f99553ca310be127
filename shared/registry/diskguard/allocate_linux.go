package diskguard

import (
	"errors"
	"os"
	"syscall"
)

// fill allocates size bytes of f with fallocate, or by writing them where
// the filesystem or kernel has no fallocate.
func fill(f *os.File, size int64) error {
	err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
	if errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS) {
		return writeZeros(f, size)
	}
	return err
}
