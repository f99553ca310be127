// Package idgenproc starts and stops `idgen` child processes for the
// end-to-end suites and the bench and chaos tools: a free loopback port, a fresh data
// directory, a wait until the child is ready, a graceful stop that expects
// exit code 0, and the child's output when something went wrong.
//
// Invariants:
//   - A child runs under harness/proc: its own process group,
//     Pdeathsig=SIGKILL, signalled only by the pid exec gave it.
//   - A child that loses its port to another process between the pick and
//     its bind ("address already in use") is started again on a fresh port,
//     at most Attempts times; any other failure is returned at once.
//   - Inherited IDGEN_* variables never reach a child: only its flags and
//     Options.Env configure it.
package idgenproc

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
)

// Attempts is how many ports Launch tries.
const Attempts = 3

// Options of Launch. Args is required; the zero value of every other field
// is its documented default.
type Options struct {
	// Name names the child in errors and logs.
	Name string
	// Bin is the program; "" means the first element of Args' result.
	Bin string
	// Args returns the command line for a listen address (host:port) and
	// a data directory.
	Args func(listen, dataDir string) []string
	// Listen, when set, is the listen address Args gets as is (e.g.
	// "127.0.0.1:0": the child picks its port and ServingAddr reads it
	// from its log); default a free loopback port (proc.FreeAddr).
	Listen string
	// Fixed means Args carries the child's own address (or it has none):
	// Start picks no port, Args gets "" as listen, and Addr and URL stay
	// empty.
	Fixed bool
	// Env is added to the child's environment (KEY=VALUE).
	Env []string
	// Dir is the child's working directory; "" means the current one.
	Dir string
	// DataDir makes a fresh data directory per attempt (t.TempDir); nil
	// means the same "" for every attempt (Args chooses).
	DataDir func() string
	// Scheme is "http" (default) or "https".
	Scheme string
	// Client polls readiness; default a client of proc.NewClient(4, 10s).
	Client *http.Client
	// Ready waits until the child at url is ready; default: GET
	// url+"/health/ready" answers 200 (proc.Process.WaitHTTP).
	Ready func(ctx context.Context, p *proc.Process, url string) error
	// ReadyTimeout bounds one attempt's wait for readiness; default 60s.
	ReadyTimeout time.Duration
	// ErrorLines is how many lines of the child's stderr (head, tail) an
	// error of Launch shows; default 30, 30.
	ErrorLines [2]int
}

// Child is one started `idgen` process.
type Child struct {
	Name    string
	Addr    string // host:port it listens on ("" with Options.Fixed)
	URL     string // Scheme://Addr ("" with Options.Fixed)
	Args    []string
	DataDir string
	Proc    *proc.Process
	Started time.Time     // just before the exec
	Took    time.Duration // from the exec to ready (Launch)

	once sync.Once
}

// Launch starts a child and waits until it is ready. A child that is not
// ready within ReadyTimeout, or exits, is killed, and the error carries an
// excerpt of its stderr.
func Launch(ctx context.Context, o Options) (*Child, error) {
	o = o.withDefaults()
	var last error
	for range Attempts {
		c, err := launchOnce(ctx, o)
		if err == nil {
			return c, nil
		}
		last = err
		if o.Listen != "" || o.Fixed || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, last
}

func (o Options) withDefaults() Options {
	if o.Scheme == "" {
		o.Scheme = "http"
	}
	if o.Client == nil {
		o.Client = proc.NewClient(4, 10*time.Second)
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	if o.ErrorLines == [2]int{} {
		o.ErrorLines = [2]int{30, 30}
	}
	if o.Ready == nil {
		client := o.Client
		o.Ready = func(ctx context.Context, p *proc.Process, url string) error {
			return p.WaitHTTP(ctx, client, url+"/health/ready")
		}
	}
	return o
}

func launchOnce(ctx context.Context, o Options) (*Child, error) {
	c, err := Start(o)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
	defer cancel()
	if err := o.Ready(wctx, c.Proc, c.URL); err != nil {
		_ = c.Proc.Kill()
		return nil, fmt.Errorf("%s: %w\n%s", o.Name, err, Excerpt(c.Proc.Stderr(), o.ErrorLines[0], o.ErrorLines[1]))
	}
	c.Took = time.Since(c.Started)
	return c, nil
}

// Start starts a child without waiting for it: on o.Listen or a free
// loopback port, in a fresh data directory (o.DataDir).
func Start(o Options) (*Child, error) {
	o = o.withDefaults()
	addr := o.Listen
	if addr == "" && !o.Fixed {
		var err error
		if addr, err = proc.FreeAddr(); err != nil {
			return nil, err
		}
	}
	var dataDir string
	if o.DataDir != nil {
		dataDir = o.DataDir()
	}
	args := o.Args(addr, dataDir)
	bin := o.Bin
	if bin == "" {
		bin, args = args[0], args[1:]
	}
	t0 := time.Now()
	p, err := proc.Start(bin, proc.Options{Args: args, Env: o.Env, DropEnv: []string{"IDGEN_"}, Dir: o.Dir})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Name, err)
	}
	c := &Child{Name: o.Name, Addr: addr, Args: args, DataDir: dataDir, Proc: p, Started: t0}
	if addr != "" {
		c.URL = o.Scheme + "://" + addr
	}
	return c, nil
}

// Stop sends SIGTERM and expects exit code 0 within 30 s (else it kills
// the child), failing tb otherwise; it shows the child's command line and
// stderr (head and tail lines) when tb failed or logs is set. Only the
// first call acts.
func (c *Child) Stop(tb testing.TB, logs bool, head, tail int) {
	c.once.Do(func() {
		code, err := c.Proc.Terminate(30 * time.Second)
		if err != nil {
			tb.Errorf("%s: %v", c.Name, err)
			_ = c.Proc.Kill()
		} else if code != 0 {
			tb.Errorf("%s: exit code %d after SIGTERM", c.Name, code)
		}
		if tb.Failed() || logs {
			tb.Logf("---- stderr of %s (%s) ----\n%s", c.Name, strings.Join(c.Args, " "), Excerpt(c.Proc.Stderr(), head, tail))
		}
	})
}

// Kill sends SIGKILL to the child's process group and waits until it is
// reaped; a later Stop does nothing, since a killed child has no exit
// code to check.
func (c *Child) Kill() error {
	c.once.Do(func() {})
	return c.Proc.Kill()
}

// Excerpt returns the first h and the last n lines of s, saying how many
// lines it leaves out between them.
func Excerpt(s string, h, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) <= h+n {
		return strings.Join(lines, "\n")
	}
	gap := fmt.Sprintf("[... %d lines ...]\n", len(lines)-h-n)
	if h > 0 {
		gap = strings.Join(lines[:h], "\n") + "\n" + gap
	}
	return gap + strings.Join(lines[len(lines)-n:], "\n")
}
