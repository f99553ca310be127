package zkharness

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// killWait bounds the wait for a SIGKILLed JVM to be reaped; the kernel
// normally needs milliseconds.
const killWait = 10 * time.Second

// server is one ensemble member. Fields below the ports are guarded by
// Ensemble.mu; ports change only in Start, before any process runs.
type server struct {
	index int
	dir   string

	clientPort, quorumPort, electionPort, securePort int

	cmd     *exec.Cmd
	done    chan struct{} // closed once cmd has exited and been reaped
	waitErr error         // cmd.Wait's result, valid after done is closed
	frozen  bool          // SIGSTOPped and not yet SIGCONTed
	killed  bool          // the harness SIGKILLed this process
	logOff  int64         // size of zookeeper.log when the process started
	outOff  int64         // size of stdout.log when the process started
}

func (s *server) myid() int          { return s.index + 1 }
func (s *server) dataDir() string    { return filepath.Join(s.dir, "data") }
func (s *server) cfgPath() string    { return filepath.Join(s.dir, "zoo.cfg") }
func (s *server) logPath() string    { return filepath.Join(s.dir, "zookeeper.log") }
func (s *server) outPath() string    { return filepath.Join(s.dir, "stdout.log") }
func (s *server) clientAddr() string { return "127.0.0.1:" + strconv.Itoa(s.clientPort) }

// alive reports whether the process is started and not yet reaped.
func (s *server) alive() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// running reports whether the server should answer requests: alive and not
// frozen.
func (s *server) running() bool { return s.alive() && !s.frozen }

// launch starts the JVM of s. The caller holds e.mu and has checked that s is
// not alive.
func (e *Ensemble) launch(s *server) error {
	out, err := os.OpenFile(s.outPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("zkharness: server %d: %w", s.index, err)
	}
	defer out.Close() // the child has its own copy of the descriptor
	s.outOff = fileSize(s.outPath())
	s.logOff = fileSize(s.logPath())

	cmd := exec.Command(e.java, e.javaArgs(s)...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("zkharness: server %d: start java: %w", s.index, err)
	}
	done := make(chan struct{})
	s.cmd, s.done, s.frozen, s.killed, s.waitErr = cmd, done, false, false, nil
	go func() {
		err := cmd.Wait()
		e.mu.Lock()
		if s.cmd == cmd {
			s.waitErr = err
		}
		e.mu.Unlock()
		close(done)
	}()
	e.opts.Logf("zkharness: server %d started (pid %d, client port %d)", s.index, cmd.Process.Pid, s.clientPort)
	return nil
}

// kill SIGKILLs the process group of s and waits until it is reaped. A
// stopped process dies from SIGKILL too, so frozen servers need no SIGCONT.
// It is a no-op for a server that is not alive. The caller must not hold e.mu
// (the reaper goroutine takes it).
func (e *Ensemble) kill(s *server, cmd *exec.Cmd, done chan struct{}) error {
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	e.mu.Lock()
	if s.cmd == cmd {
		s.killed = true
	}
	e.mu.Unlock()
	pid := cmd.Process.Pid
	// The group id is the pid (Setpgid); signal the group so anything the
	// JVM forked dies too, and fall back to the pid if the group is gone.
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("zkharness: kill server %d: %w", s.index, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("zkharness: kill server %d: pid %d not reaped after %v", s.index, pid, killWait)
	}
}

// signal sends sig to the process group of a live server.
func (e *Ensemble) signal(i int, sig syscall.Signal, frozen bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, err := e.server(i)
	if err != nil {
		return err
	}
	if !s.alive() {
		return fmt.Errorf("zkharness: server %d: %w", i, ErrNotRunning)
	}
	if err := syscall.Kill(-s.cmd.Process.Pid, sig); err != nil {
		return fmt.Errorf("zkharness: signal server %d: %w", i, err)
	}
	s.frozen = frozen
	e.opts.Logf("zkharness: server %d sent %v", i, sig)
	return nil
}

// server returns member i; the caller holds e.mu.
func (e *Ensemble) server(i int) (*server, error) {
	if e.closed {
		return nil, ErrClosed
	}
	if i < 0 || i >= len(e.servers) {
		return nil, fmt.Errorf("%w: %d of %d", ErrBadIndex, i, len(e.servers))
	}
	return e.servers[i], nil
}

// exitError describes a server whose process ended while it was expected to
// run, with the end of its logs; it wraps ErrPortInUse for bind failures.
// The caller holds e.mu.
func (e *Ensemble) exitError(s *server) error {
	err := fmt.Errorf("zkharness: server %d exited (%v)", s.index, s.waitErr)
	if e.bindFailed(s) {
		err = fmt.Errorf("%w: %w", err, ErrPortInUse)
	}
	return fmt.Errorf("%w\n%s", err, e.logTail(s))
}

// bindFailed reports whether s logged a bind failure since its last start.
// The caller holds e.mu.
// A leader that cannot bind its quorum port does not exit, it re-runs the
// election forever, so the log is the only place the failure shows.
func (e *Ensemble) bindFailed(s *server) bool {
	for _, f := range []struct {
		path string
		off  int64
	}{{s.logPath(), s.logOff}, {s.outPath(), s.outOff}} {
		if bytes.Contains(readFrom(f.path, f.off, 256<<10), []byte("Address already in use")) {
			return true
		}
	}
	return false
}

// logTail returns the last lines both logs of s got since its last start.
// The caller holds e.mu.
func (e *Ensemble) logTail(s *server) string {
	var b bytes.Buffer
	for _, f := range []struct {
		path string
		off  int64
		n    int
	}{{s.outPath(), s.outOff, 10}, {s.logPath(), s.logOff, 20}} {
		text := bytes.TrimSpace(readFrom(f.path, f.off, 64<<10))
		if len(text) == 0 {
			continue
		}
		lines := bytes.Split(text, []byte("\n"))
		lines = lines[max(0, len(lines)-f.n):]
		fmt.Fprintf(&b, "--- %s (last %d lines)\n%s\n", f.path, len(lines), bytes.Join(lines, []byte("\n")))
	}
	return b.String()
}

// readFrom returns at most limit bytes of the file at path from offset off,
// the last ones if there are more; nil on any error.
func readFrom(path string, off, limit int64) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if size := fileSize(path); size-off > limit {
		off = size - limit
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(f, limit))
	return b
}

// fileSize is the size of path, 0 if it does not exist. A rolled log starts
// again below the saved offset; readFrom then reads nothing new, which only
// loses a bind-failure hint in a run that already logged 10 MiB.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
