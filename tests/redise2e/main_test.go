package redise2e

import (
	"context"
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

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	flag.Parse()
	bin, cleanup, err := proc.BuildIdgen("redise2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cleanup()
	idgenBin = bin
	code := m.Run()
	if zkShared.e != nil {
		if err := zkShared.e.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "redise2e: close ZooKeeper:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// zkShared is the package's one ZooKeeper server, started on first use.
var zkShared struct {
	once sync.Once
	e    *zkharness.Ensemble
	err  error

	mu sync.Mutex
	tb testing.TB // receives the server's lifecycle log lines
}

func zkLogf(format string, args ...any) {
	zkShared.mu.Lock()
	defer zkShared.mu.Unlock()
	if zkShared.tb != nil {
		zkShared.tb.Logf(format, args...)
	}
}

// zooKeeper returns the connect string of the shared ZooKeeper and a root
// no other test uses.
func zooKeeper(tb testing.TB) (connect, root string) {
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
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		zkShared.e, zkShared.err = zkharness.Start(ctx, zkharness.Options{Servers: 1, Logf: zkLogf})
	})
	if zkShared.err != nil {
		tb.Fatalf("start ZooKeeper: %v", zkShared.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := zkShared.e.WaitQuorum(ctx); err != nil {
		tb.Fatalf("ZooKeeper not serving: %v", err)
	}
	name := nonPath.ReplaceAllString(tb.Name(), "_")
	return zkShared.e.ConnectString(), "/redise2e-" + name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
}

var nonPath = regexp.MustCompile(`[^A-Za-z0-9_-]+`)
