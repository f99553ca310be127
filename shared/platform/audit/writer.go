package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// pending is an entry waiting to be written.
type pending struct {
	line     []byte
	done     chan error // nil for the log's own audit.resume line
	failedAt time.Time  // its first failed write; zero until then
}

// outage is a run of failed writes, ended by a durable audit.resume line.
type outage struct {
	since time.Time
	err   error
	given int // entries given back to their callers with the error
}

// writer writes the backlog whenever Record adds to it and, after a
// failure, every RetryInterval until a write succeeds; on Close it writes
// what is left once more and gives the rest back with ErrClosed.
func (l *Log) writer() {
	defer close(l.done)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	var retryC <-chan time.Time
	for {
		select {
		case <-l.wake:
		case <-retryC:
		case <-l.quit:
			l.flush()
			l.giveBackAll(ErrClosed)
			return
		}
		if l.flush() {
			retry.Reset(l.set.RetryInterval)
			retryC = retry.C
		} else {
			retryC = nil
		}
	}
}

// flush writes the backlog, and during an outage an audit.resume line
// after it, in one write, then syncs. Entries that are durable get nil;
// the others stay in the backlog until Wait after their first failure,
// then get the error. flush reports whether anything is left to retry.
//
// Whole or absent: before anything else is written, the file is cut back
// to l.good, the end of its last durable line (l.dirty until that cut
// succeeds). So an entry given back with an error is not in the file, and
// a retry by its caller writes it once.
func (l *Log) flush() (again bool) {
	l.mu.Lock()
	batch := l.backlog
	l.backlog = nil
	l.mu.Unlock()
	if len(batch) == 0 && l.outage == nil && !l.dirty {
		return false
	}
	now := time.Now()
	if l.outage != nil {
		batch = append(batch, l.resumeLine())
	}
	var err error
	kept := 0 // bytes of buf that are durable
	var buf []byte
	if l.dirty {
		err = l.repair()
	}
	if err == nil {
		for _, p := range batch {
			buf = append(buf, p.line...)
		}
		kept, err = l.write(buf)
	}

	var left []*pending
	var acks []ack
	for _, p := range batch {
		written := kept >= len(p.line)
		if written {
			kept -= len(p.line)
		} else {
			kept = 0
		}
		switch {
		case p.done == nil:
			if written {
				l.outage = nil
			}
		case written:
			acks = append(acks, ack{p, nil})
		default:
			if p.failedAt.IsZero() {
				p.failedAt = now
			}
			if now.Sub(p.failedAt) >= l.set.Wait {
				acks = append(acks, ack{p, err})
			} else {
				left = append(left, p)
			}
		}
	}
	if err != nil {
		if l.outage == nil {
			l.outage = &outage{since: now, err: err}
		}
		l.outage.given += len(acks) - countNil(acks)
	}
	l.mu.Lock()
	l.backlog = append(left, l.backlog...)
	l.waiting -= len(acks)
	l.health = err
	l.mu.Unlock()
	for _, a := range acks {
		a.p.done <- a.err
	}
	return err != nil
}

type ack struct {
	p   *pending
	err error
}

func countNil(acks []ack) int {
	n := 0
	for _, a := range acks {
		if a.err == nil {
			n++
		}
	}
	return n
}

// write appends buf (whole lines) in one write and syncs. It returns how
// many bytes of buf are durable: all, or after a short write the whole
// lines it holds, the torn rest cut off. When that cut fails, nothing of
// buf counts as durable and l.dirty is set: repair cuts it all later.
func (l *Log) write(buf []byte) (int, error) {
	n, err := l.sink.Write(buf)
	if err == nil {
		if err = l.sink.Sync(); err == nil {
			l.good += int64(n)
			return n, nil
		}
		// A failed sync keeps nothing of buf: its pages may be lost.
		n = 0
	}
	err = fmt.Errorf("audit: write: %w", err)
	keep := bytes.LastIndexByte(buf[:n], '\n') + 1
	if !l.truncatable {
		return keep, err
	}
	if cerr := l.cut(l.good + int64(keep)); cerr != nil {
		l.dirty = true
		return 0, errors.Join(err, cerr)
	}
	l.good += int64(keep)
	return keep, err
}

// repair cuts the file back to its last durable line after a failed cut.
func (l *Log) repair() error {
	if err := l.cut(l.good); err != nil {
		return err
	}
	l.dirty = false
	return nil
}

// cut truncates the file to size and syncs the truncation.
func (l *Log) cut(size int64) error {
	if err := l.sink.Truncate(size); err != nil {
		return fmt.Errorf("audit: truncate: %w", err)
	}
	if err := l.sink.Sync(); err != nil {
		return fmt.Errorf("audit: truncate: %w", err)
	}
	return nil
}

// resumeLine is the audit.resume entry that ends the current outage.
func (l *Log) resumeLine() *pending {
	o := l.outage
	line, _ := json.Marshal(Event{
		Time: l.now(), Actor: "system", Action: ActionAuditResume, Resource: l.resource, Outcome: OutcomeSuccess, Instance: l.instance,
		Reason: fmt.Sprintf("writes failed from %s: %v; %d entries given back to their callers",
			o.since.UTC().Format(timeLayout), o.err, o.given),
	})
	return &pending{line: append(line, '\n')}
}

// giveBackAll empties the backlog with err.
func (l *Log) giveBackAll(err error) {
	l.mu.Lock()
	batch := l.backlog
	l.backlog = nil
	l.waiting -= len(batch)
	l.mu.Unlock()
	for _, p := range batch {
		p.done <- err
	}
}
