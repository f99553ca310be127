package zke2e

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
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

// fenceRun is a fencing test under way: a paced load of 2 workers on every
// process, recorded in a fencedLedger, and the worker slot the victim
// stamped before its fault.
type fenceRun struct {
	l     *ledger
	loads []*pacedLoad
	pace  time.Duration
	zc    *zk.Conn
	// slot is the victim's worker slot before the fault, path its znode
	// and session the session that owned it then.
	slot    uint16
	path    string
	session int64
}

// startFenceRun starts the load on ps (target i is ps[i], one request per
// pace a worker) until ctx ends or the test does, lets it run 2s, and reads
// the one slot victim stamped; it fails t unless there is exactly one
// (fault names the fault to come).
func startFenceRun(ctx context.Context, t *testing.T, c *http.Client, zkAddrs []string, root string, ps []*idgenProc, victim int, pace time.Duration, fault string) *fenceRun {
	t.Helper()
	fr := &fenceRun{l: fencedLedger(victim), pace: pace}
	fr.loads = paceAll(ctx, c, fr.l, ps, 2, pace)
	t.Cleanup(fr.stop)
	time.Sleep(2 * time.Second)
	fr.zc = zkConnect(t, zkAddrs)
	ws := fr.l.workersOf(victim)
	if len(ws) != 1 {
		t.Fatalf("%s stamped workers %v before %s, want one", ps[victim].name, ws, fault)
	}
	fr.slot, fr.path = ws[0], root+"/workers/"+strconv.Itoa(int(ws[0]))
	ok, st, err := fr.zc.Exists(fr.path)
	if err != nil || !ok {
		t.Fatalf("slot znode %s: exists=%v err=%v", fr.path, ok, err)
	}
	fr.session = st.EphemeralOwner
	return fr
}

// stop ends the load on every process (again is a no-op).
func (fr *fenceRun) stop() { stopAll(fr.loads) }

// fault starts the victim's fault (inject; an error fails t) and waits
// until it cost the victim its slot (waitSlotLost). It returns when the
// fault started and end, which ends it (undo) on its first call only; t's
// cleanup calls end too, so the fault never outlives the test. victim and
// name say who and what in the log ("frozen process", "SIGSTOP").
func (fr *fenceRun) fault(t *testing.T, victim, name string, inject func() error, undo func()) (time.Time, func()) {
	t.Helper()
	start := time.Now()
	if err := inject(); err != nil {
		t.Fatal(err)
	}
	end := sync.OnceFunc(undo)
	t.Cleanup(end)
	fr.waitSlotLost(t, victim, name)
	return start, end
}

// waitSlotLost waits up to 30s until ZooKeeper expired the session that
// owned the victim's slot (the znode is gone, or another session owns it)
// and logs how long that took; it fails t when the session outlived the
// wait. victim and fault name the process and what befell it in those
// lines.
func (fr *fenceRun) waitSlotLost(t *testing.T, victim, fault string) {
	t.Helper()
	waited, msg, expired := waitFor(30*time.Second, 100*time.Millisecond, func() (bool, string) {
		ok, st, err := fr.zc.Exists(fr.path)
		if err != nil {
			return false, err.Error()
		}
		return !ok || st.EphemeralOwner != fr.session, fmt.Sprintf("exists=%v owner=%x", ok, st.EphemeralOwner)
	})
	if !expired {
		t.Fatalf("session of the %s not expired %v after %s: %s", victim, waited, fault, msg)
	}
	t.Logf("%s's session expired %v after %s (timeout %v)", victim, waited.Round(time.Millisecond), fault, sessionTimeout)
}

// newcomer starts idgen-d on root (startNewcomer) as target newcomer, puts
// the same load on it, and returns it with the worker slot it stamped.
func (fr *fenceRun) newcomer(ctx context.Context, t *testing.T, c *http.Client, connect, root string, newcomer int) (*idgenProc, uint16) {
	t.Helper()
	d, w := startNewcomer(ctx, t, c, connect, root, fr.l, newcomer)
	fr.loads = append(fr.loads, startPaced(ctx, c, fr.l, newcomer, d.url, 2, fr.pace, steadyPattern, 5000))
	return d, w
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
