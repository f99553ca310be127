package audit

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// pending is an entry waiting to be written.
type pending struct {
	body     []byte     // its JSON object without the closing brace (see appendLine)
	done     chan error // nil for the log's own audit.resume line
	failedAt time.Time  // its first failed write; zero until then
	written  bool       // set by flush when its line is durable
}

// outage is a run of failed writes, ended by a durable audit.resume line.
type outage struct {
	since time.Time
	err   error
	given int // entries given back to their callers with the error
}

// writer writes the backlog whenever Record adds to it and, after a
// failure, every RetryInterval until a write succeeds; with a signing key
// it writes a checkpoint every CheckpointInterval in which lines were
// written. On Close it writes what is left once more, and a checkpoint,
// and gives the rest back with ErrClosed.
func (l *Log) writer() {
	defer close(l.done)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	var retryC, tickC <-chan time.Time
	if l.set.SigningKey != nil {
		tick := time.NewTicker(l.set.CheckpointInterval)
		defer tick.Stop()
		tickC = tick.C
	}
	for {
		checkpoint := false
		select {
		case <-l.wake:
		case <-retryC:
		case <-tickC:
			checkpoint = true
		case <-l.quit:
			l.flush(true)
			l.giveBackAll(ErrClosed)
			return
		}
		if l.flush(checkpoint) {
			retry.Reset(l.set.RetryInterval)
			retryC = retry.C
		} else {
			retryC = nil
		}
	}
}

// segment is one line of a write: an entry, the log's audit.resume line,
// or a checkpoint (p nil).
type segment struct {
	p     *pending
	cp    *Checkpoint
	n     int   // bytes of the line
	after chain // the chain once the line is durable
}

// flush writes the backlog, and during an outage an audit.resume line
// after it, in one write, then syncs. With a signing key it adds a
// checkpoint after every CheckpointEvery lines of the chain, and at the
// end when checkpoint is set and lines were written since the last one.
// Entries that are durable get nil; the others stay in the backlog until
// Wait after their first failure, then get the error. flush reports
// whether anything is left to retry.
//
// Whole or absent: before anything else is written, the file is cut back
// to l.good, the end of its last durable line (l.dirty until that cut
// succeeds). So an entry given back with an error is not in the file, and
// a retry by its caller writes it once. The chain advances with l.good:
// only over the lines that are durable.
func (l *Log) flush(checkpoint bool) (again bool) {
	l.mu.Lock()
	batch := l.backlog
	l.backlog = nil
	l.mu.Unlock()
	signing := l.set.SigningKey != nil
	checkpoint = checkpoint && signing && l.chain.since > 0
	if len(batch) == 0 && l.outage == nil && !l.dirty && !checkpoint {
		return false
	}
	now := time.Now()
	if l.outage != nil {
		batch = append(batch, l.resumeLine())
	}
	var err error
	if l.dirty {
		err = l.repair()
	}
	if err == nil {
		segs := l.segs[:0]
		buf := l.buf[:0]
		c := l.chain
		for _, p := range batch {
			start := len(buf)
			buf = c.appendLine(buf, p.body)
			c.since++
			segs = append(segs, segment{p: p, n: len(buf) - start, after: c})
			if signing && c.since >= l.set.CheckpointEvery {
				buf, segs = l.appendCheckpoint(buf, segs, &c)
			}
		}
		if checkpoint && c.since > 0 {
			buf, segs = l.appendCheckpoint(buf, segs, &c)
		}
		var kept int // bytes of buf that are durable
		kept, err = l.write(buf)
		for _, s := range segs {
			if kept < s.n {
				break
			}
			kept -= s.n
			l.chain = s.after
			if s.p != nil {
				s.p.written = true
			}
			if s.cp != nil && l.set.Checkpoint != nil {
				l.set.Checkpoint(*s.cp)
			}
		}
		l.segs, l.buf = segs[:0], buf[:0]
		if cap(l.buf) > maxKeptBuf {
			l.buf = nil
		}
	}

	var left []*pending
	var acks []ack
	for _, p := range batch {
		switch {
		case p.done == nil:
			if p.written {
				l.outage = nil
			}
		case p.written:
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
	if err != nil {
		l.health.Store(&err)
	} else {
		l.health.Store(nil)
	}
	l.mu.Unlock()
	for _, a := range acks {
		a.p.done <- a.err
	}
	return err != nil
}

// maxKeptBuf bounds the write buffer flush keeps for the next write.
const maxKeptBuf = 1 << 20

// appendCheckpoint appends a signed checkpoint of c (its last line) as
// the chain's next line.
func (l *Log) appendCheckpoint(buf []byte, segs []segment, c *chain) ([]byte, []segment) {
	t := l.now()
	cp := &Checkpoint{Writer: c.writer, Seq: c.seq, Hash: hex.EncodeToString(c.hash[:]), Time: t.UTC().Format(timeLayout)}
	cp.sign(l.set.SigningKey, l.set.KeyID)
	ev, _ := json.Marshal(Event{
		Time: t, Actor: "system", Action: ActionAuditCheckpoint, Resource: l.resource, Outcome: OutcomeSuccess, Instance: l.instance,
		Reason: fmt.Sprintf("lines 1-%d of writer %s", c.seq, c.writer),
	})
	cpJSON, _ := json.Marshal(cp)
	body := append(append(openBody(ev), `,"checkpoint":`...), cpJSON...)
	start := len(buf)
	buf = c.appendLine(buf, body)
	c.since = 0
	return buf, append(segs, segment{cp: cp, n: len(buf) - start, after: *c})
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
	return &pending{body: openBody(line)}
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
