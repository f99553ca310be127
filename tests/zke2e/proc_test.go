package zke2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// idgenProc is one `idgen serve` child process. It runs in its own process
// group with Pdeathsig=SIGKILL (it dies with the test binary), and is only
// ever signalled by the pid exec gave it.
type idgenProc struct {
	name    string
	args    []string
	dataDir string
	cmd     *exec.Cmd
	out     *logBuf
	done    chan struct{} // closed when the child has been reaped
	state   error         // cmd.Wait's error, valid after done
	started time.Time     // just before fork+exec

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
// stderr is kept in memory and shown (head and tail) only when tb failed. The
// child is SIGKILLed in tb's cleanup if it is still running.
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
			tb.Logf("---- stderr of %s (%s) ----\n%s", p.name, strings.Join(p.args, " "), p.out.excerpt(40, 200))
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
	args := []string{"serve", "--dev", "--listen", o.listen, "--data-dir", o.dataDir, "--log-level", o.level}
	if o.zk != "" {
		if o.session == 0 {
			o.session = sessionTimeout
		}
		args = append(args, "--zookeeper", o.zk, "--zookeeper-session-timeout", o.session.String())
		if o.root != "" {
			args = append(args, "--zookeeper-root", o.root)
		}
	}
	args = append(args, o.extra...)
	p := &idgenProc{name: name, args: args, dataDir: o.dataDir, out: newLogBuf(), done: make(chan struct{})}
	cmd := exec.Command(idgenBin, args...)
	cmd.Env = cleanEnv()
	cmd.Stdout = p.out
	cmd.Stderr = p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	p.cmd = cmd
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.state = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// cleanEnv is the test's environment without IDGEN_* variables, so only the
// flags configure the child.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "IDGEN_") {
			env = append(env, kv)
		}
	}
	return env
}

func (p *idgenProc) pid() int { return p.cmd.Process.Pid }

func (p *idgenProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the child alone (never by name, never to a group we
// did not create). No-op once it exited.
func (p *idgenProc) signal(sig syscall.Signal) error {
	if p.exited() {
		return nil
	}
	if err := syscall.Kill(p.pid(), sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %v to %s (pid %d): %w", sig, p.name, p.pid(), err)
	}
	return nil
}

// kill SIGKILLs the child's process group (its own, made by Setpgid) and
// waits until it is reaped.
func (p *idgenProc) kill() {
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// terminate sends SIGTERM and waits up to timeout for the exit code.
func (p *idgenProc) terminate(timeout time.Duration) (int, error) {
	if err := p.signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	select {
	case <-p.done:
		code := p.cmd.ProcessState.ExitCode()
		p.clean = code == 0
		return code, nil
	case <-time.After(timeout):
		return 0, fmt.Errorf("%s (pid %d) did not exit %v after SIGTERM", p.name, p.pid(), timeout)
	}
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
	select {
	case <-p.out.served:
		p.addr = p.out.serveAddr()
		p.url = "http://" + p.addr
	case <-p.done:
		return fmt.Errorf("%s exited before serving (%v):\n%s", p.name, p.state, p.out.excerpt(20, 60))
	case <-deadline.C:
		return fmt.Errorf("%s: no \"serving\" log line after %v:\n%s", p.name, timeout, p.out.excerpt(20, 60))
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
		case <-p.done:
			return fmt.Errorf("%s exited before ready (%v):\n%s", p.name, p.state, p.out.excerpt(20, 60))
		case <-deadline.C:
			return fmt.Errorf("%s: /health/ready not 200 after %v (last: %s):\n%s", p.name, timeout, last, p.out.excerpt(20, 60))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// logBuf collects a child's output (bounded: the first 256 KiB and the
// newest 4 MiB) and spots the "serving" line.
type logBuf struct {
	mu      sync.Mutex
	head    []byte
	tail    []byte
	dropped int
	partial []byte
	addr    string
	served  chan struct{}
}

const (
	logHeadMax = 256 << 10
	logTailMax = 4 << 20
)

func newLogBuf() *logBuf { return &logBuf{served: make(chan struct{})} }

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	rest := p
	if n := min(len(rest), logHeadMax-len(b.head)); n > 0 {
		b.head = append(b.head, rest[:n]...)
		rest = rest[n:]
	}
	b.tail = append(b.tail, rest...)
	if len(b.tail) > logTailMax {
		cut := len(b.tail) - logTailMax/2
		b.dropped += cut
		b.tail = append([]byte(nil), b.tail[cut:]...)
	}
	if b.addr == "" {
		b.partial = append(b.partial, p...)
		for {
			i := bytes.IndexByte(b.partial, '\n')
			if i < 0 {
				break
			}
			line := b.partial[:i]
			b.partial = b.partial[i+1:]
			if !bytes.Contains(line, []byte(`"msg":"serving"`)) {
				continue
			}
			var v struct {
				Addr string `json:"addr"`
			}
			if json.Unmarshal(line, &v) == nil && v.Addr != "" {
				b.addr = v.Addr
				b.partial = nil
				close(b.served)
				break
			}
		}
		if len(b.partial) > 1<<20 {
			b.partial = nil
		}
	}
	return len(p), nil
}

func (b *logBuf) serveAddr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addr
}

func (b *logBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.head) + string(b.tail)
}

// excerpt returns the first h and the last t lines.
func (b *logBuf) excerpt(h, t int) string {
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	if len(lines) <= h+t {
		return strings.Join(lines, "\n")
	}
	return strings.Join(lines[:h], "\n") + fmt.Sprintf("\n[... %d lines ...]\n", len(lines)-h-t) + strings.Join(lines[len(lines)-t:], "\n")
}
