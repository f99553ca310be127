package securee2e

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

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	flag.Parse()
	bin, cleanup, err := proc.BuildIdgen("securee2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cleanup()
	idgenBin = bin
	code := m.Run()
	if zkShared.e != nil {
		if err := zkShared.e.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "securee2e: close ZooKeeper:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// zkShared is the package's ZooKeeper ensemble with TLS, started on first
// use.
var zkShared struct {
	once sync.Once
	e    *zkharness.Ensemble
	err  error

	mu sync.Mutex
	tb testing.TB // receives the ensemble's lifecycle log lines
}

func zkLogf(format string, args ...any) {
	zkShared.mu.Lock()
	defer zkShared.mu.Unlock()
	if zkShared.tb != nil {
		zkShared.tb.Logf(format, args...)
	}
}

// zooKeeper returns the shared ensemble, every server running and a leader
// elected, and a root no other test uses.
func zooKeeper(tb testing.TB) (*zkharness.Ensemble, string) {
	tb.Helper()
	zkShared.mu.Lock()
	zkShared.tb = tb
	zkShared.mu.Unlock()
	tb.Cleanup(func() {
		zkShared.mu.Lock()
		zkShared.tb = nil
		zkShared.mu.Unlock()
	})
	zkShared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		zkShared.e, zkShared.err = zkharness.Start(ctx, zkharness.Options{Servers: zkServers, TLS: true, Logf: zkLogf})
	})
	if zkShared.err != nil {
		tb.Fatalf("start ZooKeeper ensemble with TLS: %v", zkShared.err)
	}
	e := zkShared.e
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for i := range zkServers {
		if _, err := e.Mode(ctx, i); errors.Is(err, zkharness.ErrNotRunning) {
			if err := e.Restart(ctx, i); err != nil {
				tb.Fatalf("restart ZooKeeper server %d: %v", i, err)
			}
		}
	}
	if err := e.WaitQuorum(ctx); err != nil {
		tb.Fatalf("ZooKeeper quorum: %v", err)
	}
	name := nonPath.ReplaceAllString(tb.Name(), "_")
	return e, "/securee2e-" + name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

var nonPath = regexp.MustCompile(`[^A-Za-z0-9_-]+`)
