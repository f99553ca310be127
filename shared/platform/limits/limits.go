// Package limits sets the resource bounds of `idgen serve`: the Go memory limit taken from the
// cgroup, and a bound on open connections derived from the file descriptor
// limit (and the memory limit), so that an overload is answered with 503
// instead of growing the heap or running the process out of descriptors.
//
// Invariants:
//   - GOMEMLIMIT in the environment always wins: the runtime applied it
//     before main, and it is never overridden.
//   - Without it, a cgroup memory limit (v2 memory.max, v1
//     memory.limit_in_bytes; the smallest on the way from the process's own
//     cgroup up to the root) sets the Go memory limit to memoryLimitShare of
//     it, so the collector works harder before the kernel's OOM killer ends
//     the process.
//   - Open connections stay below the soft RLIMIT_NOFILE minus a reserve for
//     the store, the logs and the registry clients: a connection over the
//     bound is accepted, answered 503 with Retry-After (plain HTTP; a TLS
//     one is closed unanswered) and closed within refuseLinger, so accept
//     never meets EMFILE because of clients. Go raises the soft RLIMIT_NOFILE to the hard one at
//     start (syscall package, Linux), so it is read, not raised.
//   - An accept that fails for lack of descriptors or memory (EMFILE,
//     ENFILE, ENOBUFS, ENOMEM) is retried with a back-off up to a second;
//     fasthttp would otherwise end Serve, and with it the process.
package limits

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

const (
	// memoryLimitShare of the cgroup limit becomes the Go memory limit; the
	// rest covers what the runtime does not count (thread stacks of cgo,
	// the kernel's page cache charged to the cgroup).
	memoryLimitShare = 0.9
	// connBytes is the memory budgeted per open connection: read and write
	// buffers, a request body, the goroutine's stack.
	connBytes = 64 << 10
	// maxConnsCap is fasthttp's default Concurrency, the bound when neither
	// limit is smaller.
	maxConnsCap = 256 * 1024
	// minConns keeps a service with a tiny descriptor limit reachable.
	minConns = 8
	// refuseSlots bounds the connections being refused at once; each holds
	// its descriptor for at most refuseLinger.
	refuseSlots  = 16
	refuseLinger = 500 * time.Millisecond
)

// fdReserve is how many descriptors of nofile are kept from connections:
// a quarter, at least 32 and at most 4096.
func fdReserve(nofile uint64) uint64 { return min(max(nofile/4, 32), 4096) }

// env is what the limits read of the process's surroundings; the zero
// value reads the real ones.
type env struct {
	Getenv func(string) string // default os.Getenv
	Root   string              // the directory holding proc/ and sys/ (tests); default "/"
	NoFile func() (uint64, error)
	// SetMemoryLimit is debug.SetMemoryLimit.
	SetMemoryLimit func(int64) int64
}

func (e *env) setDefaults() {
	if e.Getenv == nil {
		e.Getenv = os.Getenv
	}
	if e.Root == "" {
		e.Root = "/"
	}
	if e.NoFile == nil {
		e.NoFile = func() (uint64, error) {
			var r syscall.Rlimit
			err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r)
			return r.Cur, err
		}
	}
	if e.SetMemoryLimit == nil {
		e.SetMemoryLimit = debug.SetMemoryLimit
	}
}

// Limits are the bounds chosen at start.
type Limits struct {
	MemoryLimit  int64  // the Go memory limit in bytes; 0: none
	MemorySource string // "GOMEMLIMIT", the cgroup file, or ""
	NoFile       uint64 // soft RLIMIT_NOFILE; 0: unknown
	MaxConns     int
	log          *zap.Logger
}

// Apply sets the Go memory limit and chooses the connection bound
// (see the invariants above), logging both.
func Apply(log *zap.Logger) *Limits {
	return choose(env{}, log)
}

func choose(e env, log *zap.Logger) *Limits {
	e.setDefaults()
	l := &Limits{log: log}
	if v := e.Getenv("GOMEMLIMIT"); v != "" {
		// The runtime parsed it already; read back what it applied.
		if cur := e.SetMemoryLimit(-1); cur != math.MaxInt64 {
			l.MemoryLimit = cur
		}
		l.MemorySource = "GOMEMLIMIT"
	} else if memMax, file, err := cgroupMemoryMax(e.Root); err != nil {
		log.Warn("cannot read the cgroup memory limit; running without a Go memory limit", zap.Error(err))
	} else if memMax > 0 {
		l.MemoryLimit, l.MemorySource = int64(float64(memMax)*memoryLimitShare), file
		e.SetMemoryLimit(l.MemoryLimit)
	}
	nofile, err := e.NoFile()
	if err != nil {
		log.Warn("cannot read RLIMIT_NOFILE; bounding connections by memory alone", zap.Error(err))
	}
	l.NoFile, l.MaxConns = nofile, maxConns(nofile, l.MemoryLimit)
	log.Info("resource limits", zap.Int64("memory_limit_bytes", l.MemoryLimit), zap.String("memory_limit_source", l.MemorySource),
		zap.Uint64("nofile", nofile), zap.Int("max_conns", l.MaxConns))
	return l
}

// maxConns is the connection bound for a descriptor limit and a memory
// limit (0: unknown or none).
func maxConns(nofile uint64, memLimit int64) int {
	n := uint64(maxConnsCap)
	if nofile > 0 {
		// The refusals in flight hold descriptors too.
		n = min(n, nofile-min(nofile, fdReserve(nofile)+refuseSlots))
	}
	if memLimit > 0 {
		// Half the memory for connections, half for the rest.
		n = min(n, uint64(memLimit/2/connBytes))
	}
	return int(max(n, minConns))
}

// Server bounds fasthttp's own connection count just above the listener's,
// which refuses first (with Retry-After).
func (l *Limits) Server(srv *fasthttp.Server) {
	srv.Concurrency = l.MaxConns + refuseSlots
}

// Listener wraps ln (a TCP listener, under TLS if any) with the connection
// bound; tls says the connections speak TLS, so a refusal cannot answer.
func (l *Limits) Listener(ln net.Listener, tls bool) net.Listener {
	b := &boundedListener{Listener: ln, max: int64(l.MaxConns), log: l.log, slots: make(chan struct{}, refuseSlots)}
	if !tls {
		b.refusal = refusal()
	}
	return b
}

// refusal is the answer to a connection over the bound, in the API's error
// format.
func refusal() []byte {
	const body = `{"error":{"code":"unavailable","message":"too many open connections; retry later"}}` + "\n"
	return fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"+
		"Connection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// boundedListener admits up to max open connections.
type boundedListener struct {
	net.Listener
	max     int64
	open    atomic.Int64
	refusal []byte // nil: close without answering (TLS)
	slots   chan struct{}
	log     *zap.Logger

	refused  atomic.Int64
	lastWarn atomic.Int64 // unix ns of the last warning, one a second at most
}

// Accept returns the next connection under the bound, refusing those over
// it and riding out a lack of descriptors.
func (b *boundedListener) Accept() (net.Conn, error) {
	backoff := 5 * time.Millisecond
	for {
		c, err := b.Listener.Accept()
		if err != nil {
			if !exhausted(err) {
				return nil, err
			}
			b.warn("accept failed for lack of resources; retrying", zap.Duration("in", backoff), zap.Error(err))
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		if b.open.Add(1) > b.max {
			b.open.Add(-1)
			b.refuse(c)
			continue
		}
		return &countedConn{Conn: c, open: &b.open}, nil
	}
}

// exhausted reports an accept error caused by a lack of descriptors or
// kernel memory.
func exhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// refuse answers c with 503 and closes it. The answer is written at once
// (a fresh socket's send buffer takes it); the close then waits a moment in
// the background for the client's request, so that closing with unread
// bytes (a reset) does not race the answer. With every slot busy it closes
// at once: a client that already read the answer loses nothing.
func (b *boundedListener) refuse(c net.Conn) {
	n := b.refused.Add(1)
	b.warn("connection refused: too many open connections", zap.Int64("max_conns", b.max), zap.Int64("refused_total", n))
	_ = c.SetDeadline(time.Now().Add(refuseLinger))
	if b.refusal == nil {
		_ = c.Close()
		return
	}
	if _, err := c.Write(b.refusal); err != nil {
		_ = c.Close()
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	select {
	case b.slots <- struct{}{}:
	default:
		_ = c.Close()
		return
	}
	go func() {
		defer func() { <-b.slots }()
		defer c.Close()
		// Read until the client closes or the deadline: what it sent is
		// consumed, so the close is an orderly one.
		var buf [512]byte
		for {
			if _, err := c.Read(buf[:]); err != nil {
				return
			}
		}
	}()
}

func (b *boundedListener) warn(msg string, fields ...zap.Field) {
	now := time.Now().UnixNano()
	last := b.lastWarn.Load()
	if now-last < int64(time.Second) || !b.lastWarn.CompareAndSwap(last, now) {
		return
	}
	b.log.Warn(msg, fields...)
}

// countedConn gives its place back on the first Close.
type countedConn struct {
	net.Conn
	open *atomic.Int64
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

// cgroupMemoryMax returns the memory limit of the process's cgroup (the
// smallest from its own cgroup up to the root, v2 then v1) and the file it
// came from; 0 when there is none.
func cgroupMemoryMax(root string) (int64, string, error) {
	v2, v1, err := ownCgroups(filepath.Join(root, "proc/self/cgroup"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, "", err
	}
	for _, try := range []struct{ mount, own, file string }{
		{"sys/fs/cgroup", v2, "memory.max"},
		{"sys/fs/cgroup/memory", v1, "memory.limit_in_bytes"},
	} {
		best, from, found := int64(0), "", false
		// From the own cgroup up to the mount point; a container sees its
		// own cgroup as the root.
		for dir := filepath.Clean("/" + try.own); ; dir = filepath.Dir(dir) {
			path := filepath.Join(root, try.mount, dir, try.file)
			v, ok, err := readLimit(path)
			if err != nil {
				return 0, "", err
			}
			if ok {
				found = true
				if v > 0 && (best == 0 || v < best) {
					best, from = v, filepath.Join("/", try.mount, dir, try.file)
				}
			}
			if dir == "/" {
				break
			}
		}
		if found {
			return best, from, nil
		}
	}
	return 0, "", nil
}

// readLimit reads a cgroup memory limit file: ok false when it does not
// exist, v 0 for no limit ("max", or v1's page-rounded MaxInt64).
func readLimit(path string) (v int64, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, true, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%s: %q is not a memory limit", path, s)
	}
	if n >= 1<<62 {
		return 0, true, nil
	}
	return int64(n), true, nil
}

// ownCgroups reads /proc/self/cgroup: the v2 path ("0::<path>") and the v1
// path of the memory controller.
func ownCgroups(path string) (v2, v1 string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2 = parts[2]
		}
		for _, ctl := range strings.Split(parts[1], ",") {
			if ctl == "memory" {
				v1 = parts[2]
			}
		}
	}
	return v2, v1, sc.Err()
}
