package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/tests/internal/idgenproc"
)

// process is one child (`idgen serve`, `idgen compensate`, haproxy) that a
// fault may kill, freeze or restart. Every start gets a fresh audit log
// file (audit-<name>-<life>.log), so a line torn by a SIGKILL is never
// continued by the next life, and its output is saved to
// logs/<name>-<life>.log when the life ends.
type process struct {
	name     string
	bin      string
	args     func(life int) []string // command line of one life
	env      []string
	dir      string // the chaos run's directory
	readyURL string // polled until 200 after a start; "" = no wait

	mu   sync.Mutex
	p    *proc.Process
	life int
}

// auditPath is the audit log of life n.
func (pr *process) auditPath(life int) string {
	return filepath.Join(pr.dir, "audit", fmt.Sprintf("audit-%s-%d.log", pr.name, life))
}

// Start starts a new life and waits until readyURL answers 200.
func (pr *process) Start(ctx context.Context, client *http.Client, timeout time.Duration) error {
	pr.mu.Lock()
	if pr.p != nil && !pr.p.Exited() {
		pr.mu.Unlock()
		return fmt.Errorf("%s: already running", pr.name)
	}
	pr.saveLogLocked()
	pr.life++
	life := pr.life
	c, err := idgenproc.Start(idgenproc.Options{Name: pr.name, Bin: pr.bin, Fixed: true, Env: pr.env, Dir: pr.dir,
		Args: func(string, string) []string { return pr.args(life) }})
	if err != nil {
		pr.mu.Unlock()
		return err
	}
	p := c.Proc
	pr.p = p
	pr.mu.Unlock()
	if pr.readyURL == "" {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := p.WaitHTTP(wctx, client, pr.readyURL); err != nil {
		return fmt.Errorf("%s (life %d): %w\n%s", pr.name, pr.life, err, idgenproc.Excerpt(p.Stderr(), 0, 30))
	}
	return nil
}

// startAll starts a life of every process of ps at once and waits until
// each is ready or failed; the error joins the failures.
func startAll[P interface {
	Start(ctx context.Context, client *http.Client, timeout time.Duration) error
}](ctx context.Context, client *http.Client, ps []P) error {
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Go(func() { errs[i] = p.Start(ctx, client, readyTimeout) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Life is the number of the current (or last) life, 1 for the first.
func (pr *process) Life() int {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.life
}

func (pr *process) current() *proc.Process {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.p
}

// Kill sends SIGKILL and waits until the child is reaped.
func (pr *process) Kill() error {
	if p := pr.current(); p != nil {
		return p.Kill()
	}
	return nil
}

// Freeze sends SIGSTOP; Thaw sends SIGCONT.
func (pr *process) Freeze() error { return pr.signal(syscall.SIGSTOP) }

// Thaw sends SIGCONT.
func (pr *process) Thaw() error { return pr.signal(syscall.SIGCONT) }

func (pr *process) signal(sig syscall.Signal) error {
	p := pr.current()
	if p == nil || p.Exited() {
		return fmt.Errorf("%s: not running", pr.name)
	}
	return p.Signal(sig)
}

// Terminate sends SIGTERM (after SIGCONT, in case it is frozen) and waits
// up to timeout, then kills. It reports a non-zero exit.
func (pr *process) Terminate(timeout time.Duration) error {
	p := pr.current()
	if p == nil || p.Exited() {
		return nil
	}
	_ = p.Signal(syscall.SIGCONT)
	code, err := p.Terminate(timeout)
	if err != nil {
		_ = p.Kill()
		return fmt.Errorf("%s: %w", pr.name, err)
	}
	if code != 0 {
		return fmt.Errorf("%s: exit code %d after SIGTERM\n%s", pr.name, code, idgenproc.Excerpt(p.Stderr(), 0, 20))
	}
	return nil
}

// Exited reports whether the current life has ended.
func (pr *process) Exited() bool {
	p := pr.current()
	return p == nil || p.Exited()
}

// SaveLog writes the output of the current life to logs/.
func (pr *process) SaveLog() {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.saveLogLocked()
}

func (pr *process) saveLogLocked() {
	if pr.p == nil {
		return
	}
	path := filepath.Join(pr.dir, "logs", fmt.Sprintf("%s-%d.log", pr.name, pr.life))
	_ = os.WriteFile(path, []byte(pr.p.Stdout()+pr.p.Stderr()), 0o644)
}

// instance is an `idgen serve` process with its links.
type instance struct {
	*process
	addr string // fixed for the whole run: HAProxy's config names it
	url  string
	zk   *zkProxy
}

// Health is GET /health: the status word and the HTTP status.
type health struct {
	Status string                       `json:"status"`
	Checks map[string]map[string]string `json:"checks"`
}
