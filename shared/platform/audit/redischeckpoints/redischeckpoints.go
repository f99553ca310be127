// Package redischeckpoints keeps the audit log's signed checkpoints in a
// Redis stream, the second place of the audit threat model
// (docs/security.md): a host whose log file is rewritten still has, in
// Redis, the checkpoints that bind what the file held. Every writer (each
// instance, each compensate worker) adds to the one stream; `idgen audit
// verify --checkpoints` reads an export of it:
//
//	redis-cli --raw XRANGE idgen:audit:checkpoints - + | grep '^{' > kept.jsonl
//
// The audit log hands each checkpoint over on its writer goroutine, so the
// shipper never blocks it: checkpoints wait in a bounded queue, a full
// queue drops (and logs) the newest, and a failed XADD is retried a few
// times. A dropped or unshipped checkpoint weakens only what the second
// place proves; the file's own chain and signatures stay whole.
package redischeckpoints

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/platform/backoff"
)

// Stream is the stream the checkpoints go to.
const Stream = "idgen:audit:checkpoints"

const (
	// maxLen trims the stream approximately to this many checkpoints (at
	// one a minute per writer, years of a small fleet).
	maxLen = 1_000_000
	// queue is how many checkpoints may wait for Redis.
	queue = 256
	// attempts of one XADD.
	attempts = 5
	// closeWait bounds how long Close waits for the queue to drain.
	closeWait = 5 * time.Second
)

// Shipper adds checkpoints to Stream.
type Shipper struct {
	rdb       redis.Cmdable
	log       *zap.Logger
	ch        chan audit.Checkpoint
	done      chan struct{}
	stop      context.CancelFunc
	closeWait time.Duration
	dropped   atomic.Int64
}

// New starts a shipper writing with rdb.
func New(rdb redis.Cmdable, log *zap.Logger) *Shipper {
	ctx, stop := context.WithCancel(context.Background())
	s := &Shipper{rdb: rdb, log: log, ch: make(chan audit.Checkpoint, queue), done: make(chan struct{}), stop: stop, closeWait: closeWait}
	go s.run(ctx)
	return s
}

// Hook is audit.Settings.Checkpoint: it queues cp and returns at once.
func (s *Shipper) Hook(cp audit.Checkpoint) {
	select {
	case s.ch <- cp:
	default:
		// Logged at the 1st, 2nd, 4th, 8th... drop: a stalled Redis does
		// not flood the log.
		if n := s.dropped.Add(1); n&(n-1) == 0 {
			s.log.Warn("audit checkpoint not kept in Redis: the queue is full", zap.String("writer", cp.Writer), zap.Uint64("seq", cp.Seq), zap.Int64("dropped_total", n))
		}
	}
}

// Close ships what is queued (the audit log's last checkpoint, written at
// its Close, included: close the log first), within a few seconds, and
// stops.
func (s *Shipper) Close() {
	close(s.ch)
	t := time.NewTimer(s.closeWait)
	defer t.Stop()
	select {
	case <-s.done:
	case <-t.C:
		s.stop()
		<-s.done
	}
	s.stop()
}

func (s *Shipper) run(ctx context.Context) {
	defer close(s.done)
	unshipped := 0
	defer func() {
		if unshipped > 0 {
			s.log.Warn("audit checkpoints not kept in Redis: the shipper stopped before Redis took them", zap.Int("checkpoints", unshipped))
		}
	}()
	for cp := range s.ch {
		if ctx.Err() != nil {
			unshipped++
			continue
		}
		b, err := json.Marshal(cp)
		if err != nil {
			continue // a struct of strings and a number always encodes
		}
		for attempt := range attempts {
			err = s.rdb.XAdd(ctx, &redis.XAddArgs{Stream: Stream, MaxLen: maxLen, Approx: true, Values: []string{"checkpoint", string(b)}}).Err()
			if err == nil || !backoff.Sleep(ctx, backoff.Equal(attempt, 50*time.Millisecond, 2*time.Second)) {
				break
			}
		}
		switch {
		case err != nil && ctx.Err() != nil:
			unshipped++
		case err != nil:
			s.log.Warn("audit checkpoint not kept in Redis", zap.String("writer", cp.Writer), zap.Uint64("seq", cp.Seq), zap.Error(err))
		}
	}
}
