package main

// The load loop of the end-to-end tests, which remembers every acknowledged
// ID, and the checks of the invariants on what it collected: (shard, counter)
// never repeats, every acknowledged ID is registered.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/shared/idcodec"
)

// batchSize is the count of every 4th request of the load; the other three
// ask for a single ID.
const batchSize = 100

// load issues IDs from several goroutines over keep-alive connections and
// records what the service acknowledged. It keeps going through connection
// errors (the tests kill the service under it) until stopped or until want
// IDs were acknowledged.
type load struct {
	a    api
	want int64 // stop once this many IDs were acknowledged; 0 = until Stop
	// exited, when set, reports that the service process is gone; requests
	// started after that are counted apart (they must all fail).
	exited func() bool

	l     *proc.Load
	ids   [][]string // per worker, in acknowledgement order
	reqs  []int      // per worker: requests sent
	total atomic.Int64

	mu         sync.Mutex
	statuses   map[int]int // HTTP statuses other than 200
	connErrs   int
	errKinds   map[string]int // connection errors by kind, for the test log
	timeouts   []error
	bad        []string // protocol violations (bad bodies, unordered batches)
	afterExit  int      // requests started after the process was gone
	okAfterExt int      // ... of which answered 200 (must be 0)
}

func startIssueLoad(a api, workers int, want int64, exited func() bool) *load {
	ld := &load{a: a, want: want, exited: exited, ids: make([][]string, workers), reqs: make([]int, workers), statuses: map[int]int{}, errKinds: map[string]int{}}
	ld.l = proc.StartLoad(context.Background(), workers, ld.step)
	return ld
}

func (ld *load) step(ctx context.Context, w int) bool {
	if ld.want > 0 && ld.total.Load() >= ld.want {
		return false
	}
	body := "{}"
	if ld.reqs[w]++; ld.reqs[w]%4 == 0 {
		body = fmt.Sprintf(`{"count": %d}`, batchSize)
	}
	gone := ld.exited != nil && ld.exited()
	ids, code, err := ld.a.generate(ctx, body)
	ld.mu.Lock()
	defer ld.mu.Unlock()
	if gone {
		ld.afterExit++
		if err == nil && code == http.StatusOK {
			ld.okAfterExt++
		}
	}
	switch {
	case err != nil && ctx.Err() != nil:
		return false // stopped by the test, not an answer of the service
	case err != nil && code == http.StatusOK:
		ld.bad = append(ld.bad, err.Error())
	case err != nil:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			ld.timeouts = append(ld.timeouts, err)
		}
		ld.connErrs++
		ld.errKinds[errKind(err)]++
		ld.mu.Unlock()
		time.Sleep(5 * time.Millisecond) // the service is gone: do not spin
		ld.mu.Lock()
	case code != http.StatusOK:
		ld.statuses[code]++
	default:
		if len(ids) > 1 && !slices.IsSorted(ids) {
			ld.bad = append(ld.bad, fmt.Sprintf("batch not in increasing order: %v…", ids[:3]))
		}
		ld.ids[w] = append(ld.ids[w], ids...)
		ld.total.Add(int64(len(ids)))
	}
	return true
}

// errKind names a client error without its addresses: "connection
// refused", "EOF", ...
func errKind(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg
}

// waitFor waits until n IDs were acknowledged (or fails the test).
func (ld *load) waitFor(t *testing.T, n int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for ld.total.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d IDs acknowledged after %v", ld.total.Load(), n, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (ld *load) stop() { ld.l.Stop() }
func (ld *load) wait() { ld.l.Wait() }

// all returns every acknowledged ID.
func (ld *load) all() []string {
	var out []string
	for _, ids := range ld.ids {
		out = append(out, ids...)
	}
	return out
}

// checkClean fails t for answers other than 200 or connection errors.
func (ld *load) checkClean(t *testing.T) {
	t.Helper()
	ld.mu.Lock()
	defer ld.mu.Unlock()
	if len(ld.statuses) > 0 {
		t.Errorf("HTTP statuses other than 200 under load: %v", ld.statuses)
	}
	if len(ld.timeouts) > 0 {
		t.Errorf("%d requests hung until the client timeout, first: %v", len(ld.timeouts), ld.timeouts[0])
	}
	if len(ld.bad) > 0 {
		t.Errorf("%d protocol violations, first: %s", len(ld.bad), ld.bad[0])
	}
}

// slot is what uniqueness rests on: (shard, counter), the ID layout of
// docs/architecture.md.
type slot struct {
	shard   uint8
	counter uint64
}

// checkUnique fails t when an ID is not ours or a (shard, counter) pair
// repeats across every list given; it returns the highest counter.
func checkUnique(t *testing.T, lists ...[]string) (maxCounter uint64) {
	t.Helper()
	seen := map[slot]string{}
	dups := 0
	for _, ids := range lists {
		for _, s := range ids {
			id, err := idcodec.Parse(s)
			if err != nil {
				t.Fatalf("the service answered %q: %v", s, err)
			}
			f := id.Decompose()
			k := slot{f.Shard, f.Counter}
			if prev, ok := seen[k]; ok {
				if dups++; dups <= 5 {
					t.Errorf("(shard %d, counter %d) issued twice: %s and %s", k.shard, k.counter, prev, s)
				}
				continue
			}
			seen[k] = s
			maxCounter = max(maxCounter, f.Counter)
		}
	}
	if dups > 0 {
		t.Errorf("%d duplicate (shard, counter) pairs among %d IDs", dups, len(seen)+dups)
	}
	return maxCounter
}

func counterRange(t *testing.T, ids []string) (lo, hi uint64) {
	t.Helper()
	lo = idcodec.MaxCounter
	for _, s := range ids {
		id, err := idcodec.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		c := id.Decompose().Counter
		lo, hi = min(lo, c), max(hi, c)
	}
	return lo, hi
}

// sample returns n random IDs of all workers plus the last tail IDs of each
// worker (the ones acknowledged closest to a kill or a shutdown, the most at
// risk); all of them when there are not more than that.
func sample(perWorker [][]string, n, tail int) []string {
	var all, out []string
	for _, ids := range perWorker {
		cut := max(0, len(ids)-tail)
		out = append(out, ids[cut:]...)
		all = append(all, ids[:cut]...)
	}
	if len(all) <= n {
		return append(out, all...)
	}
	for _, i := range rand.Perm(len(all))[:n] {
		out = append(out, all[i])
	}
	return out
}

// checkRegistered fails t for every ID that GET /ids/{id} does not show in
// state want. It checks, it does not time: its bound (2 minutes) only
// stops a hung server, and holds thousands of GETs on a loaded 2-core
// machine with the race detector in both processes.
func checkRegistered(t *testing.T, a api, ids []string, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var (
		mu   sync.Mutex
		bad  []string
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(ids) && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				rec, code, err := a.get(ctx, ids[i])
				if err == nil && code == http.StatusOK && rec.State == want {
					continue
				}
				mu.Lock()
				bad = append(bad, fmt.Sprintf("%s: status %d state %q err %v", ids[i], code, rec.State, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatalf("checking %d IDs in the registry took too long", len(ids))
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		t.Errorf("%d of %d acknowledged IDs not %s in the registry, e.g.:\n%s", len(bad), len(ids), want, strings.Join(bad[:min(10, len(bad))], "\n"))
	}
}

// readyProbe polls /health/ready on its own keep-alive connection and
// records the answers, to check that readiness goes down during a drain.
type readyProbe struct {
	c       *http.Client
	l       *proc.Load
	mu      sync.Mutex
	answers []int // HTTP status, or 0 for a connection error
}

func startReadyProbe(url string) *readyProbe {
	c := proc.NewClient(1, 2*time.Second)
	rp := &readyProbe{c: c}
	rp.l = proc.StartLoad(context.Background(), 1, func(ctx context.Context, _ int) bool {
		code := 0
		if req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil); err == nil {
			if resp, err := c.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				code = resp.StatusCode
			}
		}
		if ctx.Err() != nil {
			return false
		}
		rp.mu.Lock()
		rp.answers = append(rp.answers, code)
		rp.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
		return true
	})
	return rp
}

func (rp *readyProbe) stop() []int {
	rp.l.Stop()
	rp.c.CloseIdleConnections()
	rp.mu.Lock()
	defer rp.mu.Unlock()
	return rp.answers
}
