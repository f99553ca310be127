package redise2e

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/shared/idcodec"
)

// TestRedisCluster: two instances on a Redis Cluster of 3 masters. 5000 IDs
// without duplicates, every one registered (read through a cluster client)
// and the records spread over every master; a sample found through GET /ids
// on the instance that did not issue it; commit and compensate across
// instances, also racing each other; one Idempotency-Key raced over both
// instances gives one answer.
func TestRedisCluster(t *testing.T) {
	cl := redisharness.StartClusterT(t, redisharness.Options{}, 3)
	d := newDeployment(t, "--redis-cluster", "--redis-addr", strings.Join(cl.Addrs(), ","))
	insts := d.startTwo()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// 4 × 1000 + 1000 singles.
	jobs := make(chan int, 1004)
	for i := range 1004 {
		if i%251 == 0 {
			jobs <- 1000
		} else {
			jobs <- 0
		}
	}
	close(jobs)
	l := newLedger()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			i := w
			for n := range jobs {
				r := generate(ctx, d.client, insts[i%2], i%2, n, genOpts{})
				i++
				if !l.add(r) {
					t.Errorf("unexpected answer: %s", r.String())
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	l.checkUnique(t)
	ids, from, _ := l.snapshot()
	if len(ids) != 5000 {
		t.Fatalf("%d IDs, want 5000 (%s)", len(ids), l.summary())
	}
	cc := clusterClient(t, cl.Addrs())
	checkRegistered(t, cc, ids, "IDs returned")
	for _, n := range cl.Nodes() {
		c := rawClient(t, n.Addr(), redisOpts{})
		keys, err := c.Keys(ctx, keyPrefix+"r:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("master %s holds %d record buckets", n.Addr(), len(keys))
		if len(keys) == 0 {
			t.Errorf("master %s holds no record bucket: records are not spread over the cluster", n.Addr())
		}
	}
	for _, j := range sampleIdx(len(ids), 300) {
		id, other := ids[j], insts[1-from[j]]
		status, v, err := getID(ctx, d.client, other, id)
		if err != nil || status != http.StatusOK || v.ID != id.String() || v.State != "pending" {
			t.Fatalf("GET /ids/%s on %s: %d %+v %v", id, other.name, status, v, err)
		}
	}

	// Commit and compensate across instances.
	a, b := insts[0], insts[1]
	id1, id2 := ids[0], ids[1]
	steps := []struct {
		in           *instance
		path         string
		id           idcodec.ID
		reason       string
		status       int
		stateOrError string
	}{
		{b, "/commit", id1, "", 200, "committed"},
		{a, "/commit", id1, "", 200, "committed"},             // replay
		{a, "/compensate", id1, "refund", 200, "compensated"}, // a compensation after a commit applies
		{b, "/commit", id1, "", 409, "conflict"},
		{a, "/compensate", id2, "timeout", 200, "compensated"},
		{b, "/compensate", id2, "timeout", 200, "compensated"}, // replay
		{b, "/commit", id2, "", 409, "conflict"},
	}
	for i, s := range steps {
		status, got, err := transition(ctx, d.client, s.in, s.path, s.id, s.reason)
		if err != nil || status != s.status || got != s.stateOrError {
			t.Errorf("step %d: POST %s %s on %s: %d %q %v, want %d %q", i, s.path, s.id, s.in.name, status, got, err, s.status, s.stateOrError)
		}
	}
	for _, in := range insts {
		if _, v, err := getID(ctx, d.client, in, id2); err != nil || v.State != "compensated" || len(v.History) != 2 || v.History[1].Reason != "timeout" {
			t.Errorf("GET /ids/%s on %s: %+v %v", id2, in.name, v, err)
		}
	}
	// A null compensation of an ID never issued, then its commit.
	unknown := idcodec.MustCompose(idcodec.Fields{TimestampMS: uint64(time.Now().UnixMilli()), Worker: 4000, Shard: 0, Counter: 1 << 40})
	if status, got, err := transition(ctx, d.client, a, "/commit", unknown, ""); err != nil || status != http.StatusNotFound {
		t.Errorf("commit of an unknown ID: %d %q %v, want 404", status, got, err)
	}
	if status, got, err := transition(ctx, d.client, a, "/compensate", unknown, "upstream failed"); err != nil || status != http.StatusOK || got != "compensated" {
		t.Errorf("null compensation: %d %q %v, want 200 compensated", status, got, err)
	}
	if status, got, err := transition(ctx, d.client, b, "/commit", unknown, ""); err != nil || status != http.StatusConflict {
		t.Errorf("commit after a null compensation on the other instance: %d %q %v, want 409", status, got, err)
	}

	// Commit (on one instance) races compensate (on the other): compensate
	// always wins in the end, commit is 200 (it came first) or 409.
	race := ids[100:140]
	var rw sync.WaitGroup
	commits := make([]int, len(race))
	for i, id := range race {
		rw.Go(func() {
			status, _, err := transition(ctx, d.client, insts[i%2], "/commit", id, "")
			if err != nil {
				t.Error(err)
			}
			commits[i] = status
		})
		rw.Go(func() {
			status, got, err := transition(ctx, d.client, insts[1-i%2], "/compensate", id, "race")
			if err != nil || status != http.StatusOK || got != "compensated" {
				t.Errorf("compensate %s racing a commit: %d %q %v", id, status, got, err)
			}
		})
	}
	rw.Wait()
	won := 0
	for i, id := range race {
		if commits[i] != http.StatusOK && commits[i] != http.StatusConflict {
			t.Errorf("commit %s racing a compensate: %d, want 200 or 409", id, commits[i])
		}
		if commits[i] == http.StatusOK {
			won++
		}
		_, v, err := getID(ctx, d.client, insts[i%2], id)
		if err != nil || v.State != "compensated" {
			t.Errorf("%s after commit/compensate race: %+v %v, want compensated", id, v, err)
		}
		// The history shows the commit exactly when it was answered 200.
		committed := false
		for _, h := range v.History {
			committed = committed || h.State == "committed"
		}
		if committed != (commits[i] == http.StatusOK) {
			t.Errorf("%s: commit answered %d but history %+v", id, commits[i], v.History)
		}
	}
	t.Logf("commit/compensate race on %d IDs: commit first on %d, compensate first on %d", len(race), won, len(race)-won)

	// One Idempotency-Key, 16 concurrent requests over both instances.
	results := generateAtOnce(ctx, d.client, insts, 16, 3, "cluster-idem")
	distinct, replayed := map[string]bool{}, 0
	var winner []idcodec.ID
	for _, r := range results {
		if r.status != http.StatusOK || r.bad != "" {
			t.Fatalf("idempotent request: %s", r.String())
		}
		distinct[idSet(r.ids)] = true
		if r.replayed {
			replayed++
		} else {
			winner = r.ids
		}
	}
	if len(distinct) != 1 || replayed != len(results)-1 {
		t.Errorf("one Idempotency-Key over 2 instances: %d distinct answers, %d replayed; want 1, %d", len(distinct), replayed, len(results)-1)
	} else {
		checkRegistered(t, cc, winner, "idempotent IDs")
	}
}
