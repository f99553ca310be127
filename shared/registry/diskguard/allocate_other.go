//go:build !linux

package diskguard

import "os"

// fill allocates size bytes of f by writing them.
func fill(f *os.File, size int64) error { return writeZeros(f, size) }
