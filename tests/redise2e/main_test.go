package redise2e

import (
	"flag"
	"fmt"
	"os"
	"testing"

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
	if err := zkShared.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "redise2e: close ZooKeeper:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// zkShared is the package's one ZooKeeper server, started on first use.
var zkShared = &zkharness.Shared{Options: zkharness.Options{Servers: 1}}

// zooKeeper returns the connect string of the shared ZooKeeper and a root
// no other test uses.
func zooKeeper(tb testing.TB) (connect, root string) {
	tb.Helper()
	return zkShared.Get(tb).ConnectString(), zkharness.Root(tb, "redise2e")
}
