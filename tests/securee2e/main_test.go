package securee2e

import (
	"os"
	"testing"

	"github.com/idgen/idgen/harness/zkharness"
	"github.com/idgen/idgen/tests/internal/idgenproc"
)

// idgenBin is the `idgen` binary TestMain builds once for every test.
var idgenBin string

// zkServers is the size of the shared ensemble.
const zkServers = 3

func TestMain(m *testing.M) {
	os.Exit(idgenproc.Main(m, "securee2e", &idgenBin, zkShared.Close))
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
