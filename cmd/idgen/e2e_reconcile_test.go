package main

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/idgen/idgen/shared/reconcile"
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
	for _, q := range []string{"?from=yesterday", "?to=-5", "?from=10&to=5", "?shard=9", "?shard=x"} {
		code, b, err := s.api().do(ctx, http.MethodGet, "/reconcile"+q, "")
		if err != nil || code != http.StatusBadRequest {
			t.Errorf("GET /reconcile%s: %d %v %s, want 400", q, code, err, b)
		}
	}
	if code, _, err := s.api().do(ctx, http.MethodGet, "/reconcile?from=2025-01-01T00:00:00Z&shard=0", ""); err != nil || code != http.StatusOK {
		t.Errorf("GET /reconcile with an RFC 3339 from: %d %v", code, err)
	}
}
