package zke2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/tests/internal/idgenapi"
)

// startCluster starts one `idgen serve` per name against the ensemble at
// connect, under root, and waits until every one is ready.
func startCluster(t *testing.T, c *http.Client, connect, root string, names ...string) []*idgenProc {
	t.Helper()
	return startClusterOpts(t, c, procOpts{zk: connect, root: root}, names...)
}

// startClusterOpts starts one `idgen serve` per name with o and waits until
// every one is ready.
func startClusterOpts(t *testing.T, c *http.Client, o procOpts, names ...string) []*idgenProc {
	t.Helper()
	ps := make([]*idgenProc, len(names))
	for i, n := range names {
		ps[i] = startIdgen(t, n, o)
	}
	for _, p := range ps {
		p.waitReady(t, c, 60*time.Second)
	}
	return ps
}

// waitInstances polls checkInstances (3s per round, every 250ms) until it
// passes or timeout passes; it returns what waitFor returns.
func waitInstances(c *http.Client, ps []*idgenProc, want []uint16, timeout time.Duration) (time.Duration, string, bool) {
	return waitFor(timeout, 250*time.Millisecond, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := checkInstances(ctx, c, ps, want); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
}

// checkInstances asks every process for GET /instances and checks that it
// lists exactly the workers want (one member each), with distinct workers.
func checkInstances(ctx context.Context, c *http.Client, ps []*idgenProc, want []uint16) error {
	want = slices.Sorted(slices.Values(want))
	for _, p := range ps {
		ms, err := getInstances(ctx, c, p.url)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		var got []uint16
		for _, m := range ms {
			got = append(got, m.Worker)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) || len(slices.Compact(slices.Clone(got))) != len(got) {
			return fmt.Errorf("%s: /instances lists workers %v (%+v), want %v, one each", p.name, got, ms, want)
		}
	}
	return nil
}

// checkDistinctInstances asks every process for GET /instances and checks
// that each lists len(ps) members with distinct workers.
func checkDistinctInstances(ctx context.Context, c *http.Client, ps []*idgenProc) error {
	for _, p := range ps {
		ms, err := getInstances(ctx, c, p.url)
		if err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		seen := map[uint16]bool{}
		for _, m := range ms {
			seen[m.Worker] = true
		}
		if len(ms) != len(ps) || len(seen) != len(ms) {
			return fmt.Errorf("%s: /instances lists %+v, want %d members with distinct workers", p.name, ms, len(ps))
		}
	}
	return nil
}

// Test 1: three processes, 100k IDs each (mixed singles and count=1000
// batches from several client goroutines per process): no duplicate
// (shard, counter), exactly three worker values (one per process), and
// /instances on each lists the three.
func TestThreeInstancesNoDuplicates(t *testing.T) {
	e := zkEnsemble(t)
	c := newHTTPClient(t, true)
	ps := startCluster(t, c, e.ConnectString(), zkRoot(t), "idgen-a", "idgen-b", "idgen-c")

	const (
		batches = 90     // × 1000 IDs
		singles = 10_000 // × 1 ID
		perProc = batches*1000 + singles
		clients = 16 // goroutines per process
	)
	l := newLedger()
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Go(func() { runJobs(ctx, c, l, i, p.url, clients, idgenapi.MixedCounts(batches, singles)) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	t.Logf("%d IDs from %d processes in %v (%.0f IDs/s)", l.count(), len(ps), elapsed.Round(time.Millisecond), float64(l.count())/elapsed.Seconds())
	if ctx.Err() != nil {
		t.Errorf("load did not finish in time: %v", ctx.Err())
	}
	l.check(t)
	if got := l.count(); got != len(ps)*perProc {
		t.Errorf("got %d IDs, want %d", got, len(ps)*perProc)
	}

	all := map[uint16]int{}
	var workers []uint16
	for i, p := range ps {
		ws := l.workersOf(i)
		if len(ws) != 1 {
			t.Errorf("%s stamped workers %v, want exactly one", p.name, ws)
		}
		for _, w := range ws {
			all[w]++
			workers = append(workers, w)
		}
	}
	if len(all) != 3 {
		t.Errorf("IDs carry %d distinct worker values %v, want exactly 3", len(all), all)
	}
	ictx, icancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer icancel()
	if err := checkInstances(ictx, c, ps, workers); err != nil {
		t.Error(err)
	}
}
