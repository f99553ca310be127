package zkharness

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/idgen/idgen/harness/proc"
)

// server is one ensemble member. Fields below the ports are guarded by
// Ensemble.mu; ports change only in Start, before any process runs.
type server struct {
	index int
	dir   string

	clientPort, quorumPort, electionPort, securePort int

	p      *proc.Process // the latest JVM; nil before the first launch
	zkLog  proc.LogMark  // zookeeper.log where the latest JVM started
	frozen bool          // SIGSTOPped and not yet SIGCONTed
	killed bool          // the harness SIGKILLed this process
}

func (s *server) myid() int          { return s.index + 1 }
func (s *server) dataDir() string    { return filepath.Join(s.dir, "data") }
func (s *server) cfgPath() string    { return filepath.Join(s.dir, "zoo.cfg") }
func (s *server) logPath() string    { return filepath.Join(s.dir, "zookeeper.log") }
func (s *server) outPath() string    { return filepath.Join(s.dir, "stdout.log") }
func (s *server) clientAddr() string { return "127.0.0.1:" + strconv.Itoa(s.clientPort) }

// alive reports whether the process is started and not yet reaped.
func (s *server) alive() bool { return s.p != nil && !s.p.Exited() }

// running reports whether the server should answer requests: alive and not
// frozen.
func (s *server) running() bool { return s.alive() && !s.frozen }

// launch starts the JVM of s, its stdout and stderr appended to stdout.log.
// The caller holds e.mu and has checked that s is not alive.
func (e *Ensemble) launch(s *server) error {
	s.zkLog = proc.MarkLog(s.logPath())
	p, err := proc.Start(e.java, proc.Options{Args: e.javaArgs(s), Dir: s.dir, LogFile: s.outPath()})
	if err != nil {
		return fmt.Errorf("zkharness: server %d: %w", s.index, err)
	}
	s.p, s.frozen, s.killed = p, false, false
	e.opts.Logf("zkharness: server %d started (pid %d, client port %d)", s.index, p.Pid(), s.clientPort)
	return nil
}

// kill SIGKILLs the process group of p (anything the JVM forked dies too)
// and waits until it is reaped. A stopped process dies from SIGKILL too, so
// frozen servers need no SIGCONT. It is a no-op for a process that is not
// alive. The caller must not hold e.mu.
func (e *Ensemble) kill(s *server, p *proc.Process) error {
	if p == nil || p.Exited() {
		return nil
	}
	e.mu.Lock()
	if s.p == p {
		s.killed = true
	}
	e.mu.Unlock()
	if err := p.Kill(); err != nil {
		return fmt.Errorf("zkharness: kill server %d: %w", s.index, err)
	}
	return nil
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
	if err := s.p.SignalGroup(sig); err != nil {
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
	err := fmt.Errorf("zkharness: server %d exited (%v)", s.index, s.p.WaitErr())
	if e.bindFailed(s) {
		err = fmt.Errorf("%w: %w", err, ErrPortInUse)
	}
	return fmt.Errorf("%w\n%s", err, e.logTail(s))
}

// serverLog is a log of a server from where its latest JVM started, and
// how many of its last lines an error shows.
type serverLog struct {
	mark proc.LogMark
	n    int
}

// logs are stdout.log and zookeeper.log of s; none before the first launch.
func (s *server) logs() []serverLog {
	if s.p == nil {
		return nil
	}
	return []serverLog{{s.p.LogMark(), 10}, {s.zkLog, 20}}
}

// bindFailed reports whether s logged a bind failure since its last start.
// The caller holds e.mu.
// A leader that cannot bind its quorum port does not exit, it re-runs the
// election forever, so the log is the only place the failure shows.
func (e *Ensemble) bindFailed(s *server) bool {
	for _, l := range s.logs() {
		if bytes.Contains(l.mark.Since(256<<10), []byte("Address already in use")) {
			return true
		}
	}
	return false
}

// logTail returns the last lines both logs of s got since its last start.
// A rolled zookeeper.log starts again below its mark and reads as nothing
// new, which only loses a hint in a run that already logged 10 MiB. The
// caller holds e.mu.
func (e *Ensemble) logTail(s *server) string {
	var b bytes.Buffer
	for _, l := range s.logs() {
		text := bytes.TrimSpace(l.mark.Since(64 << 10))
		if len(text) > 0 {
			fmt.Fprintf(&b, "%s\n", proc.Tail(l.mark.Path, text, l.n))
		}
	}
	return b.String()
}
