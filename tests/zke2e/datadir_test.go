package zke2e

import (
	"strings"
	"testing"
	"time"
)

// TestDataDirBoundToEnsemble: a data directory used in ZooKeeper mode
// belongs to that ensemble's state (its root and the UUID in
// <root>/cluster-id). Started against another root, or in embedded mode,
// the instance exits with one line naming both values; against its own
// ensemble it serves again.
func TestDataDirBoundToEnsemble(t *testing.T) {
	ens := zkEnsemble(t)
	connect := strings.Join(ens.Addrs(), ",")
	c := newHTTPClient(t, true)
	defer c.CloseIdleConnections()
	root, dir := zkRoot(t), t.TempDir()
	p := startIdgen(t, "a", procOpts{zk: connect, root: root, dataDir: dir})
	p.waitReady(t, c, 30*time.Second)
	if code, err := p.terminate(20 * time.Second); err != nil || code != 0 {
		t.Fatalf("stop: exit %d, %v", code, err)
	}

	for _, tc := range []struct {
		name  string
		o     procOpts
		wants []string
	}{
		{"another root", procOpts{zk: connect, root: zkRoot(t), dataDir: dir}, []string{"belongs to ZooKeeper root " + root, "this start reaches root "}},
		{"embedded mode", procOpts{dataDir: dir}, []string{"mode zookeeper", "mode embedded"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := startIdgen(t, "refused", tc.o)
			select {
			case <-q.done():
			case <-time.After(60 * time.Second):
				t.Fatalf("still running after 60s; want a refusal:\n%s", q.excerpt(20, 40))
			}
			out := q.output()
			q.clean = true
			if q.exitCode() == 0 {
				t.Errorf("exit 0; want a refusal:\n%s", out)
			}
			for _, w := range tc.wants {
				if !strings.Contains(out, w) {
					t.Errorf("output does not name %q:\n%s", w, out)
				}
			}
		})
	}

	t.Run("its own ensemble again", func(t *testing.T) {
		q := startIdgen(t, "again", procOpts{zk: connect, root: root, dataDir: dir})
		q.waitReady(t, c, 30*time.Second)
	})
}
