// Package audit writes the audit trail: one JSON line per security-relevant
// event (auth failure, scope denial, effective saga transition, dead-letter
// move, start and stop), separate from the application log.
//
// Invariants:
//
//   - Record returns nil only after the line is written and, for a file,
//     fsynced (group-committed: every line waiting when a write starts
//     rides in it). Lines never carry tokens, secrets or metadata (Event
//     has no field for them).
//
//   - An entry is whole or absent. Every write is of whole lines; after a
//     short or failed write or a failed fsync the file is truncated back to
//     the end of its last durable line, and fsynced, before anything else
//     is written. Open cuts off a torn final line (one without its newline)
//     left by a process that died mid-write.
//
//   - Record's error means the entry is not in the file and never will be:
//     the log has let go of it and its caller owns it. Callers fail closed
//     and their retry writes it (with audit marks, compensation.Core and
//     POST /commit claim, write, then mark; a failed entry releases its
//     claim, and the retry claims and writes it). This is what
//     makes every stored state change audited once: a log that kept an
//     entry it had reported failed, and wrote it later, would let the
//     caller's retry write it a second time.
//
//   - Between its first failed write and that error, an entry waits in the
//     backlog, retried every Settings.RetryInterval, for Settings.Wait: an
//     outage shorter than Wait costs latency, not errors. At most
//     Settings.MaxBacklog entries wait; beyond, Record fails at once with
//     ErrBacklogFull. No entry is dropped unseen: each either is written
//     or its Record returns an error.
//
//   - After a failed write the log is unhealthy (Healthy) until its backlog
//     and an audit.resume line are written and synced. The retry timer
//     writes them without waiting for a new entry, so the log turns
//     healthy within RetryInterval of space returning. The audit.resume
//     line tells the reader of the outage: when it began, its error and
//     how many entries were given back to their callers.
//
//   - Every line is a link of its writer's hash chain: it names the
//     writer (random per Open), its seq (from 1) and the SHA-256 of the
//     writer's previous line (chain.go). The chain advances only over
//     durable lines, so a failed write leaves no gap in it: the lines of
//     the backlog get their seq when they are written, in order. With
//     Settings.SigningKey the log adds signed checkpoints of its chain
//     (checkpoint.go), and hands each to Settings.Checkpoint once durable.
//     Verify finds the first line modified, deleted, inserted or moved
//     before the last checkpoint (verify.go).
//
// Crash window: a process that dies (or a Log closed) after a write that
// failed (its fsync, or a short write) and before the truncation that
// follows succeeds can leave the complete lines of that write in the file,
// though their Record never returned nil; a retry of such an entry writes
// it again, as does one after a death between an entry and its mark
// (Event.Recovered).
//
// One Log writes a file; two processes must not share one. Stderr ("-")
// cannot be truncated: there a failed write can leave a torn line.
package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Errors.
var (
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("audit: closed")
	// ErrBacklogFull is returned when Settings.MaxBacklog entries are
	// waiting already (the sink has failed or is slow).
	ErrBacklogFull = errors.New("audit: backlog full")
)

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
	// TraceID is the W3C trace ID of the request or failure event, when
	// tracing is on.
	TraceID  string `json:"trace_id,omitempty"`
	Instance string `json:"instance"`
	// Recovered: written by a retry or redelivery for an effect whose own
	// attempt stored it but never audited it. If that attempt died after
	// writing its entry and before recording so (one Redis round trip),
	// the effect has a second entry, this one.
	Recovered bool `json:"recovered,omitempty"`
}

// Actions.
const (
	ActionAuthFailure  = "auth.failure"
	ActionScopeDenied  = "auth.scope_denied"
	ActionCommit       = "id.commit"
	ActionCompensate   = "id.compensate"
	ActionDeadLetter   = "event.dead_letter"
	ActionEraseSubject = "subject.erase"
	ActionServiceStart = "service.start"
	ActionServiceStop  = "service.stop"
	ActionAuditStart   = "audit.start"
	ActionAuditStop    = "audit.stop"
	ActionAuditResume  = "audit.resume"
	OutcomeSuccess     = "success"
	OutcomeDenied      = "denied"
	OutcomeFailed      = "failed"
	timeLayout         = "2006-01-02T15:04:05.000Z07:00"
)

// MarshalJSON writes the time in UTC with milliseconds.
func (e Event) MarshalJSON() ([]byte, error) {
	type plain Event
	return json.Marshal(struct {
		Time string `json:"time"`
		plain
	}{e.Time.UTC().Format(timeLayout), plain(e)})
}

// Log is an audit sink. Safe for concurrent use.
type Log struct {
	instance string
	resource string // the path, in the log's own lines
	set      Settings
	now      func() time.Time

	// Owned by the writer goroutine (by Open before it starts, by Close
	// after it ends).
	sink        sink
	truncatable bool
	good        int64 // the file's size up to its last durable line
	dirty       bool  // the file holds bytes past good that a cut must drop
	outage      *outage
	chain       chain
	buf         []byte    // the next write, kept between flushes
	segs        []segment // its lines

	wake chan struct{}
	quit chan struct{}
	done chan struct{}

	mu      sync.Mutex
	backlog []*pending // in order; the writer takes them all at once
	waiting int        // entries accepted, not yet answered
	// closed is set under mu (Record checks it there, so that no entry is
	// queued after Close); health is the last write's error. Both are
	// atomic so that Healthy, asked by every state-changing request,
	// takes no lock.
	closed atomic.Bool
	health atomic.Pointer[error]
}

// Open is OpenWith with the default Settings.
func Open(path, instance string) (*Log, error) {
	return OpenWith(path, instance, Settings{})
}

// OpenWith appends to path ("-" = stderr) and starts the writer; a torn
// final line of path is cut off first (its size goes in the audit.start
// line). instance names this process in every line. Errors: s invalid, the
// file cannot be opened or cut, or the audit.start line cannot be written.
func OpenWith(path, instance string, s Settings) (*Log, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	sk, size, cut, truncatable, err := openSink(path)
	if err != nil {
		return nil, err
	}
	l := newLog(sk, size, truncatable, path, instance, s)
	start := Event{Actor: "system", Action: ActionAuditStart, Resource: path, Outcome: OutcomeSuccess}
	if cut > 0 {
		start.Reason = fmt.Sprintf("cut off a torn final line of %d bytes", cut)
	}
	if err := l.Record(start); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// newLog starts the writer of sk, whose whole lines end at size.
func newLog(sk sink, size int64, truncatable bool, resource, instance string, s Settings) *Log {
	l := &Log{
		instance: instance, resource: resource, set: s.withDefaults(), now: time.Now,
		sink: sk, truncatable: truncatable, good: size, chain: chain{writer: newWriterID()},
		wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}),
	}
	go l.writer()
	return l
}

// Record writes e (Time and Instance filled in when empty) and waits until
// it is durable. An error means e is not written and will not be: the
// caller owns it (see the package doc). While the sink fails, Record waits
// up to Settings.Wait plus one RetryInterval. Errors: the write's, wrapped
// ("audit: write: ..."); ErrBacklogFull; ErrClosed.
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
	p := &pending{body: openBody(line), done: make(chan error, 1)}
	l.mu.Lock()
	switch {
	case l.closed.Load():
		l.mu.Unlock()
		return ErrClosed
	case l.waiting >= l.set.MaxBacklog:
		l.mu.Unlock()
		if health := l.lastError(); health != nil {
			return fmt.Errorf("%w (%d entries): %w", ErrBacklogFull, l.set.MaxBacklog, health)
		}
		return fmt.Errorf("%w (%d entries)", ErrBacklogFull, l.set.MaxBacklog)
	}
	l.backlog = append(l.backlog, p)
	l.waiting++
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	return <-p.done
}

// Healthy reports the last write's error: nil when the sink works, and
// again once the backlog of a failure is written (the log retries it by
// itself). ErrClosed after Close.
func (l *Log) Healthy() error {
	if l.closed.Load() {
		return ErrClosed
	}
	return l.lastError()
}

// lastError is the last write's error (nil after a good one).
func (l *Log) lastError() error {
	if p := l.health.Load(); p != nil {
		return *p
	}
	return nil
}

// Close records the stop of audit logging, stops the writer (entries still
// waiting get ErrClosed) and closes the sink.
func (l *Log) Close() error {
	_ = l.Record(Event{Actor: "system", Action: ActionAuditStop, Outcome: OutcomeSuccess})
	l.mu.Lock()
	if l.closed.Load() {
		l.mu.Unlock()
		return nil
	}
	l.closed.Store(true)
	l.mu.Unlock()
	close(l.quit)
	<-l.done
	return l.sink.Close()
}
