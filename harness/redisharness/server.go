package redisharness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	"github.com/idgen/idgen/harness/proc"
)

// kind is what a Server runs.
type kind int

const (
	kindRedis kind = iota
	kindSentinel
)

// Server is one Redis or Sentinel process: standalone, or a member of a
// Group or Cluster. Its methods are safe for concurrent use.
type Server struct {
	env     *env
	name    string // also the sub-directory of env.dir
	kind    kind
	dir     string
	port    int  // set by Start before the first process runs, then fixed
	ownsEnv bool // a standalone Server: Close also removes the directory

	mu     sync.Mutex
	p      *proc.Process // the latest process; nil before the first start
	frozen bool          // SIGSTOPped and not yet SIGCONTed
	killed bool          // the harness SIGKILLed this process
	closed bool
}

// Addr is "127.0.0.1:port"; with Options.TLS the port speaks TLS only.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Name is the member's name ("redis0", "sentinel1", "node2", ...), also its
// sub-directory of the working directory.
func (s *Server) Name() string { return s.name }

// Dir is the member's directory: config file, data and server.log.
func (s *Server) Dir() string { return s.dir }

// LogPath is the file that gets the process's log and its stdout and stderr.
func (s *Server) LogPath() string { return filepath.Join(s.dir, "server.log") }

// Pid is the process id while the process is alive (frozen or not), else 0.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.alive() {
		return 0
	}
	return s.p.Pid()
}

// TLSFiles returns the paths of the CA certificate that signed the servers'
// certificate (valid for 127.0.0.1, ::1 and localhost), and of a client
// certificate and its PKCS#8 key signed by the same CA. All empty without
// Options.TLS.
func (s *Server) TLSFiles() (caPEM, clientCertPEM, clientKeyPEM string) {
	return s.env.tlsPaths()
}

func (s *Server) confPath() string {
	if s.kind == kindSentinel {
		return filepath.Join(s.dir, "sentinel.conf")
	}
	return filepath.Join(s.dir, "redis.conf")
}

// Kill SIGKILLs the process and waits until it is reaped. Killing a process
// that is not alive is a no-op. Errors: ErrClosed.
func (s *Server) Kill() error {
	killed, err := s.killLatest()
	if killed {
		s.env.opts.Logf("redisharness: %s killed", s.name)
	}
	return err
}

// Stop freezes the process with SIGSTOP: its socket stays open but it
// answers nothing, as in a long pause or a hung host. Errors: ErrNotRunning
// if it is not alive, ErrClosed.
func (s *Server) Stop() error { return s.signal(syscall.SIGSTOP, true) }

// Cont thaws the process with SIGCONT. Errors as for Stop.
func (s *Server) Cont() error { return s.signal(syscall.SIGCONT, false) }

// Restart starts the process again on the same port with the same config
// file and data directory, killing it first if it is still alive (frozen or
// not), and waits until it answers PING. For a replica or cluster node that
// does not mean it has synced. Errors: ErrPortInUse if the port was taken
// meanwhile, the process's exit with the end of its log, ctx's error,
// ErrClosed.
func (s *Server) Restart(ctx context.Context) error {
	if _, err := s.killLatest(); err != nil {
		return err
	}
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return ErrClosed
	case s.alive():
		s.mu.Unlock()
		return fmt.Errorf("redisharness: restart %s: restarted concurrently", s.name)
	}
	err := s.launch()
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.waitReady(ctx)
}

// Close kills the process and waits for it; a standalone Server also removes
// the working directory if Start created it. It is idempotent; later calls
// return nil and other methods return ErrClosed. Closing a member of a Group
// or Cluster only ends that member.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	p := s.p
	s.mu.Unlock()
	_, err := s.kill(p)
	if s.ownsEnv {
		err = errors.Join(err, s.env.removeDir())
	}
	return err
}

// alive reports whether the process is started and not yet reaped. The
// caller holds s.mu.
func (s *Server) alive() bool { return s.p != nil && !s.p.Exited() }

// running reports whether the process should answer: alive and not frozen.
func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.alive() && !s.frozen
}

// launch starts the process from its config file, its output appended to
// server.log. The caller holds s.mu and has checked that it is not alive.
func (s *Server) launch() error {
	bin := s.env.server
	if s.kind == kindSentinel {
		bin = s.env.sentinel
	}
	p, err := proc.Start(bin, proc.Options{Args: []string{s.confPath()}, Dir: s.dir, LogFile: s.LogPath()})
	if err != nil {
		return fmt.Errorf("redisharness: %s: %w", s.name, err)
	}
	s.p, s.frozen, s.killed = p, false, false
	s.env.opts.Logf("redisharness: %s started (pid %d, port %d)", s.name, p.Pid(), s.port)
	return nil
}

// killLatest kills the latest process (kill) unless the Server is closed.
func (s *Server) killLatest() (bool, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false, ErrClosed
	}
	p := s.p
	s.mu.Unlock()
	return s.kill(p)
}

// kill SIGKILLs the process group of p (anything the server forked, a
// BGSAVE child, dies too) and waits until it is reaped. A stopped process
// dies from SIGKILL too, so frozen ones need no SIGCONT. It reports whether
// there was a live process.
func (s *Server) kill(p *proc.Process) (bool, error) {
	if p == nil || p.Exited() {
		return false, nil
	}
	s.mu.Lock()
	if s.p == p {
		s.killed = true
	}
	s.mu.Unlock()
	if err := p.Kill(); err != nil {
		return true, fmt.Errorf("redisharness: kill %s: %w", s.name, err)
	}
	return true, nil
}

// signal sends sig to the process group of a live process.
func (s *Server) signal(sig syscall.Signal, frozen bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if !s.alive() {
		return fmt.Errorf("redisharness: %s: %w", s.name, ErrNotRunning)
	}
	if err := s.p.SignalGroup(sig); err != nil {
		return fmt.Errorf("redisharness: signal %s: %w", s.name, err)
	}
	s.frozen = frozen
	s.env.opts.Logf("redisharness: %s sent %v", s.name, sig)
	return nil
}

// checkAlive fails when the process was killed, has exited or the Server is
// closed; an unexpected exit comes with the end of the log and wraps
// ErrPortInUse for a bind failure.
func (s *Server) checkAlive() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrClosed
	case s.p == nil || s.killed:
		return fmt.Errorf("redisharness: %s was killed: %w", s.name, ErrNotRunning)
	case !s.alive():
		err := fmt.Errorf("redisharness: %s exited (%v)", s.name, s.p.WaitErr())
		log := s.p.LogMark().Since(256 << 10)
		if bytes.Contains(log, []byte("Address already in use")) {
			err = fmt.Errorf("%w: %w", err, ErrPortInUse)
		}
		return fmt.Errorf("%w: %w\n%s", err, ErrNotRunning, proc.Tail(s.LogPath(), log, 20))
	}
	return nil
}

// waitReady polls until the process answers PING with PONG (not LOADING).
// It also checks INFO's process_id: when another process took the port
// between picking and binding, that one answers while ours exits with a
// bind failure, which the next poll then reports.
func (s *Server) waitReady(ctx context.Context) error {
	return poll(ctx, s.name+" to answer PING", []*Server{s}, func(ctx context.Context) error {
		r, err := s.do(ctx, []string{"INFO", "server"}, []string{"PING"})
		if err != nil {
			return err
		}
		if pid, want := infoField(r[0], "process_id"), strconv.Itoa(s.Pid()); pid != want {
			return fmt.Errorf("%s answered as pid %s, want %s", s.Addr(), pid, want)
		}
		return nil
	})
}

// do runs cmds on the process, one short connection.
func (s *Server) do(ctx context.Context, cmds ...[]string) ([]any, error) {
	return s.env.do(ctx, s.Addr(), cmds...)
}
