package failurestream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/idgen/idgen/shared/platform/backoff"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/saga"
)

// Causes of a dead-letter move (the metric's label).
const (
	causeMalformed     = "malformed"
	causeMaxDeliveries = "max_deliveries"
	causePermanent     = "permanent"
)

// Fields a dead-letter entry adds to the original ones.
const (
	FieldError      = "error"
	FieldDeliveries = "deliveries"
	FieldOriginalID = "original_id"
	FieldConsumer   = "consumer"
	FieldCause      = "cause"
)

// ensureGroup creates the consumer group (and the stream) unless it exists.
// A new group starts at the beginning of the stream: failures reported
// before the first worker ran are not skipped.
func (w *Worker) ensureGroup(ctx context.Context) error {
	err := w.rdb.XGroupCreateMkStream(ctx, w.cfg.Stream, w.cfg.Group, "0").Err()
	if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
		return fmt.Errorf("failurestream: create group %s of %s: %w", w.cfg.Group, w.cfg.Stream, err)
	}
	return nil
}

// reader is the read position of Run's loop.
type reader struct {
	ownCursor   string // own pending entries left from an earlier run ("" when done)
	claimCursor string // XAUTOCLAIM scan position ("0-0": a scan is complete)
	lastScan    time.Time
}

// next returns up to n deliveries: first this consumer's own pending
// entries (a restart under the same name), then entries idle past
// ClaimIdle at other consumers (a scan every ClaimIdle/2), then new ones.
func (w *Worker) next(ctx context.Context, rd *reader, n int) ([]entry, error) {
	if rd.ownCursor != "" {
		msgs, err := w.readGroup(ctx, rd.ownCursor, n, -1)
		if err != nil {
			return nil, err
		}
		if len(msgs) == 0 {
			rd.ownCursor = ""
		} else {
			rd.ownCursor = msgs[len(msgs)-1].ID
			w.log.Info("resuming own pending entries", zap.Int("entries", len(msgs)))
			return w.withDeliveries(ctx, msgs)
		}
	}
	if rd.claimCursor != "0-0" || time.Since(rd.lastScan) >= w.cfg.ClaimIdle/2 {
		msgs, cursor, err := w.rdb.XAutoClaim(ctx, &redis.XAutoClaimArgs{
			Stream: w.cfg.Stream, Group: w.cfg.Group, Consumer: w.cfg.Consumer,
			MinIdle: w.cfg.ClaimIdle, Start: rd.claimCursor, Count: int64(n),
		}).Result()
		if err != nil {
			return nil, w.groupErr(ctx, fmt.Errorf("XAUTOCLAIM: %w", err))
		}
		rd.claimCursor = cursor
		if cursor == "0-0" {
			rd.lastScan = time.Now()
		}
		if len(msgs) > 0 {
			w.m.reclaimed.Add(float64(len(msgs)))
			w.log.Info("took over entries idle at other consumers", zap.Int("entries", len(msgs)), zap.Duration("claim_idle", w.cfg.ClaimIdle))
			return w.withDeliveries(ctx, msgs)
		}
	}
	// Block no longer than until the next scan is due.
	block := min(w.cfg.Block, max(time.Until(rd.lastScan.Add(w.cfg.ClaimIdle/2)), time.Millisecond))
	msgs, err := w.readGroup(ctx, ">", n, block)
	if err != nil {
		return nil, err
	}
	out := make([]entry, 0, len(msgs))
	for _, m := range msgs {
		if w.enter(m.ID) {
			out = append(out, entry{msg: m, deliveries: 1})
		}
	}
	return out, nil
}

// readGroup runs XREADGROUP from id ("0": own pending, ">": new); block < 0
// means no BLOCK. The read is not cancelled by ctx (entries it delivers are
// processed even during shutdown); Block bounds it.
func (w *Worker) readGroup(ctx context.Context, id string, n int, block time.Duration) ([]redis.XMessage, error) {
	streams, err := w.rdb.XReadGroup(context.WithoutCancel(ctx), &redis.XReadGroupArgs{
		Group: w.cfg.Group, Consumer: w.cfg.Consumer, Streams: []string{w.cfg.Stream, id}, Count: int64(n), Block: block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, w.groupErr(ctx, fmt.Errorf("XREADGROUP: %w", err))
	}
	if len(streams) == 0 {
		return nil, nil
	}
	return streams[0].Messages, nil
}

// groupErr recreates a consumer group that vanished (stream deleted).
func (w *Worker) groupErr(ctx context.Context, err error) error {
	if redis.HasErrorPrefix(errors.Unwrap(err), "NOGROUP") {
		w.log.Warn("consumer group missing; creating it again", zap.Error(err))
		if cerr := w.ensureGroup(ctx); cerr != nil {
			return errors.Join(err, cerr)
		}
	}
	return err
}

// withDeliveries looks up the delivery count of claimed or re-read entries
// (XPENDING of each, in one pipeline) and leaves out entries this worker
// is already processing.
func (w *Worker) withDeliveries(ctx context.Context, msgs []redis.XMessage) ([]entry, error) {
	msgs = slices.DeleteFunc(msgs, func(m redis.XMessage) bool { return !w.enter(m.ID) })
	if len(msgs) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.XPendingExtCmd, len(msgs))
	_, err := w.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, m := range msgs {
			cmds[i] = p.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: w.cfg.Stream, Group: w.cfg.Group, Start: m.ID, End: m.ID, Count: 1})
		}
		return nil
	})
	if err != nil {
		for _, m := range msgs {
			w.unflight(m.ID)
		}
		return nil, fmt.Errorf("XPENDING: %w", err)
	}
	out := make([]entry, 0, len(msgs))
	for i, m := range msgs {
		e := entry{msg: m, deliveries: 1}
		if p := cmds[i].Val(); len(p) == 1 {
			e.deliveries = p[0].RetryCount
		}
		out = append(out, e)
	}
	return out, nil
}

// enter marks id in flight; false when it already is.
func (w *Worker) enter(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.inflight[id] {
		return false
	}
	w.inflight[id] = true
	return true
}

// keepFresh resets, every ClaimIdle/3 until stop, the idle time of every
// entry this worker has in flight (XCLAIM JUSTID: the delivery count
// stays), so that a peer's XAUTOCLAIM takes over only the entries of a
// worker that died or stalled, never those of one that is slow or
// retrying: each takeover counts a delivery towards MaxDeliveries, and a
// live worker's entries would otherwise reach the dead-letter stream
// while it is still applying them (a retry's backoff or one attempt
// waiting on a lease can outlast ClaimIdle). An entry a peer took over
// while this worker was stalled comes back with the refresh; both attempts
// may run, and the compensation core makes them one effect and one audit
// entry.
func (w *Worker) keepFresh(ctx context.Context, stop <-chan struct{}) {
	t := time.NewTicker(max(w.cfg.ClaimIdle/3, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done(): // the drain timed out: the attempts are stopping
			return
		case <-t.C:
		}
		w.mu.Lock()
		ids := make([]string, 0, len(w.inflight))
		for id := range w.inflight {
			ids = append(ids, id)
		}
		w.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, max(w.cfg.ClaimIdle/3, time.Second))
		err := w.rdb.XClaimJustID(cctx, &redis.XClaimArgs{
			Stream: w.cfg.Stream, Group: w.cfg.Group, Consumer: w.cfg.Consumer, MinIdle: 0, Messages: ids,
		}).Err()
		cancel()
		if err != nil && !errors.Is(err, redis.Nil) {
			w.log.Warn("refreshing the entries in flight failed", zap.Int("entries", len(ids)), zap.Error(err))
		}
	}
}

// deadLetter moves an entry to the dead-letter stream with its error and
// delivery count, acknowledges it in the same MULTI (outside Cluster mode),
// and audits the move. The move is retried until it succeeds or ctx ends
// (the entry then stays pending and is moved on a later delivery).
func (w *Worker) deadLetter(ctx context.Context, e entry, ev saga.Event, cause string, reason error) {
	defer w.unflight(e.msg.ID)
	keys := make([]string, 0, len(e.msg.Values))
	for k := range e.msg.Values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	values := make([]any, 0, 2*len(keys)+10)
	for _, k := range keys {
		switch k {
		case FieldError, FieldDeliveries, FieldOriginalID, FieldConsumer, FieldCause:
			continue // ours below
		}
		values = append(values, k, e.msg.Values[k])
	}
	msg := reason.Error()
	values = append(values, FieldError, msg, FieldCause, cause, FieldDeliveries, strconv.FormatInt(e.deliveries, 10),
		FieldOriginalID, e.msg.ID, FieldConsumer, w.cfg.Consumer)
	move := func(p redis.Pipeliner) error {
		p.XAdd(ctx, &redis.XAddArgs{Stream: w.dlq, Values: values})
		p.XAck(ctx, w.cfg.Stream, w.cfg.Group, e.msg.ID)
		return nil
	}
	for attempt := 1; ; attempt++ {
		var err error
		if w.tx {
			_, err = w.rdb.TxPipelined(ctx, move)
		} else {
			_, err = w.rdb.Pipelined(ctx, move)
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			w.log.Warn("stopping before a dead-letter move; the entry stays pending", zap.String("entry", e.msg.ID), zap.Error(err))
			return
		}
		w.log.Warn("dead-letter move failed; retrying", zap.String("entry", e.msg.ID), zap.Error(err))
		backoff.Sleep(ctx, w.backoff(attempt))
	}
	w.trim(ctx)
	w.m.processed.WithLabelValues("dead_lettered").Inc()
	w.m.deadLettered.WithLabelValues(cause).Inc()
	w.log.Warn("entry dead-lettered", zap.String("entry", e.msg.ID), zap.String("dlq", w.dlq), zap.String("cause", cause),
		zap.Int64("deliveries", e.deliveries), zap.String("error", msg))
	err := w.aud.Record(audit.Event{
		Actor: "compensate:" + w.cfg.Consumer, Action: audit.ActionDeadLetter, Resource: w.cfg.Stream + "/" + e.msg.ID,
		Outcome: audit.OutcomeFailed, Reason: truncate(msg, 512), Source: ev.Source, RequestID: truncate(ev.EventID, saga.MaxEventID),
	})
	if err != nil {
		w.log.Error("audit: record of a dead-letter move failed", zap.String("entry", e.msg.ID), zap.Error(err))
	}
}

// truncate bounds what a dead-letter audit entry quotes of the entry.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
