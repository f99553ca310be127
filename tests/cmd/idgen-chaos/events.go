package main

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idgen/idgen/shared/platform/backoff"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/idgen/idgen/functions/failurestream"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/saga"
)

// nullShard is the shard of the IDs of null compensations: no instance
// issues in it, so its counters are never registered.
const nullShard = 7

// failureEvent is one failure envelope to deliver (and redeliver, with the
// same event_id, until Redis confirms it).
type failureEvent struct {
	id      idcodec.ID
	eventID string
	null    bool
}

// eventSender puts failure events on the stream the compensate workers
// consume (XADD, the envelope of functions/failurestream), as a durable
// producer would: each pipeline of XADDs ends with WAIT 1, and only an
// acknowledged WAIT confirms the events (a failover cannot lose them then).
// Unconfirmed events are sent again with the same event_id (a duplicate
// delivery, which the compensation must absorb). Every nullEvery it also
// sends an event for an ID never issued (a null compensation).
type eventSender struct {
	rdb       redis.UniversalClient
	stream    string
	ledger    *Ledger
	nullEvery time.Duration

	queue chan failureEvent
	seq   atomic.Uint64
	backlog

	stop context.CancelFunc
	done chan struct{}
	sent atomic.Int64 // XADDs confirmed
}

func newEventSender(sentinels []string, master string, l *Ledger, nullEvery time.Duration) *eventSender {
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs: sentinels, MasterName: master, DisableIdentity: true,
		MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: 3 * time.Second, WriteTimeout: time.Second,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	return &eventSender{rdb: rdb, stream: failurestream.DefaultStream, ledger: l, nullEvery: nullEvery,
		queue: make(chan failureEvent, 1<<16), done: make(chan struct{})}
}

// Start runs the sender until Close.
func (s *eventSender) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	go s.run(ctx)
}

// Send queues a failure event for id; twice delivers it twice (same
// event_id). It never blocks: a full queue drops the event (not recorded).
func (s *eventSender) Send(id idcodec.ID, twice bool) {
	ev := failureEvent{id: id, eventID: "evt-" + strconv.FormatUint(s.seq.Add(1), 10)}
	for range 1 + btoi(twice) {
		s.enqueue(ev)
	}
}

func (s *eventSender) enqueue(ev failureEvent) { s.offer(s.queue, ev) }

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// nullEvent is the n-th failure event for an ID never issued (a null
// compensation): worker MaxWorker of the null shard, counter 2^40+n.
func nullEvent(n uint64) failureEvent {
	id := idcodec.MustCompose(idcodec.Fields{TimestampMS: uint64(time.Now().UnixMilli()), Worker: idcodec.MaxWorker, Shard: nullShard, Counter: 1<<40 + n})
	return failureEvent{id: id, eventID: "evt-null-" + id.String(), null: true}
}

func (s *eventSender) run(ctx context.Context) {
	defer close(s.done)
	nulls := time.NewTicker(s.nullEvery)
	defer nulls.Stop()
	var resend sync.WaitGroup
	defer resend.Wait()
	for {
		var batch []failureEvent
		select {
		case <-ctx.Done():
			return
		case <-nulls.C:
			if !s.closed.Load() {
				s.enqueue(nullEvent(s.seq.Add(1)))
			}
			continue
		case ev := <-s.queue:
			batch = append(batch, ev)
		}
	fill:
		for len(batch) < 200 {
			select {
			case ev := <-s.queue:
				batch = append(batch, ev)
			default:
				break fill
			}
		}
		failed := s.deliver(ctx, batch)
		s.pending.Add(-int64(len(batch) - len(failed)))
		if len(failed) > 0 {
			resend.Go(func() {
				backoff.Sleep(ctx, 500*time.Millisecond)
				for _, ev := range failed {
					select {
					case s.queue <- ev:
					default:
						s.pending.Add(-1) // dropped: stays unconfirmed in the ledger
					}
				}
			})
		}
	}
}

// deliver sends one pipeline (XADDs then WAIT 1) and records the outcome;
// it returns the events to send again.
func (s *eventSender) deliver(ctx context.Context, batch []failureEvent) []failureEvent {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	pipe := s.rdb.Pipeline()
	adds := make([]*redis.StringCmd, len(batch))
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for i, ev := range batch {
		adds[i] = pipe.XAdd(cctx, &redis.XAddArgs{Stream: s.stream, Values: map[string]any{
			saga.FieldID: ev.id.String(), saga.FieldReason: "chaos: payment declined",
			saga.FieldEventID: ev.eventID, saga.FieldSource: "chaos", saga.FieldOccurredAt: now,
		}})
	}
	wait := pipe.Do(cctx, "WAIT", 1, 1000)
	_, _ = pipe.Exec(cctx)
	n, werr := wait.Int64()
	var failed []failureEvent
	for i, ev := range batch {
		if adds[i].Err() == nil && werr == nil && n >= 1 {
			s.ledger.Event(ev.id, eventConfirmed, ev.null)
			s.sent.Add(1)
			continue
		}
		// It may have been added (and be applied) or not.
		s.ledger.Event(ev.id, eventUnconfirmed, ev.null)
		failed = append(failed, ev)
	}
	return failed
}

// Close stops the sender.
func (s *eventSender) Close() {
	if s.stop != nil {
		s.stop()
		<-s.done
	}
	_ = s.rdb.Close()
}
