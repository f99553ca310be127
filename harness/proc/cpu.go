package proc

import (
	"syscall"
	"testing"
	"time"
)

// SelfCPU is the CPU time this process has used (user and system, every
// thread). A benchmark's CPU per operation, from two readings, is the
// figure that other processes on a shared machine change least: ns/op also
// counts the time they held the CPUs.
func SelfCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
