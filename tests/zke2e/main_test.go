package zke2e

import (
	"os"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/zkharness"
	"github.com/idgen/idgen/tests/internal/idgenproc"
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
	os.Exit(idgenproc.Main(m, "zke2e", &idgenBin, shared.Close))
}

// shared is the one ZooKeeper ensemble of the package, started on first use.
var shared = &zkharness.Shared{Options: zkharness.Options{Servers: zkServers}}

// zkEnsemble returns the shared ensemble with every server running and a
// quorum serving.
func zkEnsemble(tb testing.TB) *zkharness.Ensemble {
	tb.Helper()
	return shared.Get(tb)
}

// restoreEnsemble restarts every server that is not running and waits for
// the quorum. Fault tests call it when they end, pass or fail.
func restoreEnsemble(tb testing.TB, _ *zkharness.Ensemble) {
	tb.Helper()
	if err := shared.Restore(); err != nil {
		tb.Error(err)
	}
}

// zkRoot returns a ZooKeeper root no other test or run uses.
func zkRoot(tb testing.TB) string { return zkharness.Root(tb, "zke2e") }
