// Package redisharness starts real Redis processes (the Debian redis-server
// and redis-sentinel packages) on free loopback ports, for tests and for
// long-running chaos and bench programs: a standalone server, a primary with
// replicas watched by Sentinels, or a Redis Cluster of masters. Single
// processes can be killed, frozen, thawed and restarted on the same port and
// data directory.
//
// Invariants:
//   - The harness only ever signals processes it started itself, by the pid
//     (and process group) it got from exec; Close kills every one of them,
//     waits until they are reaped, and removes the working directory if Start
//     created it.
//   - Each process runs in its own process group with Pdeathsig=SIGKILL, so
//     it dies with the Go process that started it even when Close is never
//     called. (Linux delivers Pdeathsig when the OS thread that forked exits;
//     Go only ends threads of goroutines that exit while locked with
//     runtime.LockOSThread, so do not start servers from such a goroutine.)
//   - A Server keeps its port, its config file and its data directory for its
//     whole life, so Restart brings back the same member. Config files stay
//     writable: Sentinel rewrites its own, and Sentinel has replicas rewrite
//     theirs (CONFIG REWRITE) when it reconfigures them.
//   - Every process binds 127.0.0.1 only and announces 127.0.0.1, so the
//     addresses Sentinel and CLUSTER SLOTS hand to clients are dialable.
//   - The core API takes a context, never a *testing.T; the ...T variants
//     wrap it for tests.
//
// Settings that differ from Redis's defaults, for speed in tests: replicas
// sync with repl-diskless-sync-delay 0; cluster nodes use
// cluster-node-timeout 2000; Sentinels start with their peers and the
// replicas written into their config (fixed run ids), so they need no hello
// round to find each other. Everything else (down-after-milliseconds 1000,
// failover-timeout 5000, quorum Sentinels/2+1) is as documented on Group.
//
// The package is Linux-only (Pdeathsig, process groups) and needs
// redis-server, plus redis-sentinel for Sentinels and redis-cli for a
// Cluster; scripts/install-deps.sh installs them.
package redisharness

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// ErrNotInstalled means a Redis binary is missing.
var ErrNotInstalled = errors.New("redisharness: Redis not installed (run scripts/install-deps.sh)")

// ErrPortInUse means a process could not bind its port, usually because
// another process took it between picking and binding. Start retries with
// fresh ports; Restart cannot (the port is the member's identity) and returns
// it.
var ErrPortInUse = errors.New("redisharness: port already in use")

// ErrNotRunning is returned for a process that was killed, has exited or is
// frozen when the operation needs a running one.
var ErrNotRunning = errors.New("redisharness: server not running")

// ErrNoSentinels is returned by Group methods that need Sentinels when the
// group was started without any.
var ErrNoSentinels = errors.New("redisharness: group has no sentinels")

// ErrClosed is returned by every method after Close.
var ErrClosed = errors.New("redisharness: closed")

// Options of a Server, Group or Cluster. The zero value means the documented
// defaults.
type Options struct {
	// Dir is the working directory, one sub-directory per process ("redis0",
	// "sentinel0", "node0", ...) holding its config file, data and
	// server.log. Default: a fresh os.MkdirTemp directory, removed on Close.
	// A given Dir is created if missing and never removed, but Start empties
	// the sub-directories of the members it starts.
	Dir string
	// Logf, if set, receives one line per lifecycle event (start, kill,
	// restart, retry). Default: no logging.
	Logf func(format string, args ...any)
	// Password, when set, is required from every client of every process
	// (requirepass, Sentinels included: go-redis needs it as Password and
	// SentinelPassword) and is what replicas and Sentinels authenticate with
	// (masterauth, sentinel auth-pass). Default: no password.
	Password string
	// ACLUser and ACLPassword, when set, add an ACL user with
	// "on >ACLPassword ~* &* +@all" on every process. Both or neither.
	ACLUser, ACLPassword string
	// AppendFsyncAlways turns on the append-only file with appendfsync
	// always (durable mode) and keeps Redis's default RDB save points.
	// Default: no persistence at all (save "", appendonly no): killing a
	// server loses its data.
	AppendFsyncAlways bool
	// MinReplicasToWrite sets min-replicas-to-write N with
	// min-replicas-max-lag 10 on every data node, so a primary refuses
	// writes with fewer than N replicas in sync. Only valid for a Group, and
	// at most its number of replicas. Default 0: off.
	MinReplicasToWrite int
	// MaxmemoryPolicy is maxmemory-policy. Default "noeviction".
	MaxmemoryPolicy string
	// TLS makes every process listen with TLS only (port 0, tls-port =
	// Addr's port), with a CA, a server and a client certificate generated
	// at Start; see TLSFiles. Replication, Sentinel and the cluster bus use
	// TLS too. Client certificates are accepted but not required
	// (tls-auth-clients optional). Default false.
	TLS bool

	// RedisServer, RedisSentinel and RedisCLI are the binaries, looked up in
	// PATH when they have no slash. Defaults "redis-server",
	// "redis-sentinel", "redis-cli".
	RedisServer, RedisSentinel, RedisCLI string

	// pickPorts replaces the free-port picker in tests of the retry path.
	pickPorts func(n int, bus bool) ([]int, error)
}

// aclUserRE is what ACLUser may look like: a single config token that is
// not a rule.
var aclUserRE = regexp.MustCompile(`^[A-Za-z0-9_.@-]+$`)

// maxmemoryPolicies are the values Redis 7.0 accepts.
var maxmemoryPolicies = []string{
	"noeviction", "allkeys-lru", "allkeys-lfu", "allkeys-random",
	"volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
}

func (o Options) withDefaults() Options {
	o.MaxmemoryPolicy = cmp.Or(o.MaxmemoryPolicy, "noeviction")
	o.RedisServer = cmp.Or(o.RedisServer, "redis-server")
	o.RedisSentinel = cmp.Or(o.RedisSentinel, "redis-sentinel")
	o.RedisCLI = cmp.Or(o.RedisCLI, "redis-cli")
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.pickPorts == nil {
		o.pickPorts = pickPorts
	}
	return o
}

// Validate reports options that cannot start any topology. Zero fields are
// valid (they mean defaults). Start functions check further what only
// applies to them (MinReplicasToWrite against the number of replicas).
func (o Options) Validate() error {
	for name, v := range map[string]string{"Password": o.Password, "ACLPassword": o.ACLPassword} {
		if strings.ContainsAny(v, "\x00\r\n") {
			return fmt.Errorf("redisharness: %s contains NUL or a line break", name)
		}
	}
	if (o.ACLUser == "") != (o.ACLPassword == "") {
		return errors.New("redisharness: set both ACLUser and ACLPassword or neither")
	}
	if o.ACLUser != "" && (!aclUserRE.MatchString(o.ACLUser) || o.ACLUser == "default") {
		return fmt.Errorf("redisharness: ACLUser = %q, want letters, digits or _.@- and not \"default\"", o.ACLUser)
	}
	if o.MinReplicasToWrite < 0 {
		return fmt.Errorf("redisharness: MinReplicasToWrite = %d, want >= 0", o.MinReplicasToWrite)
	}
	if o.MaxmemoryPolicy != "" && !slices.Contains(maxmemoryPolicies, o.MaxmemoryPolicy) {
		return fmt.Errorf("redisharness: MaxmemoryPolicy = %q, want one of %s", o.MaxmemoryPolicy, strings.Join(maxmemoryPolicies, ", "))
	}
	return nil
}
