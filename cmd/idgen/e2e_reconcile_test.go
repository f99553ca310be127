package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/reconcile"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/redisstore"
	"github.com/idgen/idgen/shared/registry/redisstore/redisstoretest"
)

// reconciled answers GET /reconcile of every claim so far and fails t
// unless the report has no violation and nothing unaccounted.
func reconciled(t *testing.T, a api) *reconcile.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	code, b, err := a.do(ctx, http.MethodGet, "/reconcile", "")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /reconcile: %d %v %s", code, err, b)
	}
	var rep reconcile.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Errorf("reconciliation: %d unaccounted, violations %+v", rep.Totals.Unaccounted, rep.Violations)
	}
	var notIssued uint64
	for _, n := range rep.Totals.NotIssued {
		notIssued += n
	}
	if rep.Totals.Issued+notIssued != rep.Totals.Size {
		t.Errorf("reconciliation: %d issued + %d not issued != %d claimed", rep.Totals.Issued, notIssued, rep.Totals.Size)
	}
	t.Logf("reconciliation: %d claims, %d counters: %d issued (%d pending, %d committed, %d compensated), not issued %v",
		len(rep.Claims), rep.Totals.Size, rep.Totals.Issued, rep.Totals.Pending, rep.Totals.Committed, rep.Totals.Compensated, rep.Totals.NotIssued)
	return &rep
}

// TestReconcileBadInput: malformed windows answer 400 with a JSON error.
func TestReconcileBadInput(t *testing.T) {
	s := startServer(t, serverOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, q := range []string{"?from=yesterday", "?to=-5", "?to=1969-12-31T00:00:00Z", "?from=10&to=5", "?shard=9", "?shard=x"} {
		code, b, err := s.api().do(ctx, http.MethodGet, "/reconcile"+q, "")
		if err != nil || code != http.StatusBadRequest {
			t.Errorf("GET /reconcile%s: %d %v %s, want 400", q, code, err, b)
		}
	}
	if code, _, err := s.api().do(ctx, http.MethodGet, "/reconcile?from=2025-01-01T00:00:00Z&shard=0", ""); err != nil || code != http.StatusOK {
		t.Errorf("GET /reconcile with an RFC 3339 from: %d %v", code, err)
	}
}

// TestReconcileCommand: `idgen reconcile` asks a running instance (--url)
// or reads a Redis registry itself, prints the report and exits 0; a
// registration outside every recorded claim makes it exit 1.
func TestReconcileCommand(t *testing.T) {
	s := startServer(t, serverOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 30 {
		if _, code, err := s.api().generate(ctx, `{"count": 10}`); err != nil || code != http.StatusOK {
			t.Fatalf("generate: %d %v", code, err)
		}
	}
	code, stdout, stderr := runCLI(t, nil, "reconcile", "--url", "http://"+s.addr)
	var rep reconcile.Report
	if err := json.Unmarshal([]byte(stdout), &rep); code != 0 || err != nil || rep.Totals.Issued != 300 || rep.Totals.NotIssued[reconcile.Held] == 0 {
		t.Fatalf("reconcile --url: exit %d, %v, totals %+v\n%s", code, err, rep.Totals, stderr)
	}

	e := newCompensateEnv(t)
	now := time.Now().UnixMilli()
	ledger := redisstoretest.Open(t, redisstore.Config{Addrs: []string{e.redis.Addr()}, Shard: 2})
	if err := ledger.RecordClaim(ctx, registry.Claim{Shard: 2, Start: 1, End: 1001, Worker: 3, Instance: "i", Source: registry.SourceZooKeeper, AtMS: now}); err != nil {
		t.Fatal(err)
	}
	e.pending(10) // shard 2, counters 1..10
	code, stdout, stderr = runCLI(t, nil, "reconcile", "--redis-addr", e.redis.Addr(), "--shard", "2")
	rep = reconcile.Report{}
	if err := json.Unmarshal([]byte(stdout), &rep); code != 0 || err != nil || rep.Totals.Issued != 10 || rep.Totals.NotIssued[reconcile.Abandoned] != 990 {
		t.Fatalf("reconcile --redis-addr: exit %d, %v, totals %+v\n%s", code, err, rep.Totals, stderr)
	}
	stray := idcodec.MustCompose(idcodec.Fields{TimestampMS: uint64(now), Worker: 3, Shard: 2, Counter: 1001})
	if _, err := e.store.Register(ctx, registry.Issue{Records: []registry.Record{{ID: stray, State: registry.Pending, IssuedAtMS: now, Subject: "x"}}}, 0, now); err != nil {
		t.Fatal(err)
	}
	if err := ledger.RecordClaim(ctx, registry.Claim{Shard: 2, Start: 2001, End: 3001, Worker: 3, Instance: "i", Source: registry.SourceZooKeeper, AtMS: now + 1}); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, nil, "reconcile", "--redis-addr", e.redis.Addr(), "--shard", "2")
	if code != 1 || !strings.Contains(stderr, "2 violations") {
		t.Fatalf("reconcile after a stray registration and an unrecorded claim: exit %d\n%s", code, stderr)
	}
	for _, args := range [][]string{{"reconcile"}, {"reconcile", "--url", "http://" + s.addr, "--from", "soon"}, {"reconcile", "--url", "x", "--shard", "64"}} {
		if code, _, stderr := runCLI(t, nil, args...); code != 1 || stderr == "" {
			t.Errorf("%v: exit %d, %q; want 1 and a message", args, code, stderr)
		}
	}
}
