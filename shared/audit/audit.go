// Package audit writes the audit trail: one JSON line per security-relevant
// event (auth failure, scope denial, effective saga transition, dead-letter
// move, start and stop), separate from the application log.
//
// Invariants: Record returns only after the line is written and, for a file,
// fsynced (group-committed: every line waiting when a sync starts rides in
// it); lines never carry tokens, secrets or metadata (Event has no field for
// them); after a write or sync failure the log reports itself unhealthy
// until a later write succeeds, so callers can fail closed.
package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// ErrClosed is returned after Close.
var ErrClosed = errors.New("audit: closed")

// Event is one audit line.
type Event struct {
	Time      time.Time `json:"time"`
	Actor     string    `json:"actor"`
	Action    string    `json:"action"`
	Resource  string    `json:"resource"`
	Outcome   string    `json:"outcome"`
	Reason    string    `json:"reason,omitempty"`
	Source    string    `json:"source,omitempty"`
	RequestID string    `json:"request_id,omitempty"`
	Instance  string    `json:"instance"`
	// Recovered: written by a retry or redelivery for an effect whose own
	// attempt stored it but never audited it. If that attempt died after
	// writing its entry and before recording so (one Redis round trip),
	// the effect has a second entry, this one.
	Recovered bool `json:"recovered,omitempty"`
}

// Actions.
const (
	ActionAuthFailure   = "auth.failure"
	ActionScopeDenied   = "auth.scope_denied"
	ActionCommit        = "id.commit"
	ActionCompensate    = "id.compensate"
	ActionDeadLetter    = "event.dead_letter"
	ActionEraseSubject  = "subject.erase"
	ActionServiceStart  = "service.start"
	ActionServiceStop   = "service.stop"
	ActionAuditStart    = "audit.start"
	ActionAuditStop     = "audit.stop"
	OutcomeSuccess      = "success"
	OutcomeDenied       = "denied"
	OutcomeFailed       = "failed"
	timeLayout          = "2006-01-02T15:04:05.000Z07:00"
	defaultQueueEntries = 4096
)

// MarshalJSON writes the time in UTC with milliseconds.
func (e Event) MarshalJSON() ([]byte, error) {
	type plain Event
	return json.Marshal(struct {
		Time string `json:"time"`
		plain
	}{e.Time.UTC().Format(timeLayout), plain(e)})
}

type pending struct {
	line []byte
	done chan error
}

// Log is an audit sink. Safe for concurrent use.
type Log struct {
	instance string
	w        io.Writer
	sync     func() error // nil for streams that cannot sync (stderr)
	closer   io.Closer
	now      func() time.Time

	queue chan pending
	quit  chan struct{}
	done  chan struct{}

	mu      sync.RWMutex
	closed  bool
	lastErr error
}

// Open appends to path ("-" = stderr) and starts the writer. instance names
// this process in every line.
func Open(path, instance string) (*Log, error) {
	l := &Log{instance: instance, now: time.Now, queue: make(chan pending, defaultQueueEntries), quit: make(chan struct{}), done: make(chan struct{})}
	if path == "-" || path == "" {
		l.w = os.Stderr
	} else {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		l.w, l.sync, l.closer = f, f.Sync, f
	}
	go l.writer()
	if err := l.Record(Event{Actor: "system", Action: ActionAuditStart, Resource: path, Outcome: OutcomeSuccess}); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Record writes e (Time and Instance filled in when empty) and waits until
// it is durable.
func (l *Log) Record(e Event) error {
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	if e.Instance == "" {
		e.Instance = l.instance
	}
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	p := pending{line: append(line, '\n'), done: make(chan error, 1)}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return ErrClosed
	}
	l.queue <- p
	l.mu.RUnlock()
	return <-p.done
}

// writer writes everything queued, syncs once, then acknowledges.
func (l *Log) writer() {
	defer close(l.done)
	var batch []pending
	var buf []byte
	for {
		var first pending
		select {
		case first = <-l.queue:
		case <-l.quit:
			return
		}
		batch, buf = append(batch[:0], first), append(buf[:0], first.line...)
	fill:
		for len(batch) < defaultQueueEntries {
			select {
			case p := <-l.queue:
				batch, buf = append(batch, p), append(buf, p.line...)
			default:
				break fill
			}
		}
		_, err := l.w.Write(buf)
		if err == nil && l.sync != nil {
			err = l.sync()
		}
		if err != nil {
			err = fmt.Errorf("audit: write: %w", err)
		}
		l.mu.Lock()
		l.lastErr = err
		l.mu.Unlock()
		for _, p := range batch {
			p.done <- err
		}
	}
}

// Healthy reports the last write's error (nil when the sink works).
func (l *Log) Healthy() error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	return l.lastErr
}

// Close records the stop of audit logging and closes the sink.
func (l *Log) Close() error {
	_ = l.Record(Event{Actor: "system", Action: ActionAuditStop, Outcome: OutcomeSuccess})
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.quit)
	<-l.done
	if l.closer != nil {
		return l.closer.Close()
	}
	return nil
}
