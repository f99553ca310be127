package redise2e

import (
	"os"
	"testing"

	"github.com/idgen/idgen/harness/zkharness"
	"github.com/idgen/idgen/tests/internal/idgenproc"
)

// idgenBin is the `idgen` binary TestMain builds once for every test.
var idgenBin string

func TestMain(m *testing.M) {
	os.Exit(idgenproc.Main(m, "redise2e", &idgenBin, zkShared.Close))
}

// zkShared is the package's one ZooKeeper server, started on first use.
var zkShared = &zkharness.Shared{Options: zkharness.Options{Servers: 1}}

// zooKeeper returns the connect string of the shared ZooKeeper and a root
// no other test uses.
func zooKeeper(tb testing.TB) (connect, root string) {
	tb.Helper()
	return zkShared.Get(tb).ConnectString(), zkharness.Root(tb, "redise2e")
}
