// Package proc runs a program under test as a child process, for end-to-end
// tests and chaos programs: start it with its output captured, wait until it
// answers HTTP, stop it gracefully (SIGTERM) or brutally (SIGKILL), and read
// its exit status. Harnesses of servers build on it: a child can append its
// output to a log file whose newest part an error quotes (LogMark), and one
// server can serve every test of a package (Shared).
//
// Invariants:
//   - A Process only ever signals the process it started itself, by the pid
//     (and process group) exec gave it; never by name.
//   - Each child runs in its own process group with Pdeathsig=SIGKILL, so it
//     dies with the Go process that started it even when nobody stops it.
//     Linux delivers Pdeathsig when the OS thread that forked exits; Go ends
//     threads only of goroutines that exit while locked with
//     runtime.LockOSThread, so do not start children from such a goroutine.
//   - Stdout and stderr are captured in memory (the newest MaxOutput bytes of
//     each) and stay readable after the process exited, or appended to
//     Options.LogFile, whose part written since the start stays readable
//     (LogMark).
//
// The package is Linux-only (Pdeathsig, process groups).
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ErrTimeout means the process did not exit within the wait.
var ErrTimeout = errors.New("proc: process did not exit in time")

// ErrExited means the process exited while the caller waited for it to
// become ready.
var ErrExited = errors.New("proc: process exited")

// MaxOutput is how many bytes of stdout and of stderr a Process keeps (the
// newest).
const MaxOutput = 4 << 20

// Options of Start. The zero value runs the program with no arguments in the
// current directory and environment.
type Options struct {
	// Args are the arguments after the program name.
	Args []string
	// Env is added to the environment (KEY=VALUE); it overrides inherited
	// variables of the same name.
	Env []string
	// DropEnv removes inherited variables whose name starts with one of
	// these prefixes (e.g. "IDGEN_"), so the child sees only Env.
	DropEnv []string
	// Dir is the working directory; empty means the current one.
	Dir string
	// LogFile, if set, gets stdout and stderr appended (the file is
	// created, mode 0644, if missing) instead of memory: for servers
	// that log for hours, and whose log outlives a restart. Stdout and
	// Stderr then return "". The child writes to the file directly.
	LogFile string
}

// Process is a running (or exited) child process.
type Process struct {
	cmd            *exec.Cmd
	stdout, stderr *Buffer
	log            LogMark       // Options.LogFile from where this child started
	done           chan struct{} // closed once the child is reaped
	state          *os.ProcessState
	waitErr        error
}

// Start starts path with o. The child gets its own process group and
// Pdeathsig=SIGKILL.
func Start(path string, o Options) (*Process, error) {
	cmd := exec.Command(path, o.Args...)
	cmd.Dir = o.Dir
	cmd.Env = environ(o.Env, o.DropEnv)
	p := &Process{cmd: cmd, stdout: &Buffer{}, stderr: &Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if o.LogFile != "" {
		out, err := os.OpenFile(o.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("proc: start %s: %w", path, err)
		}
		defer out.Close() // the child has its own copy of the descriptor
		p.log = MarkLog(o.LogFile)
		cmd.Stdout, cmd.Stderr = out, out
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	// A grandchild holding the output pipes must not keep Wait (and Done)
	// from returning after the child itself exited.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("proc: start %s: %w", path, err)
	}
	go func() {
		err := cmd.Wait()
		p.state, p.waitErr = cmd.ProcessState, err
		close(p.done)
	}()
	return p, nil
}

func environ(add, drop []string) []string {
	var env []string
next:
	for _, kv := range os.Environ() {
		for _, pfx := range drop {
			if strings.HasPrefix(kv, pfx) {
				continue next
			}
		}
		env = append(env, kv)
	}
	// exec.Cmd keeps the last value of a duplicated name.
	return append(env, add...)
}

// Pid returns the child's process id (also its process group id).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the child has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the child has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stdout returns what the child wrote to stdout so far.
func (p *Process) Stdout() string { return p.stdout.String() }

// Stderr returns what the child wrote to stderr so far.
func (p *Process) Stderr() string { return p.stderr.String() }

// LogMark marks where Options.LogFile stood when the child started, so
// LogMark().Since reads what this child wrote; the zero LogMark without
// LogFile.
func (p *Process) LogMark() LogMark { return p.log }

// WaitErr is what reaping the child returned (an *exec.ExitError for an
// exit other than 0); nil while it runs.
func (p *Process) WaitErr() error {
	if !p.Exited() {
		return nil
	}
	return p.waitErr
}

// SignalGroup sends sig to the child's process group: the child and what
// it forked. It is a no-op once the child exited.
func (p *Process) SignalGroup(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	if err := syscall.Kill(-p.Pid(), sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("proc: signal group %d: %w", p.Pid(), err)
	}
	return nil
}

// Signal sends sig to the child alone. It is a no-op once the child exited.
func (p *Process) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	if err := syscall.Kill(p.Pid(), sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("proc: signal %d: %w", p.Pid(), err)
	}
	return nil
}

// Wait waits up to timeout for the child to exit and returns its exit code:
// -1 when a signal ended it (see Signaled). It returns ErrTimeout when the
// child is still running.
func (p *Process) Wait(timeout time.Duration) (int, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.state.ExitCode(), nil
	case <-t.C:
		return 0, fmt.Errorf("%w (pid %d, waited %v)", ErrTimeout, p.Pid(), timeout)
	}
}

// Signaled returns the signal that ended the child, if one did.
func (p *Process) Signaled() (syscall.Signal, bool) {
	if !p.Exited() {
		return 0, false
	}
	ws, ok := p.state.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return 0, false
	}
	return ws.Signal(), true
}

// Terminate sends SIGTERM and waits up to timeout for the exit code. On
// ErrTimeout the child is still running; Kill it.
func (p *Process) Terminate(timeout time.Duration) (int, error) {
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	return p.Wait(timeout)
}

// Kill sends SIGKILL to the child's process group and waits until it is
// reaped. It is a no-op once the child exited.
func (p *Process) Kill() error {
	if p.Exited() {
		return nil
	}
	if err := syscall.Kill(-p.Pid(), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("proc: kill %d: %w", p.Pid(), err)
	}
	// The kernel reaps a SIGKILLed process in milliseconds; a long wait
	// means something else is wrong (a D-state process).
	if _, err := p.Wait(10 * time.Second); err != nil {
		return err
	}
	return nil
}

// WaitHTTP polls url with GET until it answers 200, the child exits
// (ErrExited, with the tail of its stderr), or ctx ends.
func (p *Process) WaitHTTP(ctx context.Context, client *http.Client, url string) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s answered %s", url, resp.Status)
		}
		last = err
		select {
		case <-p.done:
			return fmt.Errorf("%w with code %d before %s answered: %s", ErrExited, p.state.ExitCode(), url, tail(p.Stderr(), 2000))
		case <-ctx.Done():
			return fmt.Errorf("proc: %s not ready: %w (last: %v)", url, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago. Another process may take it before the child binds it; callers retry
// with a fresh one when the child exits with "address already in use".
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("proc: free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// DeadURL is the base URL (http://host:port) of a loopback port nobody
// listens on: a server that refuses connections. A failure to find a port
// fails tb.
func DeadURL(tb testing.TB) string {
	tb.Helper()
	addr, err := FreeAddr()
	if err != nil {
		tb.Fatal(err)
	}
	return "http://" + addr
}

// Retry runs once until it returns nil, at most attempts times. It tries
// again only after an error that wraps retryable (a port taken between
// picking and binding), while ctx lasts, and once reset (which undoes the
// failed attempt) returned nil; before each retry it passes the attempt's
// number and the first line of its error to logf. It returns once's last
// error, or reset's.
func Retry(ctx context.Context, attempts int, retryable error, once func(context.Context) error, reset func() error, logf func(attempt int, err string)) error {
	for attempt := 1; ; attempt++ {
		err := once(ctx)
		if err == nil || !errors.Is(err, retryable) || attempt >= attempts || ctx.Err() != nil {
			return err
		}
		first, _, _ := strings.Cut(err.Error(), "\n")
		logf(attempt, first)
		if err := reset(); err != nil {
			return err
		}
	}
}

// FreePorts returns n distinct loopback ports that were free a moment ago.
// Every listener stays open until all are picked, so one call never returns
// a port twice; another process may still take one before the child binds
// it, which callers handle as FreeAddr's do. with, if set, is asked for a
// listener on a companion port of each candidate (Redis Cluster's bus at
// port+10000) that stays open as well; nil passes the candidate over. At
// most 100 candidates a port are tried.
func FreePorts(n int, with func(port int) net.Listener) ([]int, error) {
	ports := make([]int, 0, n)
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100*n {
			return nil, errors.New("proc: free ports: no candidate with a free companion port")
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("proc: free ports: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		lns = append(lns, ln)
		if with != nil {
			companion := with(port)
			if companion == nil {
				continue
			}
			lns = append(lns, companion)
		}
		ports = append(ports, port)
	}
	return ports, nil
}

// NewClient returns an HTTP client that keeps up to conns idle keep-alive
// connections per host (net/http keeps 2 by default, which makes a load of
// more goroutines open and close a connection per request) and bounds every
// request by timeout.
func NewClient(conns int, timeout time.Duration) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     30 * time.Second,
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}

// Load runs fn from several goroutines in a loop until ctx ends, Stop is
// called, or fn returns false. Each goroutine gets its index, so fn can
// keep per-worker results without locks.
type Load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// StartLoad starts workers goroutines running fn.
func StartLoad(ctx context.Context, workers int, fn func(ctx context.Context, worker int) bool) *Load {
	ctx, cancel := context.WithCancel(ctx)
	l := &Load{cancel: cancel}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil && fn(ctx, w) {
			}
		}()
	}
	return l
}

// Wait waits until every worker has returned (fn returned false or ctx
// ended).
func (l *Load) Wait() {
	l.wg.Wait()
	l.cancel()
}

// Stop cancels the workers' context and waits for them.
func (l *Load) Stop() {
	l.cancel()
	l.wg.Wait()
}

// Buffer is a concurrency-safe writer that keeps the newest MaxOutput bytes.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if over := b.buf.Len() - MaxOutput; over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

// String returns the kept bytes.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
