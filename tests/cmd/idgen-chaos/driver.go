package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idgen/idgen/shared/platform/backoff"

	"github.com/idgen/idgen/client"

	"golang.org/x/time/rate"

	"github.com/idgen/idgen/shared/idcodec"
)

// driver is the load: a bounded rate of IDs through HAProxy (singles and
// batches, some with timeout_ms), commits, failure events, and, during
// some faults, direct load on one instance, all through the Go client.
// Every /generate carries an Idempotency-Key: the client's own (new for
// each request, so a retry by HAProxy answers the IDs of the first
// attempt), or one of the driver's that it sends again and replays. Every
// answer goes to the ledger.
type driver struct {
	cfg   *Config
	lbURL string
	// lb (bounded by HAProxy's worst case) and direct carry /generate:
	// tapped, so the checks see each answer as it came (wire.go).
	lb     *http.Client
	direct *http.Client
	// api is the Go client on HAProxy for the saga's calls, one attempt a
	// call (the driver decides what to retry).
	api     *client.Client
	ledger  *Ledger
	events  failureSink
	limiter *rate.Limiter
	logf    func(string, ...any)

	// via names the main load in the results: "lb" (through HAProxy), or
	// the one instance it is sent to. shard is the shard every ID of an
	// answer must carry.
	via   string
	shard uint8
	// commitAttempts bounds the tries of one /commit while its answer is
	// not definite.
	commitAttempts int

	seq atomic.Uint64 // request IDs and keys

	bg     sync.WaitGroup // replays and keyed retries
	bgSem  chan struct{}
	bgCtx  context.Context
	bgStop context.CancelFunc

	load struct {
		stop context.CancelFunc
		wg   sync.WaitGroup
	}
}

// failureSink takes the failure events of the saga: the Redis stream
// (eventSender) in the cluster, POST /compensate (httpSink) for an
// embedded instance.
type failureSink interface {
	Send(id idcodec.ID, twice bool)
}

var (
	_ failureSink = (*eventSender)(nil)
	_ failureSink = (*httpSink)(nil)
)

// shard is the shard every cluster instance runs (the default).
const shard = 0

// newDriver returns the load through HAProxy at lbURL; via, shard and
// commitAttempts can be changed before Start.
func newDriver(cfg *Config, lbURL string, lb, direct *http.Client, l *Ledger, ev failureSink, logf func(string, ...any)) *driver {
	burst := max(int(cfg.Rate/5), 1000)
	d := &driver{cfg: cfg, lbURL: lbURL, lb: tapped(lb), direct: tapped(direct), ledger: l, events: ev, logf: logf,
		via: "lb", shard: shard, commitAttempts: 3,
		limiter: rate.NewLimiter(rate.Limit(cfg.Rate), burst), bgSem: make(chan struct{}, 256)}
	d.bgCtx, d.bgStop = context.WithCancel(context.Background())
	api, err := client.New(client.Config{Endpoints: []string{lbURL}, HTTPClient: lb, Retry: client.RetryPolicy{MaxAttempts: 1}})
	if err != nil {
		panic(fmt.Sprintf("chaos: the client of %s: %v", lbURL, err)) // a URL the harness made
	}
	d.api = api
	return d
}

// Start runs the load workers until Stop.
func (d *driver) Start(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	d.load.stop = cancel
	for w := range d.cfg.Workers {
		d.load.wg.Go(func() {
			rng := rand.New(rand.NewPCG(d.cfg.Seed, uint64(w)))
			for ctx.Err() == nil {
				d.step(ctx, rng)
			}
		})
	}
}

// Stop ends the load, then lets replays and keyed retries finish (up to
// grace).
func (d *driver) Stop(grace time.Duration) {
	if d.load.stop != nil {
		d.load.stop()
	}
	d.load.wg.Wait()
	done := make(chan struct{})
	go func() { d.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		d.bgStop()
		<-done
	}
	d.bgStop()
}

// step performs one action of the mix.
func (d *driver) step(ctx context.Context, rng *rand.Rand) {
	p := rng.IntN(100)
	switch {
	case p < 45: // batch
		d.genAndSaga(ctx, rng, 50+rng.IntN(151), 0, "")
	case p < 70: // single
		d.genAndSaga(ctx, rng, 0, 0, "")
	case p < 82: // batch with an Idempotency-Key
		d.genAndSaga(ctx, rng, 1+rng.IntN(20), 0, "chaos-key-"+strconv.FormatUint(d.seq.Add(1), 10))
	case p < 92: // with a deadline: the sweeper compensates what is not committed
		n := 0
		if rng.IntN(2) == 0 {
			n = 5
		}
		d.genAndSaga(ctx, rng, n, time.Duration(2000+rng.IntN(4000))*time.Millisecond, "")
	default: // a batch whose IDs go through the saga
		d.genAndSaga(ctx, rng, 50+rng.IntN(51), 0, "")
	}
}

// genAndSaga issues through HAProxy and follows some IDs through the saga.
func (d *driver) genAndSaga(ctx context.Context, rng *rand.Rand, count int, timeout time.Duration, key string) {
	if d.limiter.WaitN(ctx, max(count, 1)) != nil {
		return
	}
	a := d.generate(ctx, d.lb, d.lbURL, d.via, 0, -1, count, timeout, key)
	if a.status != http.StatusOK || a.bad != "" {
		if key != "" && ctx.Err() == nil {
			d.later(time.Second, func(ctx context.Context) { d.retryKey(ctx, count, key, 1) })
		}
		backoff.Sleep(ctx, 20*time.Millisecond)
		return
	}
	if key != "" && rng.IntN(10) < 3 {
		d.later(time.Duration(rng.IntN(2000))*time.Millisecond, func(ctx context.Context) {
			d.generate(ctx, d.lb, d.lbURL, d.via, 0, -1, count, 0, key)
		})
	}
	ids := a.ids
	switch {
	case timeout > 0:
		// Half are committed before their deadline, the rest are left to
		// the sweeper.
		if rng.IntN(2) == 0 {
			for _, id := range ids[:min(2, len(ids))] {
				d.commit(ctx, id)
			}
		}
	case key != "":
	case count == 0:
		switch p := rng.IntN(100); {
		case p < 10:
			d.commit(ctx, ids[0])
		case p < 14:
			d.events.Send(ids[0], false)
		case p < 16:
			d.commit(ctx, ids[0])
			d.events.Send(ids[0], false)
		case p < 17:
			d.events.Send(ids[0], true) // delivered twice
		}
	case count <= 100 && len(ids) >= 3: // the saga batch of step
		d.commit(ctx, ids[0])
		d.commit(ctx, ids[1])
		d.events.Send(ids[1], false)
		d.events.Send(ids[len(ids)-1], rng.IntN(4) == 0)
	}
}

// retryKey resends a keyed request whose earlier attempt got no 200, as a
// client would, up to 6 attempts.
func (d *driver) retryKey(ctx context.Context, count int, key string, attempt int) {
	a := d.generate(ctx, d.lb, d.lbURL, d.via, 0, -1, count, 0, key)
	if (a.status != http.StatusOK || a.bad != "") && attempt < 6 && ctx.Err() == nil {
		d.later(time.Duration(attempt)*time.Second, func(ctx context.Context) { d.retryKey(ctx, count, key, attempt+1) })
	}
}

// later runs fn after delay in the background (bounded: past 256 pending
// tasks, new ones are dropped).
func (d *driver) later(delay time.Duration, fn func(ctx context.Context)) {
	select {
	case d.bgSem <- struct{}{}:
	default:
		return
	}
	d.bg.Go(func() {
		defer func() { <-d.bgSem }()
		if backoff.Sleep(d.bgCtx, delay) {
			fn(d.bgCtx)
		}
	})
}

// generate sends one /generate to base with the Go client and records the
// answer. via is "lb" or the instance name; life and stream identify
// direct requests. key is the request's Idempotency-Key; "" lets the
// client make one (a UUIDv7), which is never sent again.
func (d *driver) generate(ctx context.Context, c *http.Client, base, via string, life, stream, count int, timeout time.Duration, key string) answer {
	r := result{kind: "generate", via: via, life: life, stream: stream}
	api, err := oneCall(c, base)
	if err != nil {
		return answer{err: err}
	}
	tctx, tap := withTap(ctx)
	req := client.GenerateRequest{Timeout: timeout, IdempotencyKey: key}
	r.sent = time.Now()
	var got *client.Batch
	if count == 0 {
		var g *client.Generated
		if g, err = api.Generate(tctx, req); err == nil {
			got = &client.Batch{IDs: []string{g.ID}, Replayed: g.Replayed}
		}
	} else {
		got, err = api.GenerateN(tctx, count, req)
	}
	r.recv = time.Now()
	a := answer{err: err}
	if w, ok := tap.last(); ok {
		a = parseGenerate(w, count, d.shard)
	}
	if ctx.Err() != nil && a.status == 0 {
		return a // cut by the end of the load: not an answer
	}
	if via != "lb" {
		a.backend = via // asked directly: no HAProxy to name it
	}
	r.status, r.fromLB, r.backend = a.status, a.fromLB, a.backend
	if a.err != nil {
		r.err = a.err.Error()
	}
	if a.bad != "" {
		d.ledger.violate(vBadAnswer, "%s /generate (count %d, key %q) at %s: %s", via, count, key, r.sent.Format(timeFmt), a.bad)
	} else if a.status != 0 && !a.fromLB && !contractStatus(a.status) {
		d.ledger.violate(vBadAnswer, "%s /generate (count %d, key %q) at %s: %d %s, want 200 or 503", via, count, key, r.sent.Format(timeFmt), a.status, a.code)
		a.bad = "status"
	}
	if msg := clientDisagrees(a, got, err); msg != "" {
		d.ledger.violate(vClient, "%s /generate (count %d, key %q) at %s: %s", via, count, key, r.sent.Format(timeFmt), msg)
	}
	if a.status == http.StatusOK && a.bad == "" {
		r.ids = len(a.ids)
		r.minTS, r.maxTS = a.ids[0].Decompose().TimestampMS, a.ids[len(a.ids)-1].Decompose().TimestampMS
		d.ledger.Acknowledge(a.ids, key, timeout > 0, r.recv, a.backend)
	}
	d.ledger.addResult(r)
	return a
}

// oneCall returns a Go client of base for one call: one attempt (the
// driver decides what to retry, and each attempt is an answer of the
// ledger), bounded by c's Timeout, and no memory of earlier calls: a
// Client holds an endpoint back for a 503's Retry-After, which would
// pause every worker of the load after one 503 where the load keeps its
// own pace through the faults.
func oneCall(c *http.Client, base string) (*client.Client, error) {
	return client.New(client.Config{Endpoints: []string{base}, HTTPClient: c,
		Retry: client.RetryPolicy{MaxAttempts: 1}, AttemptTimeout: c.Timeout})
}

// clientDisagrees says how the Go client's result of a /generate (got or
// err) differs from the answer on the wire, "" when it does not: a
// contract 200 is the client's IDs, in order, with its Replayed; a status
// outside 2xx is its error (another 2xx is a bad answer already).
func clientDisagrees(a answer, got *client.Batch, err error) string {
	switch {
	case a.status == http.StatusOK && a.bad == "" && err != nil:
		return fmt.Sprintf("the client failed on a contract 200: %v", err)
	case a.status == http.StatusOK && a.bad == "":
		if len(got.IDs) != len(a.ids) {
			return fmt.Sprintf("the client returned %d IDs of a 200 with %d", len(got.IDs), len(a.ids))
		}
		for i, id := range a.ids {
			if got.IDs[i] != id.String() {
				return fmt.Sprintf("the client returned %s where the 200 has %s", got.IDs[i], id)
			}
		}
		if got.Replayed != a.replayed {
			return fmt.Sprintf("the client says replayed %v of a 200 that says %v", got.Replayed, a.replayed)
		}
	case a.status != 0 && (a.status < 200 || a.status > 299) && err == nil:
		return fmt.Sprintf("the client returned IDs of a %d", a.status)
	}
	return ""
}

// commit sends /commit for an acknowledged ID through HAProxy, trying up
// to commitAttempts times while the answer is not definite (a client's
// retry is what writes the audit entry of a commit stored but answered
// 503).
func (d *driver) commit(ctx context.Context, id idcodec.ID) {
	for attempt := 0; attempt < d.commitAttempts && ctx.Err() == nil; attempt++ {
		_, err := d.api.Commit(ctx, id.String())
		var apiErr *client.Error
		switch {
		case err == nil:
			d.ledger.Commit(id, commitOK)
			return
		case ctx.Err() != nil:
			d.ledger.Commit(id, commitUnknown)
			return
		case errors.Is(err, client.ErrConflict), errors.Is(err, client.ErrExpired):
			d.ledger.Commit(id, commitConflict)
			return
		case errors.Is(err, client.ErrUnavailable), !errors.As(err, &apiErr), apiErr.Message == "" && apiErr.RequestID == "":
			// 503, no answer, or an answer HAProxy made (no API error
			// body, no request ID): the commit may or may not be stored.
			d.ledger.Commit(id, commitUnknown)
		default:
			d.ledger.Commit(id, commitUnknown)
			d.ledger.violate(vBadAnswer, "/commit of acknowledged %s: %d %s (want 200, 409 or 503)", id, apiErr.Status, apiErr.Code)
			return
		}
		backoff.Sleep(ctx, min(time.Duration(attempt+1)*500*time.Millisecond, 2*time.Second))
	}
}

// directLoad runs workers goroutines sending /generate straight to in at
// a bounded rate (IDs/s) until ctx ends. Each worker is a sequential stream
// (its next request leaves after the previous answer), for the timestamp
// order check.
func (d *driver) directLoad(ctx context.Context, in *instance, workers, count int, idsPerSec float64) *sync.WaitGroup {
	lim := rate.NewLimiter(rate.Limit(idsPerSec), max(count, 1)*workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			stream := int(d.seq.Add(1))
			for ctx.Err() == nil {
				if lim.WaitN(ctx, max(count, 1)) != nil {
					return
				}
				a := d.generate(ctx, d.direct, in.url, in.name, in.Life(), stream, count, 0, "")
				if a.status != http.StatusOK {
					backoff.Sleep(ctx, 50*time.Millisecond)
				}
			}
		})
	}
	return &wg
}
