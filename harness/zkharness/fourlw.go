package zkharness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// Timing of the readiness polls: one `srvr` round trip to a live server takes
// about a millisecond, so a short probe timeout only matters for servers that
// accept but do not answer (frozen, or the JVM still starting).
const (
	probeTimeout = time.Second
	pollInterval = 100 * time.Millisecond
	// bindCheckEvery is how many polls pass between scans of the logs for
	// bind failures that do not end the process.
	bindCheckEvery = 10
)

// srvr sends the `srvr` four-letter word to addr and returns the value of its
// Mode line ("leader", "follower", "standalone", ...). A server that is up
// but not in a quorum answers without a Mode line: ErrNotServing.
func srvr(ctx context.Context, addr string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNotServing, err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	if err := conn.SetDeadline(deadline); err != nil {
		return "", fmt.Errorf("zkharness: srvr %s: %w", addr, err)
	}
	if _, err := conn.Write([]byte("srvr")); err != nil {
		return "", fmt.Errorf("%w: %v", ErrNotServing, err)
	}
	reply, err := io.ReadAll(io.LimitReader(conn, 64<<10))
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNotServing, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(reply))
	for sc.Scan() {
		if mode, ok := strings.CutPrefix(sc.Text(), "Mode: "); ok {
			return strings.TrimSpace(mode), nil
		}
	}
	return "", fmt.Errorf("%w: %q", ErrNotServing, strings.TrimSpace(string(reply)))
}

// Mode asks server i for its role with `srvr`: "leader", "follower" or
// "standalone" (a single server). Errors: ErrNotRunning for a killed, exited
// or frozen server (not probed, so it cannot hang), ErrNotServing while it
// has no quorum or does not answer within 1 s, ErrBadIndex, ErrClosed.
func (e *Ensemble) Mode(ctx context.Context, i int) (string, error) {
	e.mu.Lock()
	s, err := e.server(i)
	if err == nil && !s.running() {
		err = fmt.Errorf("zkharness: server %d: %w", i, ErrNotRunning)
	}
	e.mu.Unlock()
	if err != nil {
		return "", err
	}
	mode, err := srvr(ctx, s.clientAddr())
	if err != nil {
		return "", fmt.Errorf("zkharness: server %d: %w", i, err)
	}
	return mode, nil
}

// Leader probes the running servers once and returns the index of the one
// whose mode is "leader" or "standalone" (the lowest index if, during a
// partition, two claim it). Errors: ErrNoLeader, with each probe's error
// joined; ErrClosed.
func (e *Ensemble) Leader(ctx context.Context) (int, error) {
	e.mu.Lock()
	watch, err := e.watched(nil)
	e.mu.Unlock()
	if err != nil {
		return -1, err
	}
	modes, _, errs := probe(ctx, watch)
	for _, s := range watch {
		if mode := modes[s.index]; mode == "leader" || mode == "standalone" {
			return s.index, nil
		}
	}
	return -1, errors.Join(append([]error{ErrNoLeader}, errs...)...)
}

// KillLeader SIGKILLs the server Leader names and returns its index.
// Errors: Leader's, Kill's.
func (e *Ensemble) KillLeader(ctx context.Context) (int, error) {
	leader, err := e.Leader(ctx)
	if err != nil {
		return -1, err
	}
	return leader, e.Kill(leader)
}

// WaitServing polls until every server in idx (default: every running one)
// answers `srvr` with a Mode line. Errors: ErrNotRunning at once if a given
// server is killed or frozen, the exit of a server while waiting, ctx's
// error wrapped with the last probe failure.
func (e *Ensemble) WaitServing(ctx context.Context, idx ...int) error {
	return e.wait(ctx, idx, false)
}

// WaitQuorum polls until a leader exists and every running server serves.
// Errors as for WaitServing.
func (e *Ensemble) WaitQuorum(ctx context.Context) error { return e.wait(ctx, nil, true) }

// wait polls servers idx (nil: all running) until each serves and, with
// leader, one of them leads. It fails early when a watched process exits or
// logs a bind failure.
func (e *Ensemble) wait(ctx context.Context, idx []int, leader bool) error {
	for n := 1; ; n++ {
		e.mu.Lock()
		watch, err := e.watched(idx)
		e.mu.Unlock()
		if err != nil {
			return err
		}
		modes, failed, errs := probe(ctx, watch)
		if len(errs) == 0 && leader && !modes.has("leader") && !modes.has("standalone") {
			errs = append(errs, ErrNoLeader)
		}
		if len(errs) == 0 {
			return nil
		}
		if n%bindCheckEvery == 0 {
			if err := e.checkBind(watch); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			err := fmt.Errorf("zkharness: wait for servers: %w (last: %w)", ctx.Err(), errors.Join(errs...))
			e.mu.Lock()
			defer e.mu.Unlock()
			for _, s := range failed[:min(len(failed), 2)] {
				err = fmt.Errorf("%w\n%s", err, e.logTail(s))
			}
			return err
		case <-time.After(pollInterval):
		}
	}
}

// checkBind fails with ErrPortInUse if a server in watch logged a bind
// failure since it was last started.
func (e *Ensemble) checkBind(watch []*server) error {
	e.mu.Lock() // guards the log offsets, which a concurrent Restart moves
	defer e.mu.Unlock()
	for _, s := range watch {
		if e.bindFailed(s) {
			return fmt.Errorf("zkharness: server %d: %w\n%s", s.index, ErrPortInUse, e.logTail(s))
		}
	}
	return nil
}

// watched resolves idx to servers (nil: every running one). A given server
// that is frozen, was killed or has exited fails with ErrNotRunning, an
// unexpected exit with the end of its logs. The caller holds e.mu.
func (e *Ensemble) watched(idx []int) ([]*server, error) {
	if e.closed {
		return nil, ErrClosed
	}
	var watch []*server
	if idx == nil {
		for _, s := range e.servers {
			if s.running() {
				watch = append(watch, s)
			}
		}
		return watch, nil
	}
	for _, i := range idx {
		s, err := e.server(i)
		if err != nil {
			return nil, err
		}
		switch {
		case s.frozen:
			return nil, fmt.Errorf("zkharness: server %d is frozen: %w", i, ErrNotRunning)
		case s.p == nil || s.killed:
			return nil, fmt.Errorf("zkharness: server %d was killed: %w", i, ErrNotRunning)
		case !s.alive():
			return nil, fmt.Errorf("%w: %w", ErrNotRunning, e.exitError(s))
		}
		watch = append(watch, s)
	}
	return watch, nil
}

// modeSet maps server index to mode for the servers that answered.
type modeSet map[int]string

func (m modeSet) has(mode string) bool {
	for _, v := range m {
		if v == mode {
			return true
		}
	}
	return false
}

// probe sends `srvr` to every server in watch in parallel and returns the
// modes of those that answered, the others and their errors.
func probe(ctx context.Context, watch []*server) (modeSet, []*server, []error) {
	modes := make(modeSet, len(watch))
	var failed []*server
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range watch {
		wg.Go(func() {
			mode, err := srvr(ctx, s.clientAddr())
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, s)
				errs = append(errs, fmt.Errorf("server %d: %w", s.index, err))
				return
			}
			modes[s.index] = mode
		})
	}
	wg.Wait()
	return modes, failed, errs
}
