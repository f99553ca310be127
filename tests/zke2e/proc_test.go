package zke2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/tests/internal/idgenproc"
)

// idgenProc is one `idgen serve` child process (idgenproc: its own process
// group with Pdeathsig=SIGKILL, so it dies with the test binary, and only
// ever signalled by the pid exec gave it).
type idgenProc struct {
	name    string
	args    []string
	dataDir string
	p       *proc.Process
	started time.Time // just before fork+exec

	addr  string // host:port it listens on, known after waitReady
	url   string // "http://" + addr
	clean bool   // exited 0 after SIGTERM: its output is not shown on failure
}

// procOpts configures one `idgen serve`.
type procOpts struct {
	zk      string        // ZooKeeper connect string; "" = embedded mode
	root    string        // --zookeeper-root
	session time.Duration // --zookeeper-session-timeout; 0 = sessionTimeout
	listen  string        // default 127.0.0.1:0 (the address is read from the log)
	dataDir string        // default a fresh t.TempDir()
	level   string        // --log-level; default info
	extra   []string
}

// startIdgen starts `idgen serve --dev` without waiting for it. The child's
// output is shown (head and tail) only when tb failed. The child is
// SIGKILLed in tb's cleanup if it is still running.
func startIdgen(tb testing.TB, name string, o procOpts) *idgenProc {
	tb.Helper()
	p, err := startIdgenE(tb, name, o)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// startIdgenE is startIdgen for goroutines other than the test's own: it
// returns the error instead of failing tb.
func startIdgenE(tb testing.TB, name string, o procOpts) (*idgenProc, error) {
	p, err := spawnIdgen(name, o, tb.TempDir)
	if err != nil {
		return nil, err
	}
	tb.Cleanup(func() {
		p.kill()
		if tb.Failed() && !p.clean {
			tb.Logf("---- output of %s (%s) ----\n%s", p.name, strings.Join(p.args, " "), p.excerpt(40, 200))
		}
	})
	return p, nil
}

// spawnIdgen starts the child; tempDir makes the data directory when
// o.dataDir is empty.
func spawnIdgen(name string, o procOpts, tempDir func() string) (*idgenProc, error) {
	if o.listen == "" {
		o.listen = "127.0.0.1:0"
	}
	if o.dataDir == "" {
		o.dataDir = tempDir()
	}
	if o.level == "" {
		o.level = "info"
	}
	c, err := idgenproc.Start(idgenproc.Options{
		Name: name, Bin: idgenBin, Listen: o.listen,
		DataDir: func() string { return o.dataDir },
		Args: func(listen, dataDir string) []string {
			args := []string{"serve", "--dev", "--listen", listen, "--data-dir", dataDir, "--log-level", o.level}
			if o.zk != "" {
				if o.session == 0 {
					o.session = sessionTimeout
				}
				args = append(args, "--zookeeper", o.zk, "--zookeeper-session-timeout", o.session.String())
				if o.root != "" {
					args = append(args, "--zookeeper-root", o.root)
				}
			}
			return append(args, o.extra...)
		},
	})
	if err != nil {
		return nil, err
	}
	return &idgenProc{name: name, args: c.Args, dataDir: c.DataDir, p: c.Proc, started: c.Started}, nil
}

func (p *idgenProc) pid() int { return p.p.Pid() }

func (p *idgenProc) exited() bool { return p.p.Exited() }

// done is closed once the child has exited and been reaped.
func (p *idgenProc) done() <-chan struct{} { return p.p.Done() }

// exitCode is the child's exit code (-1: a signal ended it); it waits
// up to 10s for the child to exit, and is 0 if it did not.
func (p *idgenProc) exitCode() int {
	code, _ := p.p.Wait(10 * time.Second)
	return code
}

// output is what the child wrote (stdout, then stderr: its JSON log).
func (p *idgenProc) output() string { return p.p.Stdout() + p.p.Stderr() }

// excerpt returns the first h and the last t lines of the output.
func (p *idgenProc) excerpt(h, t int) string { return idgenproc.Excerpt(p.output(), h, t) }

// exitState describes how the child ended.
func (p *idgenProc) exitState() string {
	if sig, ok := p.p.Signaled(); ok {
		return "signal: " + sig.String()
	}
	return fmt.Sprintf("exit status %d", p.exitCode())
}

// signal sends sig to the child alone. No-op once it exited.
func (p *idgenProc) signal(sig syscall.Signal) error {
	if err := p.p.Signal(sig); err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	return nil
}

// kill SIGKILLs the child's process group (its own) and waits until it is
// reaped.
func (p *idgenProc) kill() { _ = p.p.Kill() }

// terminate sends SIGTERM and waits up to timeout for the exit code.
func (p *idgenProc) terminate(timeout time.Duration) (int, error) {
	code, err := p.p.Terminate(timeout)
	if err != nil {
		return 0, fmt.Errorf("%s: after SIGTERM: %w", p.name, err)
	}
	p.clean = code == 0
	return code, nil
}

// waitReady waits for the "serving" log line (which names the listening
// address), then for GET /health/ready to answer 200.
func (p *idgenProc) waitReady(tb testing.TB, c *http.Client, timeout time.Duration) {
	tb.Helper()
	if err := p.ready(c, timeout); err != nil {
		tb.Fatal(err)
	}
}

func (p *idgenProc) ready(c *http.Client, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for p.addr == "" {
		if addr := idgenproc.ServingAddr([]byte(p.p.Stderr())); addr != "" {
			p.addr, p.url = addr, "http://"+addr
			break
		}
		select {
		case <-p.done():
			return fmt.Errorf("%s exited before serving (%s):\n%s", p.name, p.exitState(), p.excerpt(20, 60))
		case <-deadline.C:
			return fmt.Errorf("%s: no \"serving\" log line after %v:\n%s", p.name, timeout, p.excerpt(20, 60))
		case <-tick.C:
		}
	}
	var last string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		h, err := getHealthPath(ctx, c, p.url, "/health/ready")
		cancel()
		if err == nil && h.HTTP == http.StatusOK {
			return nil
		}
		last = fmt.Sprintf("%+v %v", h, err)
		select {
		case <-p.done():
			return fmt.Errorf("%s exited before ready (%s):\n%s", p.name, p.exitState(), p.excerpt(20, 60))
		case <-deadline.C:
			return fmt.Errorf("%s: /health/ready not 200 after %v (last: %s):\n%s", p.name, timeout, last, p.excerpt(20, 60))
		case <-tick.C:
		}
	}
}
