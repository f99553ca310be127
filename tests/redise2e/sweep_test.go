package redise2e

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/saga/sagatest"
)

// TestDeadlinesSweptOnceAcrossInstances: IDs issued with timeout_ms by two
// instances are compensated (reason "timeout") once their deadline passes,
// by the shard's elected sweeper (ZooKeeper election): every one exactly once across
// both audit logs, and the deadline index is empty afterwards. One ID
// committed in time is left alone.
func TestDeadlinesSweptOnceAcrossInstances(t *testing.T) {
	srv, d := standaloneDeployment(t, redisharness.Options{})
	insts := d.startTwo("--sweep-interval", "200ms")
	admin := rawClient(t, srv.Addr(), redisOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	l := newLedger()
	for i := range 4 {
		if r := generate(ctx, d.client, insts[i%2], i%2, 100, genOpts{body: `{"count":100,"timeout_ms":1500}`}); !l.add(r) {
			t.Fatal(r.String())
		}
	}
	ids, _, _ := l.snapshot()
	kept := ids[0]
	if status, state, err := transition(ctx, d.client, insts[1], "/commit", kept, ""); err != nil || status != http.StatusOK || state != "committed" {
		t.Fatalf("commit before the deadline: %d %q %v", status, state, err)
	}
	if n := waitDeadlinesSwept(ctx, t, admin, 30*time.Second, 200*time.Millisecond); n > 0 {
		t.Fatalf("deadline index still holds %d entries", n)
	}
	for _, j := range sampleIdx(len(ids), 50) {
		_, v, err := getID(ctx, d.client, insts[j%2], ids[j])
		want, reason := "compensated", "timeout"
		if ids[j] == kept {
			want, reason = "committed", ""
		}
		if err != nil || v.State != want || v.History[len(v.History)-1].Reason != reason {
			t.Errorf("%s after its deadline: %+v %v, want %s", ids[j], v, err, want)
		}
	}
	for _, in := range insts {
		in.stop(t) // flushes the audit log
	}
	events := map[string]int{}
	perInstance := make([]int, len(insts))
	sweptBySystem := func(e audit.Event) bool {
		return e.Action == audit.ActionCompensate && e.Actor == "system" && e.Reason == "timeout"
	}
	for i, in := range insts {
		for _, e := range sagatest.AuditEvents(t, sweptBySystem, filepath.Join(in.dataDir, "audit.log")) {
			events[e.Resource]++
			perInstance[i]++
		}
	}
	twice := 0
	for _, id := range ids {
		switch n := events[id.String()]; {
		case id == kept && n != 0:
			t.Errorf("%s was committed in time but compensated", id)
		case id != kept && n != 1:
			if twice++; twice <= 5 {
				t.Errorf("%s: %d timeout compensations in the audit logs, want exactly 1", id, n)
			}
		}
	}
	// One sweeper at a time (the ZooKeeper election of the shard's
	// sweeper): every timeout compensation was made by the same instance.
	if perInstance[0] != 0 && perInstance[1] != 0 {
		t.Errorf("both instances swept: %v timeout compensations audited per instance, want all by the elected one", perInstance)
	}
	t.Logf("%d IDs past their deadline: %d audited compensations, per instance %v", len(ids)-1, len(events), perInstance)
}

// TestZooKeeperBehindRegistryRefused: the registry remembers how far the
// counter went (its high-water mark). An instance pointed at a ZooKeeper
// whose counter is behind it (a fresh root here, as after a ZooKeeper
// restored from an old snapshot) refuses to start instead of handing out
// counters again.
func TestZooKeeperBehindRegistryRefused(t *testing.T) {
	srv, d := standaloneDeployment(t, redisharness.Options{})
	a := d.start("idgen-a", nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if r := generate(ctx, d.client, a, 0, 1000, genOpts{}); r.status != http.StatusOK {
		t.Fatal(r.String())
	}
	a.stop(t)

	fresh := newDeployment(t, "--redis-addr", srv.Addr())
	code, stderr := fresh.runToExit("idgen-fresh-zk", nil, 60*time.Second)
	last := lastLine(stderr)
	t.Logf("exit %d: %s", code, last)
	if code == 0 || !strings.Contains(last, "high-water") && !strings.Contains(last, "refusing to issue") {
		t.Errorf("instance on a ZooKeeper counter behind the registry: exit %d, %q; want a refusal", code, last)
	}
}

// TestSweeperTakesOver: the elected sweeper is SIGKILLed with IDs pending
// past their deadline; once ZooKeeper expires its session the other
// instance is elected and compensates them, each audited once.
func TestSweeperTakesOver(t *testing.T) {
	srv, d := standaloneDeployment(t, redisharness.Options{})
	flags := []string{"--sweep-interval", "200ms", "--zookeeper-session-timeout", "2s"}
	a := d.start("idgen-a", nil, flags...)
	b := d.start("idgen-b", nil, flags...)
	admin := rawClient(t, srv.Addr(), redisOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// The first to sweep is the elected one; wait until it said so.
	var leader, other *instance
	waitUntil := time.Now().Add(20 * time.Second)
	for leader == nil {
		for _, in := range []*instance{a, b} {
			if strings.Contains(in.p.Stderr(), `"leader":true`) {
				leader = in
			}
		}
		if time.Now().After(waitUntil) {
			t.Fatal("no instance was elected sweeper")
		}
		time.Sleep(50 * time.Millisecond)
	}
	other = b
	if leader == b {
		other = a
	}
	l := newLedger()
	if r := generate(ctx, d.client, other, 0, 50, genOpts{body: `{"count":50,"timeout_ms":1500}`}); !l.add(r) {
		t.Fatal(r.String())
	}
	if err := leader.c.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if n := waitDeadlinesSwept(ctx, t, admin, 30*time.Second, 100*time.Millisecond); n > 0 {
		t.Fatalf("30 s after the sweeper died, %d IDs past their deadline are still pending", n)
	}
	t.Logf("the other instance took over and swept %.1f s after the elected sweeper was killed", time.Since(killed).Seconds())
	other.stop(t)
	ids, _, _ := l.snapshot()
	swept := func(e audit.Event) bool { return e.Action == audit.ActionCompensate && e.Reason == "timeout" }
	audited := sagatest.PerResource(sagatest.AuditEvents(t, swept, filepath.Join(other.dataDir, "audit.log")))
	for _, id := range ids {
		if audited[id.String()] != 1 {
			t.Errorf("%s: %d timeout compensations audited by the new sweeper, want 1", id, audited[id.String()])
		}
	}
}

// waitDeadlinesSwept polls the deadline index of shard 0 every interval
// until it is empty or timeout passes, and returns how many entries it
// held last (0: swept).
func waitDeadlinesSwept(ctx context.Context, t *testing.T, admin redis.Cmdable, timeout, interval time.Duration) int64 {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n, err := admin.ZCard(ctx, keyPrefix+"deadlines:{0}").Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(interval)
	}
}
