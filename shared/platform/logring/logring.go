// Package logring keeps the most recent structured log entries in memory so
// that the service can serve them on /logs.
//
// Invariants: the ring holds at most its capacity of entries (oldest dropped
// first); entries come out oldest first; every entry is the JSON object the
// zap encoder wrote, so /logs shows exactly what went to the log stream
// (WriterCore encodes a line once and gives the same bytes to both). The
// ring keeps its own copy of every line in buffers it reuses, and Entries
// returns copies, so a line costs the ring no allocation once its slot's
// buffer is large enough.
package logring

import (
	"encoding/json"
	"sync"

	"go.uber.org/zap/zapcore"
)

// Entry is one stored log line.
type Entry struct {
	Level     zapcore.Level
	RequestID string
	JSON      json.RawMessage
}

// Ring is a bounded buffer of log entries. Safe for concurrent use.
type Ring struct {
	mu   sync.Mutex
	buf  []slot
	next int
	full bool
}

// slot is one entry: data holds its request ID (ridLen bytes), then its
// line, in one array (one cache miss fewer per line than two) that the
// entries replacing it reuse.
type slot struct {
	level  zapcore.Level
	ridLen int
	data   []byte
}

func (s *slot) rid() []byte  { return s.data[:s.ridLen] }
func (s *slot) json() []byte { return s.data[s.ridLen:] }

// New returns a ring holding up to size entries (default 1000 when size ≤ 0).
func New(size int) *Ring {
	if size <= 0 {
		size = 1000
	}
	return &Ring{buf: make([]slot, size)}
}

// add copies line, without its trailing newline, into the oldest slot.
func (r *Ring) add(level zapcore.Level, rid string, line []byte) {
	for len(line) > 0 && line[len(line)-1] == '\n' {
		line = line[:len(line)-1]
	}
	r.mu.Lock()
	s := &r.buf[r.next]
	s.level, s.ridLen = level, len(rid)
	s.data = reuse(s.data, len(rid)+len(line))
	copy(s.data[copy(s.data, rid):], line)
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
	r.mu.Unlock()
}

// keepCap is the largest buffer a slot keeps for a shorter line: one long
// line (a stack trace) does not hold its memory for every line after it.
const keepCap = 4 << 10

// reuse returns b resliced to n bytes, in b's own array when it fits. A
// new array has a quarter to spare (at least 512 bytes), so that lines a
// few bytes longer than the one before them (a longer latency or port)
// still fit.
func reuse(b []byte, n int) []byte {
	if cap(b) < n || (cap(b) > keepCap && cap(b) > 2*n) {
		b = make([]byte, 0, max(512, n+n/4))
	}
	return b[:n]
}

// Query selects entries.
type Query struct {
	MinLevel  zapcore.Level // entries at or above it; the zero value is info
	RequestID string        // only this request ("" = any)
	Limit     int           // newest Limit matches (≤ 0 = all)
}

// Entries returns copies of the newest matches of q, oldest first.
func (r *Ring) Entries(q Query) []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	var out []Entry
	// Walk newest to oldest so Limit keeps the newest, then reverse.
	for i := 0; i < n; i++ {
		s := &r.buf[(r.next-1-i+len(r.buf))%len(r.buf)]
		if s.level < q.MinLevel || (q.RequestID != "" && string(s.rid()) != q.RequestID) {
			continue
		}
		out = append(out, Entry{Level: s.level, RequestID: string(s.rid()), JSON: append(json.RawMessage(nil), s.json()...)})
		if q.Limit > 0 && len(out) == q.Limit {
			break
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// RequestIDKey is the field name that Entries can filter on (a string
// field).
const RequestIDKey = "request_id"

// Core returns a zapcore.Core that copies every entry it is given, encoded
// by enc, into the ring. Tee it with a core of its own level for the log
// stream; WriterCore serves both at one level with one encoding.
func (r *Ring) Core(enc zapcore.Encoder, level zapcore.LevelEnabler) zapcore.Core {
	return &core{ring: r, enc: enc, LevelEnabler: level}
}

// WriterCore returns a zapcore.Core that encodes every entry it is given
// once, with enc, and writes the line to out and copies it into the ring:
// zapcore.NewCore(enc, out, level) teed with Core(enc, level), at the cost
// of one encoding instead of two. out must be safe for concurrent writes
// (zapcore.Lock); it is synced after an entry above error, as zap's own
// core does. A failed write to out is returned, and the line is in the
// ring all the same.
func (r *Ring) WriterCore(enc zapcore.Encoder, out zapcore.WriteSyncer, level zapcore.LevelEnabler) zapcore.Core {
	return &core{ring: r, enc: enc, out: out, LevelEnabler: level}
}

type core struct {
	zapcore.LevelEnabler
	ring *Ring
	enc  zapcore.Encoder
	out  zapcore.WriteSyncer // nil: the ring alone
	// rid is the request ID given to With ("": none yet).
	rid string
}

func (c *core) With(fields []zapcore.Field) zapcore.Core {
	clone := *c
	clone.enc = c.enc.Clone()
	for i := range fields {
		fields[i].AddTo(clone.enc)
	}
	if clone.rid == "" {
		clone.rid = requestID(fields)
	}
	return &clone
}

func (c *core) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *core) Write(e zapcore.Entry, fields []zapcore.Field) error {
	buf, err := c.enc.EncodeEntry(e, fields)
	if err != nil {
		return err
	}
	if c.out != nil {
		_, err = c.out.Write(buf.Bytes())
	}
	rid := c.rid
	if rid == "" {
		rid = requestID(fields)
	}
	c.ring.add(e.Level, rid, buf.Bytes())
	buf.Free()
	if err == nil && c.out != nil && e.Level > zapcore.ErrorLevel {
		// The process may be about to end.
		_ = c.out.Sync()
	}
	return err
}

func (c *core) Sync() error {
	if c.out == nil {
		return nil
	}
	return c.out.Sync()
}

func requestID(fields []zapcore.Field) string {
	for _, f := range fields {
		if f.Key == RequestIDKey && f.Type == zapcore.StringType {
			return f.String
		}
	}
	return ""
}
