package securee2e

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
	if err := zkShared.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "securee2e: close ZooKeeper:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// zkShared is the package's ZooKeeper ensemble with TLS, started on first
// use.
var zkShared = &zkharness.Shared{Options: zkharness.Options{Servers: zkServers, TLS: true}}

// zooKeeper returns the shared ensemble, every server running and a leader
// elected, and a root no other test uses.
func zooKeeper(tb testing.TB) (*zkharness.Ensemble, string) {
	tb.Helper()
	return zkShared.Get(tb), zkharness.Root(tb, "securee2e")
}
