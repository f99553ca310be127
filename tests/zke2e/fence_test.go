package zke2e

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// What the fencing tests (a frozen and a cut-off process) share: one
// process loses its session, ZooKeeper hands its slot to a newcomer, and
// the ledger must show that the two never issued with the same slot.

// fencedLedger keeps every result; it accepts 200 or 503 with Retry-After
// from target (which is fenced for a while), only 200 from the others.
func fencedLedger(target int) *ledger {
	l := newLedger()
	l.keep = true
	l.accept = func(r *genResult) string {
		if r.target == target {
			return okOr503(r)
		}
		return onlyOK(r)
	}
	return l
}

// slotOf returns the one worker slot name (target) stamped so far, its
// znode under root and the session that owns it. It fails t unless target
// stamped exactly one slot before the fault (what names the fault).
func slotOf(t *testing.T, zc *zk.Conn, root string, l *ledger, target int, name, fault string) (w uint16, path string, session int64) {
	t.Helper()
	ws := l.workersOf(target)
	if len(ws) != 1 {
		t.Fatalf("%s stamped workers %v before %s, want one", name, ws, fault)
	}
	path = root + "/workers/" + strconv.Itoa(int(ws[0]))
	ok, st, err := zc.Exists(path)
	if err != nil || !ok {
		t.Fatalf("slot znode %s: exists=%v err=%v", path, ok, err)
	}
	return ws[0], path, st.EphemeralOwner
}

// waitSlotLost waits up to 30s until ZooKeeper expired the session that
// owned the slot znode at path: the znode is gone, or another session owns
// it.
func waitSlotLost(zc *zk.Conn, path string, session int64) (time.Duration, string, bool) {
	return waitFor(30*time.Second, 100*time.Millisecond, func() (bool, string) {
		ok, st, err := zc.Exists(path)
		if err != nil {
			return false, err.Error()
		}
		return !ok || st.EphemeralOwner != session, fmt.Sprintf("exists=%v owner=%x", ok, st.EphemeralOwner)
	})
}

// startNewcomer starts idgen-d on root, waits until it is ready, records
// its first answer as target newcomer, and returns it with the worker slot
// it stamped.
func startNewcomer(ctx context.Context, t *testing.T, c *http.Client, connect, root string, l *ledger, newcomer int) (*idgenProc, uint16) {
	t.Helper()
	d := startIdgen(t, "idgen-d", procOpts{zk: connect, root: root})
	d.waitReady(t, c, 60*time.Second)
	r := generate(ctx, c, d.url, newcomer, 0)
	l.record(r)
	if r.status != http.StatusOK {
		t.Fatalf("new process: %s", describe(&r))
	}
	return d, r.ids[0].Decompose().Worker
}
