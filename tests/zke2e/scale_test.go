package zke2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// Test 6: scale-to-zero. 200 short-lived processes are started and stopped
// (SIGTERM) one after another, two at a time, each serving a few IDs. A
// process that exits cleanly closes its session, so its worker slot is free
// for the next one at once: slots never pile up (every process gets a slot
// below maxSlot). The counters burnt per cold start are bounded: each start
// claims one range of the generator's initial step (1000) and a few IDs do
// not reach the prefetch mark (half the range), so one cold start costs one
// ZooKeeper write and exactly 1000 counters; the bound allows 10% for claims
// whose reply was lost (burnt by design).
func TestScaleToZero(t *testing.T) {
	e := zkEnsemble(t)
	root := zkRoot(t)
	zc := zkConnect(t, e.Addrs())
	c := newHTTPClient(t, false) // no idle connections: SIGTERM drains at once

	const (
		starts     = 200
		lanes      = 2  // processes alive at once
		idsEach    = 3  // singles per process
		maxSlot    = 10 // every process must get a slot below this
		initStep   = 1000
		burnBound  = initStep * 11 / 10 // counters per cold start
		writeBound = 1.1                // counter writes per cold start
	)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	nextBefore, verBefore, err := readCounter(ctx, zc, root)
	if err != nil {
		t.Fatal(err)
	}

	l := newLedger()
	var (
		mu       sync.Mutex
		slots    = map[uint16]int{}
		readyDur []time.Duration
		failures []string
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	tooMany := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(failures) >= 10
	}
	one := func(n int) bool {
		p, err := startIdgenE(t, fmt.Sprintf("idgen-%03d", n), procOpts{zk: e.ConnectString(), root: root})
		if err != nil {
			fail("start %d: %v", n, err)
			return false
		}
		if err := p.ready(c, 30*time.Second); err != nil {
			fail("process %d: %v", n, err)
			return false
		}
		up := time.Since(p.started)
		var worker = -1
		for range idsEach {
			r := generate(ctx, c, p.url, n, 0)
			l.record(r)
			if r.status != http.StatusOK {
				fail("process %d: %s", n, describe(&r))
				continue
			}
			w := int(r.ids[0].Decompose().Worker)
			if worker >= 0 && w != worker {
				fail("process %d stamped workers %d and %d", n, worker, w)
			}
			worker = w
		}
		code, err := p.terminate(20 * time.Second)
		if err != nil || code != 0 {
			fail("process %d: SIGTERM: exit code %d, %v\n%s", n, code, err, p.excerpt(10, 30))
		}
		mu.Lock()
		defer mu.Unlock()
		readyDur = append(readyDur, up)
		if worker >= 0 {
			slots[uint16(worker)]++
			if worker >= maxSlot {
				failures = append(failures, fmt.Sprintf("process %d got worker slot %d, want < %d (slots leak)", n, worker, maxSlot))
			}
		}
		return true
	}

	start := time.Now()
	var wg sync.WaitGroup
	for lane := range lanes {
		wg.Go(func() {
			for n := lane; n < starts && ctx.Err() == nil; n += lanes {
				if !one(n) && tooMany() {
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if ctx.Err() != nil {
		t.Errorf("%d starts did not finish in time (%v)", starts, elapsed)
	}
	for _, f := range failures {
		t.Error(f)
	}
	l.check(t)
	if got := l.count(); got != starts*idsEach {
		t.Errorf("got %d IDs, want %d", got, starts*idsEach)
	}

	nextAfter, verAfter, err := readCounter(context.Background(), zc, root)
	if err != nil {
		t.Fatal(err)
	}
	if verBefore < 0 {
		verBefore = 0 // the first process created the counter at version 0
	}
	burnt := float64(nextAfter-nextBefore) / starts
	writes := float64(verAfter-verBefore) / starts
	if len(readyDur) == 0 {
		t.Fatal("no process became ready")
	}
	slices.Sort(readyDur)
	t.Logf("%d cold starts in %v (%v each with %d alive at once); start to ready: median %v, max %v",
		starts, elapsed.Round(time.Millisecond), (elapsed / starts * lanes).Round(time.Millisecond), lanes,
		readyDur[len(readyDur)/2].Round(time.Millisecond), readyDur[len(readyDur)-1].Round(time.Millisecond))
	t.Logf("worker slots used: %v", slots)
	t.Logf("counter: next %d -> %d, version %d -> %d: %.1f counters burnt and %.2f ZooKeeper counter writes per cold start",
		nextBefore, nextAfter, verBefore, verAfter, burnt, writes)
	if burnt > burnBound {
		t.Errorf("%.1f counters burnt per cold start, want <= %d", burnt, burnBound)
	}
	if writes > writeBound {
		t.Errorf("%.2f counter writes per cold start, want <= %.1f", writes, writeBound)
	}
}
