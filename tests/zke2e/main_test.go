package zke2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/harness/zkharness"
)

// idgenBin is the `idgen` binary TestMain builds once for every test.
var idgenBin string

// zkServers is the size of the shared ensemble.
const zkServers = 3

// sessionTimeout is the ZooKeeper session timeout every idgen process asks
// for (the harness's tickTime is 200ms, so 0.4s..60s are accepted). The
// worker-slot lease is 2/3 of it.
const sessionTimeout = 4 * time.Second

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	flag.Parse()
	bin, cleanup, err := proc.BuildIdgen("zke2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cleanup()
	idgenBin = bin
	code := m.Run()
	if err := closeEnsemble(); err != nil {
		fmt.Fprintln(os.Stderr, "zke2e: close ensemble:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// shared is the one ZooKeeper ensemble of the package, started on first use.
var shared struct {
	once sync.Once
	e    *zkharness.Ensemble
	err  error

	mu sync.Mutex
	tb testing.TB // receives the ensemble's lifecycle log lines
}

func ensembleLogf(format string, args ...any) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.tb != nil {
		shared.tb.Helper()
		shared.tb.Logf(format, args...)
	}
}

// zkEnsemble returns the shared ensemble with every server running and a
// leader elected: servers a previous test left killed or frozen are
// restarted first.
func zkEnsemble(tb testing.TB) *zkharness.Ensemble {
	tb.Helper()
	shared.mu.Lock()
	shared.tb = tb
	shared.mu.Unlock()
	tb.Cleanup(func() {
		shared.mu.Lock()
		shared.tb = nil
		shared.mu.Unlock()
	})
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		shared.e, shared.err = zkharness.Start(ctx, zkharness.Options{Servers: zkServers, Logf: ensembleLogf})
	})
	if shared.err != nil {
		tb.Fatalf("start ZooKeeper ensemble: %v", shared.err)
	}
	e := shared.e
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for i := range zkServers {
		if _, err := e.Mode(ctx, i); errors.Is(err, zkharness.ErrNotRunning) {
			tb.Logf("ZooKeeper server %d not running (left so by an earlier test): restarting it", i)
			if err := e.Restart(ctx, i); err != nil {
				tb.Fatalf("restart ZooKeeper server %d: %v", i, err)
			}
		}
	}
	if err := e.WaitQuorum(ctx); err != nil {
		tb.Fatalf("ZooKeeper quorum: %v", err)
	}
	return e
}

func closeEnsemble() error {
	if shared.e == nil {
		return nil
	}
	return shared.e.Close()
}

// restoreEnsemble restarts every server of e that is not running and waits
// for the quorum. Fault tests call it when they end, pass or fail.
func restoreEnsemble(tb testing.TB, e *zkharness.Ensemble) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for i := range zkServers {
		if _, err := e.Mode(ctx, i); errors.Is(err, zkharness.ErrNotRunning) {
			if err := e.Restart(ctx, i); err != nil {
				tb.Errorf("restart ZooKeeper server %d: %v", i, err)
			}
		}
	}
	if err := e.WaitQuorum(ctx); err != nil {
		tb.Errorf("ZooKeeper quorum after the test: %v", err)
	}
}

var nonPath = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// zkRoot returns a ZooKeeper root no other test or run uses.
func zkRoot(tb testing.TB) string {
	name := nonPath.ReplaceAllString(tb.Name(), "_")
	return "/zke2e-" + name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
}
