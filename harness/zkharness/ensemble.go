package zkharness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
)

// startAttempts bounds how often Start picks fresh ports after a bind failure.
const startAttempts = 3

// startTimeoutT bounds StartT; a 3-node ensemble needs well under it.
const startTimeoutT = 90 * time.Second

// Ensemble is a running set of ZooKeeper servers. Its methods are safe for
// concurrent use; server indexes are 0..Servers-1 and the ZooKeeper myid of
// server i is i+1.
type Ensemble struct {
	opts   Options
	java   string
	dir    string
	ownDir bool      // dir was made by Start and is removed by Close
	tls    *tlsFiles // nil without Options.TLS

	mu      sync.Mutex
	servers []*server // fixed length; elements guarded by mu as documented
	closed  bool
}

// Start writes the configuration, starts every server at once (JVM start-up
// dominates, so they boot in parallel) and returns when a leader exists and
// every server answers `srvr` with a Mode line. When a server fails to bind
// a port it starts over with fresh ports, up to 3 times. On any error,
// including ctx ending, it kills what it started and removes its temporary
// dir. Errors: ErrNotInstalled, ErrPortInUse after the last attempt, a
// server's exit with the end of its log, or ctx's error. In a test binary
// run with -short it starts nothing and ends the binary (proc.SkipShortMain):
// call it from TestMain there, and StartT or Shared from a test.
func Start(ctx context.Context, opts Options) (*Ensemble, error) {
	proc.SkipShortMain("ZooKeeper") // before locate: -short needs no Java
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	java, err := locate(opts)
	if err != nil {
		return nil, err
	}
	e := &Ensemble{opts: opts, java: java, dir: opts.Dir}
	if e.dir == "" {
		if e.dir, err = os.MkdirTemp("", "zkharness-"); err != nil {
			return nil, fmt.Errorf("zkharness: %w", err)
		}
		e.ownDir = true
	} else if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return nil, fmt.Errorf("zkharness: %w", err)
	}
	for i := range opts.Servers {
		dir := filepath.Join(e.dir, "zk"+strconv.Itoa(i))
		e.servers = append(e.servers, &server{index: i, dir: dir})
	}
	if opts.TLS {
		if e.tls, err = writeTLSFiles(filepath.Join(e.dir, "tls")); err != nil {
			return nil, errors.Join(err, e.Close())
		}
	}
	began := time.Now()
	err = proc.Retry(ctx, startAttempts, ErrPortInUse, e.startAll, e.killAll, func(attempt int, first string) {
		e.opts.Logf("zkharness: attempt %d: %s; retrying with fresh ports", attempt, first)
	})
	if err != nil {
		return nil, errors.Join(err, e.Close())
	}
	e.opts.Logf("zkharness: %d server(s) serving after %v", len(e.servers), time.Since(began).Round(time.Millisecond))
	return e, nil
}

// StartT is Start for tests: it fails t (never skips it) when the ensemble
// does not come up within 90 s or the test's context, logs lifecycle events
// through t.Logf unless opts.Logf is set, and closes the ensemble in
// t.Cleanup. Under go test -short it skips t (proc.SkipShort).
func StartT(t testing.TB, opts Options) *Ensemble {
	t.Helper()
	proc.SkipShort(t, "ZooKeeper")
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	return proc.StartT(t, "ZooKeeper ensemble", startTimeoutT, func(ctx context.Context) (*Ensemble, error) {
		return Start(ctx, opts)
	})
}

// startAll picks ports, writes configs, launches every server and waits for
// the quorum.
func (e *Ensemble) startAll(ctx context.Context) error {
	e.mu.Lock()
	err := e.assignPorts()
	if err == nil {
		err = e.writeConfigs()
	}
	for _, s := range e.servers {
		if err != nil {
			break
		}
		err = e.launch(s)
	}
	e.mu.Unlock()
	if err != nil {
		return err
	}
	// Watch every server by index: one that dies while the others form a
	// quorum must fail the attempt, not be ignored as "not running".
	all := make([]int, len(e.servers))
	for i := range all {
		all[i] = i
	}
	return e.wait(ctx, all, true)
}

// Addrs returns the plain client address "127.0.0.1:port" of every server,
// indexed by server.
func (e *Ensemble) Addrs() []string {
	addrs := make([]string, len(e.servers))
	for i, s := range e.servers {
		addrs[i] = s.clientAddr()
	}
	return addrs
}

// ConnectString is Addrs joined by commas, as ZooKeeper clients take it.
func (e *Ensemble) ConnectString() string { return strings.Join(e.Addrs(), ",") }

// TLSAddrs returns the secure client address of every server, indexed by
// server; nil without Options.TLS.
func (e *Ensemble) TLSAddrs() []string {
	if e.tls == nil {
		return nil
	}
	addrs := make([]string, len(e.servers))
	for i, s := range e.servers {
		addrs[i] = "127.0.0.1:" + strconv.Itoa(s.securePort)
	}
	return addrs
}

// TLSFiles returns the paths of PEM files for a Go tls.Config: the CA that
// signed the servers' certificate (valid for 127.0.0.1, ::1 and localhost),
// and a client certificate and its PKCS#8 key signed by the same CA. All
// empty without Options.TLS.
func (e *Ensemble) TLSFiles() (caPEM, clientCertPEM, clientKeyPEM string) {
	if e.tls == nil {
		return "", "", ""
	}
	return e.tls.CAFile, e.tls.ClientCert, e.tls.ClientKey
}

// Dir is the working directory; server i lives in Dir()/zk<i>.
func (e *Ensemble) Dir() string { return e.dir }

// Kill SIGKILLs server i and waits until its process is reaped. Killing a
// server that is not alive is a no-op. Errors: ErrBadIndex, ErrClosed.
func (e *Ensemble) Kill(i int) error {
	if _, err := e.killServer(i); err != nil {
		return err
	}
	e.opts.Logf("zkharness: server %d killed", i)
	return nil
}

// Stop freezes server i with SIGSTOP: its sockets stay open but it answers
// nothing, as in a long GC pause or a hung host. Errors: ErrNotRunning if it
// is not alive, ErrBadIndex, ErrClosed.
func (e *Ensemble) Stop(i int) error { return e.signal(i, syscall.SIGSTOP, true) }

// Cont thaws server i with SIGCONT. Errors as for Stop.
func (e *Ensemble) Cont(i int) error { return e.signal(i, syscall.SIGCONT, false) }

// Restart starts server i again with the same ports, myid and data, killing
// it first if it is still alive (frozen or not), and waits until it serves,
// which in an ensemble needs a quorum of the other servers. Errors:
// ErrPortInUse if a port was taken meanwhile, the server's exit, ctx's error,
// ErrBadIndex, ErrClosed.
func (e *Ensemble) Restart(ctx context.Context, i int) error {
	s, err := e.killServer(i)
	if err != nil {
		return err
	}
	e.mu.Lock()
	if _, err := e.server(i); err != nil {
		e.mu.Unlock()
		return err
	}
	if s.alive() {
		e.mu.Unlock()
		return fmt.Errorf("zkharness: restart server %d: restarted concurrently", i)
	}
	err = e.launch(s)
	e.mu.Unlock()
	if err != nil {
		return err
	}
	return e.wait(ctx, []int{i}, false)
}

// killServer kills the latest process of server i (kill) and returns the
// server.
func (e *Ensemble) killServer(i int) (*server, error) {
	e.mu.Lock()
	s, err := e.server(i)
	if err != nil {
		e.mu.Unlock()
		return nil, err
	}
	p := s.p
	e.mu.Unlock()
	return s, e.kill(s, p)
}

// Close kills every server process this Ensemble started, waits for them,
// and removes the working directory if Start created it. It is idempotent;
// later calls return nil and every other method returns ErrClosed.
func (e *Ensemble) Close() error {
	if !proc.MarkClosed(&e.mu, &e.closed) {
		return nil
	}
	err := e.killAll()
	if e.ownDir {
		if rerr := os.RemoveAll(e.dir); rerr != nil {
			err = errors.Join(err, fmt.Errorf("zkharness: remove dir: %w", rerr))
		}
	}
	return err
}

// killAll kills every live server in parallel.
func (e *Ensemble) killAll() error {
	errs := make([]error, len(e.servers))
	var wg sync.WaitGroup
	e.mu.Lock()
	for i, s := range e.servers {
		p := s.p
		wg.Go(func() { errs[i] = e.kill(s, p) })
	}
	e.mu.Unlock()
	wg.Wait()
	return errors.Join(errs...)
}
