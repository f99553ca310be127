package zke2e

import (
	"testing"

	"github.com/idgen/idgen/harness/zkproxy"
)

// zkProxy stands between one idgen process and the ZooKeeper servers, one
// loopback listener per server, so a test can cut that process off while the
// ensemble keeps its quorum: a partition of one client (harness/zkproxy).
type zkProxy struct{ *zkproxy.Proxy }

// startZKProxy starts a proxy for targets, closed in tb.Cleanup.
func startZKProxy(tb testing.TB, targets []string) *zkProxy {
	tb.Helper()
	return &zkProxy{zkproxy.StartT(tb, targets...)}
}

func (p *zkProxy) connectString() string { return p.ConnectString() }

// partition drops everything both ways and black-holes new connections.
func (p *zkProxy) partition() { p.Partition() }

// heal closes every connection and forwards new ones again.
func (p *zkProxy) heal() { p.Heal() }
