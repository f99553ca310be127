// Package zkharness starts a real ZooKeeper ensemble (the Debian `zookeeper`
// package, run as plain JVM processes) on free loopback ports, for tests and
// for long-running chaos and bench programs. It can kill, freeze, thaw and
// restart single servers and tells which one leads, using the `srvr`
// four-letter word.
//
// Invariants:
//   - An Ensemble only ever signals processes it started itself, by the pid
//     (and process group) it got from exec; Close kills every one of them,
//     waits for them, and removes the working directory if it created it.
//   - Each server runs in its own process group with Pdeathsig=SIGKILL, so
//     the servers die with the Go process that started them even when Close
//     is never called. (Linux delivers Pdeathsig when the OS thread that
//     forked exits; Go only ends threads of goroutines that exit while
//     locked with runtime.LockOSThread, so do not start servers from such a
//     goroutine.)
//   - Server i keeps its ports, its myid (i+1) and its data directory for the
//     life of the Ensemble, so Restart brings back the same member.
//   - Servers == 1 runs ZooKeeper in standalone mode; more servers form a
//     quorum ensemble (no observers, no dynamic reconfiguration).
//
// The package is Linux-only (Pdeathsig, process groups) and needs java and
// the Debian zookeeper jars; scripts/install-deps.sh installs them.
package zkharness

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrNotInstalled means java or the ZooKeeper jars are missing.
var ErrNotInstalled = errors.New("zkharness: ZooKeeper server not installed (run scripts/install-deps.sh)")

// ErrPortInUse means a server could not bind one of its ports, usually because
// another process took a port between picking it and the JVM binding it.
// Start retries with fresh ports; Restart cannot (the ensemble's membership
// names the ports) and returns it.
var ErrPortInUse = errors.New("zkharness: port already in use")

// ErrNotRunning is returned for a server that was killed, has exited or is
// frozen when the operation needs a running one.
var ErrNotRunning = errors.New("zkharness: server not running")

// ErrNotServing means a server answered `srvr` without a Mode line (it is up
// but not in a quorum) or did not answer at all.
var ErrNotServing = errors.New("zkharness: server not serving")

// ErrNoLeader means no running server reports itself as leader or standalone.
var ErrNoLeader = errors.New("zkharness: no leader")

// ErrBadIndex means a server index outside 0..Servers-1.
var ErrBadIndex = errors.New("zkharness: server index out of range")

// ErrClosed is returned by every method after Close.
var ErrClosed = errors.New("zkharness: ensemble closed")

// Options of an Ensemble. The zero value means the documented defaults.
type Options struct {
	// Servers is the ensemble size: 1 runs standalone, 3 or 5 form a quorum
	// (any size from 1 to 15 is accepted). Default 1.
	Servers int
	// Dir is the working directory, one sub-directory per server ("zk0",
	// "zk1", ...) holding zoo.cfg, data/, zookeeper.log and stdout.log.
	// Default: a fresh os.MkdirTemp directory, removed on Close. A given Dir
	// is created if missing and never removed.
	Dir string
	// TickTime is ZooKeeper's tick. Sessions may last from 2 ticks to 60 s;
	// initLimit is 20 ticks and syncLimit 10 ticks, so a frozen leader is
	// noticed after about 10 ticks. Default 200ms; whole milliseconds only.
	TickTime time.Duration
	// TLS also opens a secure client port on every server (Netty connection
	// factory) with a CA, server and client certificate generated at Start;
	// see TLSAddrs and TLSFiles. Client certificates are requested but not
	// required. Default false.
	TLS bool
	// Fsync makes servers fsync their transaction log on every write. Off by
	// default: killing a process (the failure this harness injects) loses
	// nothing from the page cache, and fsync makes tests slow.
	Fsync bool
	// JVMHeap is the JVM's heap flag. Default "-Xmx256m".
	JVMHeap string
	// JVMArgs are extra JVM arguments, placed after the harness's own so
	// they override them (e.g. "-Dzookeeper.snapCount=100000").
	JVMArgs []string
	// Java is the java binary. Default: "java" looked up in PATH.
	Java string
	// ClassPath lists the jars of the server. Default: the Debian layout
	// under /usr/share/java (zookeeper.jar, whose manifest names its other
	// dependencies, plus slf4j-log4j12 and log4j 1.2 for the log file).
	ClassPath []string
	// Logf, if set, receives one line per lifecycle event (start, kill,
	// restart, retry). Default: no logging.
	Logf func(format string, args ...any)

	// pickPorts replaces the free-port picker in tests of the retry path.
	pickPorts func(n int) ([]int, error)
}

// maxServers bounds Options.Servers: larger ensembles do not fit a test box.
const maxServers = 15

func (o Options) withDefaults() Options {
	o.Servers = cmp.Or(o.Servers, 1)
	o.TickTime = cmp.Or(o.TickTime, 200*time.Millisecond)
	o.JVMHeap = cmp.Or(o.JVMHeap, "-Xmx256m")
	o.Java = cmp.Or(o.Java, "java")
	if len(o.ClassPath) == 0 {
		o.ClassPath = defaultClassPath()
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.pickPorts == nil {
		o.pickPorts = pickPorts
	}
	return o
}

// Validate reports options that cannot start an ensemble. Zero fields are
// valid (they mean defaults).
func (o Options) Validate() error {
	if o.Servers < 0 || o.Servers > maxServers {
		return fmt.Errorf("zkharness: Servers = %d, want 1..%d", o.Servers, maxServers)
	}
	if o.TickTime < 0 || o.TickTime%time.Millisecond != 0 {
		return fmt.Errorf("zkharness: TickTime = %v, want whole milliseconds", o.TickTime)
	}
	if o.JVMHeap != "" && !strings.HasPrefix(o.JVMHeap, "-X") {
		return fmt.Errorf("zkharness: JVMHeap = %q, want a -X flag such as -Xmx256m", o.JVMHeap)
	}
	return nil
}
