package main

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idgen/idgen/client"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/backoff"
	"github.com/idgen/idgen/shared/platform/ticker"
)

// httpSink delivers the failure events of an embedded instance's saga as a
// client does: POST /compensate (the Go client's Compensate, one attempt a
// call) with the envelope's event_id, sent again with the same event_id
// while the answer is not 200 (up to sinkAttempts, backing off to 2 s), so
// that a compensation stored but answered 503 gets its retry. A 200 confirms the event (the compensation is stored);
// anything short of it leaves it unconfirmed (it may be stored). Every
// nullEvery it also compensates an ID never issued (a null compensation,
// in nullShard). Only 200 and 503 are answers within the contract.
type httpSink struct {
	url    string
	client *http.Client
	ledger *Ledger
	name   string

	queue chan failureEvent
	seq   atomic.Uint64
	backlog
	sent    atomic.Int64 // compensations answered 200
	retried atomic.Int64 // attempts after a first one was not answered 200

	stop context.CancelFunc
	wg   sync.WaitGroup
}

// sinkAttempts bounds the tries of one event: they span about 20 s,
// longer than any outage of the embedded phase.
const sinkAttempts = 14

func newHTTPSink(name, url string, c *http.Client, l *Ledger) *httpSink {
	return &httpSink{url: url, client: tapped(c), ledger: l, name: name, queue: make(chan failureEvent, 1<<14)}
}

// Start runs workers senders and the null compensations until Close.
func (s *httpSink) Start(workers int, nullEvery time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	for range workers {
		s.wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case ev := <-s.queue:
					s.deliver(ctx, ev)
					s.pending.Add(-1)
				}
			}
		})
	}
	s.wg.Go(func() {
		ticker.Every(ctx, nullEvery, func() {
			s.enqueue(nullEvent(s.seq.Add(1)))
		})
	})
}

// Send queues a compensation of id; twice delivers it twice (same
// event_id, concurrently). A full queue drops it (not recorded).
func (s *httpSink) Send(id idcodec.ID, twice bool) {
	ev := failureEvent{id: id, eventID: s.name + "-evt-" + strconv.FormatUint(s.seq.Add(1), 10)}
	for range 1 + btoi(twice) {
		s.enqueue(ev)
	}
}

func (s *httpSink) enqueue(ev failureEvent) { s.offer(s.queue, ev) }

// deliver sends ev until it is answered 200 or the attempts run out.
func (s *httpSink) deliver(ctx context.Context, ev failureEvent) {
	wait := 250 * time.Millisecond
	for attempt := 0; attempt < sinkAttempts && ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			s.retried.Add(1)
		}
		status, err := s.post(ctx, ev)
		switch {
		case status == http.StatusOK:
			s.ledger.Event(ev.id, eventConfirmed, ev.null)
			s.sent.Add(1)
			return
		case status == http.StatusServiceUnavailable || status == 0:
			s.ledger.Event(ev.id, eventUnconfirmed, ev.null)
		default:
			s.ledger.Event(ev.id, eventUnconfirmed, ev.null)
			s.ledger.violate(vBadAnswer, "%s /compensate of %s: %d %v (want 200 or 503)", s.name, ev.id, status, err)
			return
		}
		backoff.Sleep(ctx, wait)
		wait = min(2*wait, 2*time.Second)
	}
}

// post sends one /compensate of ev with the Go client; status 0 means
// no answer. A 503 must carry Retry-After.
func (s *httpSink) post(ctx context.Context, ev failureEvent) (int, error) {
	api, err := oneCall(s.client, s.url)
	if err != nil {
		return 0, err
	}
	tctx, tap := withTap(ctx)
	_, err = api.Compensate(tctx, ev.id.String(), "chaos: payment declined", client.WithEventID(ev.eventID), client.WithSource("chaos"))
	w, ok := tap.last()
	if !ok {
		return 0, err
	}
	if w.status == http.StatusServiceUnavailable && w.header.Get("Retry-After") == "" {
		s.ledger.violate(vBadAnswer, "%s /compensate: 503 without Retry-After", s.name)
	}
	if (w.status == http.StatusOK) != (err == nil) {
		s.ledger.violate(vClient, "%s /compensate of %s: answered %d, the client says %v", s.name, ev.id, w.status, err)
	}
	return w.status, err
}

// Close stops the senders.
func (s *httpSink) Close() {
	if s.stop != nil {
		s.stop()
		s.wg.Wait()
	}
}
