package redisharness

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/harness/testpki"
)

// Timing of starts and polls. A Redis process answers PING within
// milliseconds of its exec, so polls are short; the probe timeout only
// matters for processes that accept but do not answer (frozen).
const (
	startAttempts = 3
	probeTimeout  = time.Second
	pollInterval  = 20 * time.Millisecond
	// startTimeoutT bounds the ...T variants; a cluster needs a few seconds.
	startTimeoutT = 60 * time.Second
)

// env is what the processes of one Server, Group or Cluster share: options,
// binaries, the working directory and the TLS material.
type env struct {
	opts      Options
	server    string // redis-server path
	sentinel  string // redis-sentinel path, "" if not needed
	cli       string // redis-cli path, "" if not needed
	dir       string
	ownDir    bool
	tls       *testpki.Files // nil without Options.TLS
	clientTLS *tls.Config    // the harness's own client config; nil without TLS
}

// binary names which Options binaries a topology needs.
type binary int

const (
	binSentinel binary = 1 << iota
	binCLI
)

// newEnv validates opts, finds the binaries and prepares the working
// directory and TLS files. On error nothing is left behind.
func newEnv(opts Options, need binary) (*env, error) {
	proc.SkipShortMain("Redis") // before locate: -short needs no Redis installed
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	e := &env{opts: opts}
	var err error
	if e.server, err = locate(opts.RedisServer); err != nil {
		return nil, err
	}
	if need&binSentinel != 0 {
		if e.sentinel, err = locate(opts.RedisSentinel); err != nil {
			return nil, err
		}
	}
	if need&binCLI != 0 {
		if e.cli, err = locate(opts.RedisCLI); err != nil {
			return nil, err
		}
	}
	if opts.Dir == "" {
		if e.dir, err = os.MkdirTemp("", "redisharness-"); err != nil {
			return nil, fmt.Errorf("redisharness: %w", err)
		}
		e.ownDir = true
	} else {
		if e.dir, err = filepath.Abs(opts.Dir); err != nil {
			return nil, fmt.Errorf("redisharness: %w", err)
		}
		if err := os.MkdirAll(e.dir, 0o755); err != nil {
			return nil, fmt.Errorf("redisharness: %w", err)
		}
	}
	if opts.TLS {
		// Keys are PKCS#8 "PRIVATE KEY" blocks, which OpenSSL reads.
		if e.tls, err = testpki.WriteFiles(filepath.Join(e.dir, "tls"), "redisharness"); err != nil {
			return nil, errors.Join(fmt.Errorf("redisharness: %w", err), e.removeDir())
		}
		e.clientTLS = e.tls.ClientConfig()
	}
	return e, nil
}

// tlsPaths returns the CA file and the client leaf's files; all empty
// without Options.TLS.
func (e *env) tlsPaths() (caPEM, clientCertPEM, clientKeyPEM string) {
	if e.tls == nil {
		return "", "", ""
	}
	return e.tls.CAFile, e.tls.ClientCert, e.tls.ClientKey
}

// locate resolves a binary, so a missing package fails fast with
// ErrNotInstalled instead of an exec error per process.
func locate(name string) (string, error) {
	path, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNotInstalled, err)
	}
	return path, nil
}

// removeDir removes the working directory if newEnv created it.
func (e *env) removeDir() error {
	if !e.ownDir {
		return nil
	}
	if err := os.RemoveAll(e.dir); err != nil {
		return fmt.Errorf("redisharness: remove dir: %w", err)
	}
	return nil
}

// newServer makes the member called name (also its sub-directory); it has
// no port and no process yet.
func (e *env) newServer(name string, k kind) *Server {
	return &Server{env: e, name: name, kind: k, dir: filepath.Join(e.dir, name)}
}

// start runs once until it succeeds, retrying with fresh ports (once picks
// them) when a process failed to bind, up to startAttempts times. Between
// attempts and on failure it calls killAll; on failure it also removes the
// working directory.
func (e *env) start(ctx context.Context, what string, once func(context.Context) error, killAll func() error) error {
	began := time.Now()
	err := proc.Retry(ctx, startAttempts, ErrPortInUse, once, killAll, func(attempt int, first string) {
		e.opts.Logf("redisharness: %s: attempt %d: %s; retrying with fresh ports", what, attempt, first)
	})
	if err != nil {
		return errors.Join(err, killAll(), e.removeDir())
	}
	e.opts.Logf("redisharness: %s serving after %v", what, time.Since(began).Round(time.Millisecond))
	return nil
}

// pickPorts returns n distinct free loopback ports (proc.FreePorts); with
// bus, port+10000 (the cluster bus) is free too. The ports can still be
// taken before Redis binds them, which start handles by retrying.
func pickPorts(n int, bus bool) ([]int, error) {
	var with func(int) net.Listener
	if bus {
		with = func(port int) net.Listener {
			if port+10000 > 65535 {
				return nil
			}
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000))
			if err != nil {
				return nil
			}
			return ln
		}
	}
	ports, err := proc.FreePorts(n, with)
	if err != nil {
		return nil, fmt.Errorf("redisharness: pick port: %w", err)
	}
	return ports, nil
}

// assignPorts gives every server a fresh port and an empty directory: a
// failed attempt may have left a nodes.conf or a rewritten config behind.
func (e *env) assignPorts(servers []*Server, bus bool) error {
	ports, err := e.opts.pickPorts(len(servers), bus)
	if err != nil {
		return err
	}
	for i, s := range servers {
		s.port = ports[i]
		if err := os.RemoveAll(s.dir); err != nil {
			return fmt.Errorf("redisharness: reset %s: %w", s.name, err)
		}
		if err := os.MkdirAll(s.dir, 0o755); err != nil {
			return fmt.Errorf("redisharness: %s dir: %w", s.name, err)
		}
	}
	return nil
}

// each runs fn for every server in parallel and joins the errors.
func each(servers []*Server, fn func(*Server) error) error {
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Go(func() { errs[i] = fn(s) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// launchReady writes every server's config file (conf's text), starts the
// processes one by one, and waits until all of them answer PING. It stops at
// the first failure; the caller's kill function ends what started.
func launchReady(ctx context.Context, servers []*Server, conf func(*Server) string) error {
	for _, s := range servers {
		if err := writeConf(s, conf(s)); err != nil {
			return err
		}
	}
	for _, s := range servers {
		s.mu.Lock()
		err := s.launch()
		s.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return each(servers, func(s *Server) error { return s.waitReady(ctx) })
}

// poll calls check until it returns nil. It fails early when check returns
// ErrClosed or a process in watch has exited, and on ctx's end with check's
// last error.
func poll(ctx context.Context, what string, watch []*Server, check func(context.Context) error) error {
	for {
		for _, s := range watch {
			if err := s.checkAlive(); err != nil {
				return err
			}
		}
		err := check(ctx)
		if err == nil || errors.Is(err, ErrClosed) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redisharness: wait for %s: %w (last: %w)", what, ctx.Err(), err)
		case <-time.After(pollInterval):
		}
	}
}
