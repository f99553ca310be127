package allocator

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/harness/zkharness"
	"github.com/idgen/idgen/shared/generator"
)

// shared is a standalone ZooKeeper used by the tests that need neither a
// quorum nor TLS, started by the first of them; each test works under its
// own root.
var shared = &zkharness.Shared{Options: zkharness.Options{Servers: 1}}

// zkAddrs returns the addresses of the shared ZooKeeper.
func zkAddrs(tb testing.TB) []string {
	tb.Helper()
	return shared.Get(tb).Addrs()
}

func TestMain(m *testing.M) {
	os.Exit(proc.RunMain(m, shared.Close))
}

var rootSeq atomic.Int64

// testRoot is a fresh root znode for one test.
func testRoot(t testing.TB) string {
	name := strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
	return fmt.Sprintf("/t%d-%s", rootSeq.Add(1), name)
}

// testLogger logs warnings and errors through t.Log: claims log at info,
// thousands of lines would drown the output.
func testLogger(t testing.TB) *zap.Logger {
	return zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
}

// openT opens an allocator and closes it when the test ends.
func openT(t testing.TB, cfg Config) *Allocator {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// rawConn is a plain client for inspecting and tampering with znodes.
func rawConn(t testing.TB, servers []string, auth *DigestAuth) *zk.Conn {
	t.Helper()
	conn, _, err := zk.Connect(servers, 10*time.Second, zk.WithLogInfo(false), zk.WithLogger(discard{}))
	if err != nil {
		t.Fatalf("zk.Connect: %v", err)
	}
	t.Cleanup(conn.Close)
	if auth != nil {
		if err := conn.AddAuth("digest", []byte(auth.User+":"+auth.Password)); err != nil {
			t.Fatalf("AddAuth: %v", err)
		}
	}
	proc.Eventually(t, 15*time.Second, "raw session", func() bool { return conn.State() == zk.StateHasSession })
	return conn
}

type discard struct{}

func (discard) Printf(string, ...any) {}

// ledger collects the ranges handed out, from any goroutine.
type ledger struct {
	mu     sync.Mutex
	ranges []owned
}

type owned struct {
	generator.Range
	who int
}

func (l *ledger) add(who int, r generator.Range) {
	l.mu.Lock()
	l.ranges = append(l.ranges, owned{r, who})
	l.mu.Unlock()
}

// check fails t if two ranges overlap or one is empty, and returns the
// number of counters handed out and the largest end.
func (l *ledger) check(t testing.TB) (total, top uint64) {
	t.Helper()
	l.mu.Lock()
	rs := slices.Clone(l.ranges)
	l.mu.Unlock()
	slices.SortFunc(rs, func(a, b owned) int {
		switch {
		case a.Start < b.Start:
			return -1
		case a.Start > b.Start:
			return 1
		}
		return 0
	})
	for i, r := range rs {
		if r.End <= r.Start {
			t.Errorf("empty or inverted range %+v", r)
		}
		if i > 0 && rs[i-1].End > r.Start {
			t.Errorf("overlap: %+v (allocator %d) and %+v (allocator %d)", rs[i-1].Range, rs[i-1].who, r.Range, r.who)
		}
		total += r.Len()
		top = max(top, r.End)
	}
	return total, top
}

func (l *ledger) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ranges)
}

// counterNext reads the current counter of a shard through a raw client,
// following moves.
func counterNext(t testing.TB, conn *zk.Conn, root string, shard int) uint64 {
	t.Helper()
	name := "counter"
	for {
		data, _, err := conn.Get(fmt.Sprintf("%s/shards/%d/%s", root, shard, name))
		if err != nil {
			t.Fatalf("get counter: %v", err)
		}
		d, err := decodeCounter(data)
		if err != nil {
			t.Fatal(err)
		}
		if d.MovedTo == "" {
			return d.Next
		}
		name = d.MovedTo
	}
}
