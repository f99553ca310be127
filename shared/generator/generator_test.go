package generator

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/idgen/idgen/shared/idcodec"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memSource is an in-memory RangeSource for pure unit tests: it never
// repeats a range; it can fail or block on demand.
type memSource struct {
	mu     sync.Mutex
	next   uint64
	claims []Range
	sizes  []uint64
	fail   atomic.Bool
	block  chan struct{} // when non-nil, claims wait for it to close
	// failAfter, when positive, fails every claim once that many succeeded
	// (so that a background prefetch cannot win a race with fail.Store).
	failAfter int
}

var _ RangeSource = (*memSource)(nil)

func (s *memSource) ClaimRange(ctx context.Context, n uint64) (Range, error) {
	s.mu.Lock()
	block := s.block
	s.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return Range{}, ctx.Err()
		}
	}
	if s.fail.Load() {
		return Range{}, errors.New("source down")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failAfter > 0 && len(s.claims) >= s.failAfter {
		return Range{}, errors.New("source down")
	}
	r := Range{Start: s.next, End: s.next + n}
	s.next += n
	s.claims = append(s.claims, r)
	s.sizes = append(s.sizes, n)
	return r, nil
}

func (s *memSource) claimCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.claims)
}

// newGen returns a generator of New, closed with the test.
func newGen(tb testing.TB, src RangeSource, worker WorkerSource, cfg Config) *Generator {
	tb.Helper()
	g, err := New(src, worker, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(g.Close)
	return g
}

func TestParallelUniqueness(t *testing.T) {
	src := &memSource{}
	g := newGen(t, src, FixedWorker(3), Config{Shard: 5})
	const workers, per = 8, 5000
	out := make([][]idcodec.ID, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for i := 0; i < per; i++ {
				if i%10 == 0 {
					ids, err := g.NextN(ctx, 7, nil)
					if err != nil {
						t.Error(err)
						return
					}
					out[w] = append(out[w], ids...)
					continue
				}
				id, err := g.Next(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				out[w] = append(out[w], id)
			}
		}()
	}
	wg.Wait()
	seen := make(map[uint64]bool)
	for _, ids := range out {
		for _, id := range ids {
			f := id.Decompose()
			if f.Shard != 5 || f.Worker != 3 || !id.Valid() {
				t.Fatalf("bad fields %+v", f)
			}
			if seen[f.Counter] {
				t.Fatalf("counter %d issued twice", f.Counter)
			}
			seen[f.Counter] = true
		}
	}
	// Every counter lies inside a claimed range.
	src.mu.Lock()
	defer src.mu.Unlock()
	for c := range seen {
		if c >= src.next {
			t.Fatalf("counter %d was never claimed", c)
		}
	}
}

func TestBatchIsContiguousAndOrdered(t *testing.T) {
	g := newGen(t, &memSource{}, FixedWorker(3), Config{})
	for round := 0; round < 50; round++ {
		ids, err := g.NextN(context.Background(), 1000, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(ids); i++ {
			a, b := ids[i-1].Decompose(), ids[i].Decompose()
			if b.Counter != a.Counter+1 || a.TimestampMS != b.TimestampMS || ids[i-1].String() >= ids[i].String() {
				t.Fatalf("batch not contiguous/increasing at %d: %+v then %+v", i, a, b)
			}
		}
	}
	if _, err := g.NextN(context.Background(), 1001, nil); !errors.Is(err, ErrBatchSize) {
		t.Fatalf("err = %v, want ErrBatchSize", err)
	}
	if _, err := g.NextN(context.Background(), 0, nil); !errors.Is(err, ErrBatchSize) {
		t.Fatalf("err = %v, want ErrBatchSize", err)
	}
}

// TestClockStepsBack: IDs of one generator keep increasing and never repeat
// while the wall clock jumps back.
func TestClockStepsBack(t *testing.T) {
	var mu sync.Mutex
	now := time.UnixMilli(1_764_000_000_000)
	clock := &idcodec.Clock{Now: func() time.Time { mu.Lock(); defer mu.Unlock(); return now }}
	g := newGen(t, &memSource{}, FixedWorker(3), Config{Clock: clock})
	var prev idcodec.ID
	seen := map[idcodec.ID]bool{}
	for i := 0; i < 5000; i++ {
		mu.Lock()
		switch i {
		case 1000:
			now = now.Add(-time.Hour)
		case 3000:
			now = now.Add(-24 * time.Hour)
		default:
			now = now.Add(time.Millisecond / 4)
		}
		mu.Unlock()
		id, err := g.Next(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if seen[id] || (i > 0 && id.String() <= prev.String()) {
			t.Fatalf("id %d (%s) not above previous %s", i, id, prev)
		}
		seen[id] = true
		prev = id
	}
}

// TestPrefetch: the next range is claimed in the background before the
// current one runs out, so the hot path does not wait.
func TestPrefetch(t *testing.T) {
	src := &memSource{}
	g := newGen(t, src, FixedWorker(3), Config{InitialStep: 1000, MinStep: 1000, PrefetchRatio: 0.5})
	if err := g.Warm(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := src.claimCount(); n != 1 {
		t.Fatalf("claims after warm = %d", n)
	}
	for i := 0; i < 501; i++ {
		if _, err := g.Next(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return src.claimCount() == 2 })
	if st := g.Stats(); st.Headroom < 1000 {
		t.Fatalf("headroom = %d, want current rest + prefetched range", st.Headroom)
	}
	// Block the source: the remaining 499 + prefetched 1000 are served
	// without any claim completing.
	src.mu.Lock()
	src.block = make(chan struct{})
	src.mu.Unlock()
	defer close(src.block)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := 0; i < 499+499; i++ {
		if _, err := g.Next(ctx); err != nil {
			t.Fatalf("id %d waited on the source: %v", i, err)
		}
	}
}

func TestAdaptiveStep(t *testing.T) {
	src := &memSource{}
	g := newGen(t, src, FixedWorker(3), Config{InitialStep: 1000, MinStep: 1000, MaxStep: 16000, TargetLifetime: time.Hour})
	ctx := context.Background()
	// Fast consumption: ranges claimed much sooner than the target lifetime
	// make the step grow, up to MaxStep.
	for i := 0; i < 200; i++ {
		if _, err := g.NextN(ctx, 1000, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return g.Stats().Step == 16000 })
	src.mu.Lock()
	sizes := append([]uint64(nil), src.sizes...)
	src.mu.Unlock()
	if sizes[0] != 1000 || sizes[1] != 1000 {
		t.Fatalf("cold start sizes = %v, want small first claims", sizes[:2])
	}
	for i := 1; i < len(sizes); i++ {
		if sizes[i] < sizes[i-1] || sizes[i] > 16000 {
			t.Fatalf("step sizes %v: not growing within bounds", sizes)
		}
	}
	// Slow consumption shrinks it again.
	g2 := newGen(t, &memSource{}, FixedWorker(3), Config{InitialStep: 8000, MinStep: 1000, MaxStep: 16000, TargetLifetime: time.Millisecond})
	for i := 0; i < 40; i++ {
		if _, err := g2.NextN(ctx, 1000, nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Millisecond)
	}
	waitFor(t, func() bool { return g2.Stats().Step == 1000 })
}

func TestSourceDownThenBack(t *testing.T) {
	src := &memSource{}
	src.fail.Store(true)
	g := newGen(t, src, FixedWorker(3), Config{RetryAfter: 50 * time.Millisecond})
	_, err := g.Next(context.Background())
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if st := g.Stats(); st.LastError == "" || st.ClaimErrors == 0 {
		t.Fatalf("stats = %+v, want the failure recorded", st)
	}
	// Within RetryAfter the hot path fails fast without a new claim.
	if _, err := g.Next(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	src.fail.Store(false)
	time.Sleep(60 * time.Millisecond)
	if _, err := g.Next(context.Background()); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	if st := g.Stats(); st.LastError != "" {
		t.Fatalf("LastError = %q after a good claim", st.LastError)
	}
}

type fencedWorker struct{ fenced atomic.Bool }

func (w *fencedWorker) Worker(time.Time) (uint16, error) {
	if w.fenced.Load() {
		return 0, errors.New("lease expired")
	}
	return 9, nil
}

func TestFencedWorkerRefuses(t *testing.T) {
	w := &fencedWorker{}
	g := newGen(t, &memSource{}, w, Config{})
	if id, err := g.Next(context.Background()); err != nil || id.Decompose().Worker != 9 {
		t.Fatalf("id %v err %v", id, err)
	}
	first, _ := g.Next(context.Background())
	w.fenced.Store(true)
	for i := 0; i < 5; i++ {
		if _, err := g.Next(context.Background()); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable while fenced", err)
		}
	}
	// Refusals took no counters: the next ID follows the last one.
	w.fenced.Store(false)
	next, err := g.Next(context.Background())
	if err != nil || next.Decompose().Counter != first.Decompose().Counter+1 {
		t.Fatalf("after fencing: %v %v (last %v)", next.Decompose(), err, first.Decompose())
	}
}

func TestContextWhileWaiting(t *testing.T) {
	src := &memSource{block: make(chan struct{})}
	defer close(src.block)
	g := newGen(t, src, FixedWorker(3), Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := g.Next(ctx); !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []Config{
		{Shard: 64},
		{MinStep: 10},
		{MinStep: 5000, MaxStep: 4000},
		{InitialStep: 1 << 30},
		{PrefetchRatio: 1.5},
	}
	for _, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", c)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
}

func TestClose(t *testing.T) {
	g, err := New(&memSource{}, FixedWorker(0), Config{})
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	if _, err := g.Next(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("err = %v, want ErrClosed", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// countingWorker is a leased worker whose lease runs out on demand; it
// counts the lease checks.
type countingWorker struct {
	checks  atomic.Int64
	expired atomic.Bool
}

func (w *countingWorker) Worker(time.Time) (uint16, error) {
	w.checks.Add(1)
	if w.expired.Load() {
		return 0, errors.New("lease expired")
	}
	return 5, nil
}

// TestLeaseCheckedAgainAfterWait: an ID from the current range costs one
// lease check (one clock read); a take that waited for a range claim checks
// the lease again, and a lease that ran out during the wait refuses the ID.
func TestLeaseCheckedAgainAfterWait(t *testing.T) {
	src := &memSource{}
	w := &countingWorker{}
	g := newGen(t, src, w, Config{InitialStep: 1000, MinStep: 1000, MaxStep: 1000, MaxBatch: 1000})
	ctx := context.Background()
	if err := g.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	before := w.checks.Load()
	for range 10 {
		if _, err := g.Next(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := w.checks.Load() - before; got != 10 {
		t.Fatalf("10 IDs from the current range made %d lease checks, want 10", got)
	}

	// Use up every counter claimed so far, then make the next claim wait;
	// the lease runs out while the request waits for it.
	src.mu.Lock()
	src.block = make(chan struct{})
	src.mu.Unlock()
	for {
		st := g.cur.Load()
		if st.next.Load() >= st.end {
			g.mu.Lock()
			pending := g.next != nil
			g.mu.Unlock()
			if !pending {
				break
			}
		}
		if _, err := g.NextN(ctx, 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	res := make(chan error, 1)
	go func() { _, err := g.Next(ctx); res <- err }()
	time.Sleep(20 * time.Millisecond)
	w.expired.Store(true)
	close(src.block)
	if err := <-res; !errors.Is(err, ErrUnavailable) {
		t.Fatalf("an ID stamped after the lease ran out during the wait: err = %v, want ErrUnavailable", err)
	}
}

// TestEmptyRecoversWithoutCallers is the regression test of a bug found by
// tests/cmd/idgen-chaos (fault 4, ZooKeeper quorum loss, instances behind
// HAProxy): an instance that used up its range while its claims failed
// reported no range on /health/ready, so the load balancer sent it no
// request, and only a request started a new claim: after the quorum came
// back it stayed out of rotation for good. Now a failed claim that leaves
// nothing to hand out is retried in the background until one succeeds.
func TestEmptyRecoversWithoutCallers(t *testing.T) {
	src := &memSource{failAfter: 1} // the first range, then the source is down
	g := newGen(t, src, FixedWorker(3), Config{InitialStep: 1000, RetryAfter: 20 * time.Millisecond})
	ctx := context.Background()
	if _, err := g.NextN(ctx, 1000, nil); err != nil { // the whole first range
		t.Fatal(err)
	}
	if _, err := g.Next(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if st := g.Stats(); st.Headroom != 0 || st.LastError == "" {
		t.Fatalf("stats %+v, want no headroom and the failure recorded (what /health/ready reports as down)", st)
	}
	failures := g.Stats().ClaimErrors
	waitFor(t, func() bool { return g.Stats().ClaimErrors >= failures+2 }) // retried with no caller
	src.mu.Lock()
	src.failAfter = 0 // the source is back
	src.mu.Unlock()
	waitFor(t, func() bool { st := g.Stats(); return st.Headroom > 0 && st.LastError == "" })
	claims := src.claimCount()
	time.Sleep(100 * time.Millisecond)
	if n := src.claimCount(); n != claims {
		t.Fatalf("%d more claims once a range was ready, want none", n-claims)
	}
}

// TestCloseStopsRetries: Close ends the background retries (goleak checks
// that no claim goroutine is left).
func TestCloseStopsRetries(t *testing.T) {
	src := &memSource{}
	src.fail.Store(true)
	g, err := New(src, FixedWorker(0), Config{RetryAfter: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Warm(context.Background()); err == nil {
		t.Fatal("Warm succeeded on a failing source")
	}
	time.Sleep(20 * time.Millisecond)
	g.Close()
	n := g.Stats().ClaimErrors
	time.Sleep(30 * time.Millisecond)
	if m := g.Stats().ClaimErrors; m != n {
		t.Fatalf("%d claims after Close", m-n)
	}
}
