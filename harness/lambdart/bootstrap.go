package lambdart

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
)

// Env is the environment Lambda gives a provided.al2023 runtime whose
// bootstrap lives in taskRoot, pointed at this server: AWS_LAMBDA_RUNTIME_API,
// _HANDLER, AWS_LAMBDA_FUNCTION_NAME, AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
// AWS_LAMBDA_FUNCTION_VERSION, AWS_LAMBDA_LOG_GROUP_NAME,
// AWS_LAMBDA_LOG_STREAM_NAME, AWS_LAMBDA_INITIALIZATION_TYPE, AWS_REGION,
// AWS_DEFAULT_REGION, LAMBDA_TASK_ROOT, LAMBDA_RUNTIME_DIR, PATH,
// LD_LIBRARY_PATH, LANG and TZ. No credentials.
func (s *Server) Env(taskRoot string) []string {
	var stream [16]byte
	_, _ = rand.Read(stream[:])
	o := s.opts
	return []string{
		"AWS_LAMBDA_RUNTIME_API=" + s.Addr(),
		"_HANDLER=bootstrap",
		"AWS_LAMBDA_FUNCTION_NAME=" + o.FunctionName,
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=" + strconv.Itoa(o.MemoryMB),
		"AWS_LAMBDA_FUNCTION_VERSION=" + o.Version,
		"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/" + o.FunctionName,
		"AWS_LAMBDA_LOG_STREAM_NAME=" + time.Now().UTC().Format("2006/01/02") + "/[" + o.Version + "]" + hex.EncodeToString(stream[:]),
		"AWS_LAMBDA_INITIALIZATION_TYPE=on-demand",
		"AWS_REGION=" + o.Region,
		"AWS_DEFAULT_REGION=" + o.Region,
		"LAMBDA_TASK_ROOT=" + taskRoot,
		"LAMBDA_RUNTIME_DIR=" + taskRoot,
		"PATH=/usr/local/bin:/usr/bin/:/bin:/opt/bin",
		"LD_LIBRARY_PATH=/lib64:/usr/lib64:" + taskRoot + ":" + taskRoot + "/lib:/opt/lib",
		"LANG=en_US.UTF-8",
		"TZ=:UTC",
	}
}

// RunBootstrap starts the bootstrap binary at path as Lambda does: in its
// directory (LAMBDA_TASK_ROOT), with Env and the function's configured
// variables env (KEY=VALUE, overriding) and nothing inherited from this
// process. The child has its own process group and Pdeathsig (harness/proc);
// it is killed when ctx ends. While it runs, the server knows it: when the
// last such runtime exits, the invocations it held (and the queued ones)
// fail with ErrRuntimeExited, as Lambda reports Runtime.ExitError.
func (s *Server) RunBootstrap(ctx context.Context, path string, env ...string) (*proc.Process, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("lambdart: bootstrap path: %w", err)
	}
	root := filepath.Dir(abs)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.runtimes++
	s.watchers.Add(1) // under mu: Close's Wait cannot start before this Add
	s.mu.Unlock()
	p, err := proc.Start(abs, proc.Options{
		Env: append(s.Env(root), env...),
		// The empty prefix matches every inherited variable: the child
		// sees only what Lambda would set.
		DropEnv: []string{""},
		Dir:     root,
	})
	if err != nil {
		s.mu.Lock()
		s.runtimes--
		s.mu.Unlock()
		s.watchers.Done()
		return nil, fmt.Errorf("lambdart: %w", err)
	}
	s.opts.Logf("lambdart: runtime %s started, pid %d", abs, p.Pid())
	go func() {
		defer s.watchers.Done()
		select {
		case <-p.Done():
		case <-ctx.Done():
			_ = p.Kill()
		case <-s.done:
			return // the server no longer cares; the caller owns p
		}
		s.runtimeExited(p)
	}()
	return p, nil
}

// runtimeExited fails what the last live runtime held when it exits.
func (s *Server) runtimeExited(p *proc.Process) {
	status := "exit status " + strconv.Itoa(exitCode(p))
	if sig, ok := p.Signaled(); ok {
		status = "signal: " + sig.String()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.runtimes--
	s.opts.Logf("lambdart: runtime pid %d exited (%s)", p.Pid(), status)
	if s.runtimes > 0 {
		return
	}
	fail := func(inv *invocation) {
		s.endLocked(inv, Result{
			ErrorType:    "Runtime.ExitError",
			ErrorMessage: fmt.Sprintf("RequestId: %s Error: Runtime exited with error: %s", inv.id, status),
		}, ErrRuntimeExited)
	}
	for _, inv := range s.invs {
		if inv.state == running {
			fail(inv)
		}
	}
	for len(s.queue) > 0 {
		fail(s.queue[0])
	}
}

func exitCode(p *proc.Process) int {
	code, err := p.Wait(time.Second) // exited already: returns at once
	if err != nil {
		return -1
	}
	return code
}

// RunBootstrapT is RunBootstrap for tests: the process is killed when t
// ends, and its output is logged if t failed.
func (s *Server) RunBootstrapT(t testing.TB, path string, env ...string) *proc.Process {
	t.Helper()
	p, err := s.RunBootstrap(context.Background(), path, env...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Kill(); err != nil {
			t.Errorf("lambdart: kill bootstrap: %v", err)
		}
		if t.Failed() {
			t.Logf("bootstrap %s stdout:\n%s\nstderr:\n%s", path, p.Stdout(), p.Stderr())
		}
	})
	return p
}

// Build compiles the main package pkg (an import path, or a directory
// relative to the current one) to dir/bootstrap as `make lambda` does for
// provided.al2023: CGO off, -tags lambda.norpc, -trimpath, for Linux on
// this machine's architecture. It returns the binary's path. A build of
// proc.IdgenPackage is for tests that run the service: under go test -short
// it ends the test binary (proc.SkipShortMain).
func Build(ctx context.Context, pkg, dir string) (string, error) {
	if pkg == proc.IdgenPackage {
		proc.SkipShortMain("the idgen binary")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("lambdart: build %s: %w", pkg, err)
	}
	out := filepath.Join(dir, "bootstrap")
	cmd := exec.CommandContext(ctx, goTool, "build", "-trimpath", "-tags", "lambda.norpc", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("lambdart: go build %s: %w\n%s", pkg, err, strings.TrimSpace(string(msg)))
	}
	return out, nil
}
