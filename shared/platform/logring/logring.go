// Package logring keeps the most recent structured log entries in memory so
// that the service can serve them on /logs.
//
// Invariants: the ring holds at most its capacity of entries (oldest dropped
// first); entries come out oldest first; every entry is the JSON object the
// zap encoder wrote, so /logs shows exactly what went to the log stream.
package logring

import (
	"encoding/json"
	"sync"

	"go.uber.org/zap/buffer"
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
	buf  []Entry
	next int
	full bool
}

// New returns a ring holding up to size entries (default 1000 when size ≤ 0).
func New(size int) *Ring {
	if size <= 0 {
		size = 1000
	}
	return &Ring{buf: make([]Entry, size)}
}

func (r *Ring) add(e Entry) {
	r.mu.Lock()
	r.buf[r.next] = e
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
	r.mu.Unlock()
}

// Query selects entries.
type Query struct {
	MinLevel  zapcore.Level // entries at or above it; the zero value is info
	RequestID string        // only this request ("" = any)
	Limit     int           // newest Limit matches (≤ 0 = all)
}

// Entries returns the newest matches of q, oldest first.
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
		e := r.buf[(r.next-1-i+len(r.buf))%len(r.buf)]
		if e.Level < q.MinLevel || (q.RequestID != "" && e.RequestID != q.RequestID) {
			continue
		}
		out = append(out, e)
		if q.Limit > 0 && len(out) == q.Limit {
			break
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// RequestIDKey is the field name that Entries can filter on.
const RequestIDKey = "request_id"

// Core returns a zapcore.Core that copies every entry it is given, encoded
// by enc, into the ring. Tee it with the stderr core.
func (r *Ring) Core(enc zapcore.Encoder, level zapcore.LevelEnabler) zapcore.Core {
	return &core{ring: r, enc: enc, LevelEnabler: level}
}

type core struct {
	zapcore.LevelEnabler
	ring   *Ring
	enc    zapcore.Encoder
	fields []zapcore.Field
}

func (c *core) With(fields []zapcore.Field) zapcore.Core {
	clone := c.enc.Clone()
	for i := range fields {
		fields[i].AddTo(clone)
	}
	return &core{
		LevelEnabler: c.LevelEnabler,
		ring:         c.ring,
		enc:          clone,
		fields:       append(append([]zapcore.Field(nil), c.fields...), fields...),
	}
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
	c.ring.add(Entry{Level: e.Level, RequestID: requestID(c.fields, fields), JSON: trim(buf)})
	buf.Free()
	return nil
}

func (c *core) Sync() error { return nil }

func requestID(sets ...[]zapcore.Field) string {
	for _, fs := range sets {
		for _, f := range fs {
			if f.Key == RequestIDKey && f.Type == zapcore.StringType {
				return f.String
			}
		}
	}
	return ""
}

// trim copies the encoded line without its trailing newline.
func trim(b *buffer.Buffer) json.RawMessage {
	s := b.Bytes()
	for len(s) > 0 && (s[len(s)-1] == '\n') {
		s = s[:len(s)-1]
	}
	return append(json.RawMessage(nil), s...)
}
