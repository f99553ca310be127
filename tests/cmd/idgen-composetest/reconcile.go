package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/idgen/idgen/shared/reconcile"
)

// reconcile asks an instance, through the load balancer, for the account
// of every counter of every range claimed since the stack came up: no
// violation, nothing unaccounted, and at least every ID the test was
// answered counted as issued (a request cut by the kill may have been
// registered without being answered). The report is deep: the state maps
// it accounts from must say what every record is.
func (r *run) reconcile(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	// The report needs ops:read, which the run's token has not.
	ops, err := r.mintToken(ctx, "compose-test-ops", "ops:read", 10*time.Minute)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url("/reconcile?deep=true"), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+ops)
	t0 := time.Now()
	resp, err := (&http.Client{Timeout: 2 * time.Minute}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /reconcile: %s: %s", resp.Status, tailOf(string(b), 500))
	}
	var rep reconcile.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("GET /reconcile: %w", err)
	}
	t := rep.Totals
	r.logf("phase reconcile (%.1f s): %d claims, %d counters: %d issued (%d pending, %d committed, %d compensated), not issued %v; %d violations, %d unaccounted",
		time.Since(t0).Seconds(), len(rep.Claims), t.Size, t.Issued, t.Pending, t.Committed, t.Compensated, t.NotIssued, len(rep.Violations), -t.Unaccounted)
	if !rep.OK() {
		return fmt.Errorf("%d violations (first: %+v), %d counters unaccounted", len(rep.Violations), first(rep.Violations), -t.Unaccounted)
	}
	r.mu.Lock()
	acked := len(r.seen)
	r.mu.Unlock()
	if t.Issued < uint64(acked) {
		return fmt.Errorf("%d counters issued in the recorded claims, fewer than the %d distinct IDs answered", t.Issued, acked)
	}
	return nil
}

func first(vs []reconcile.Violation) reconcile.Violation {
	if len(vs) == 0 {
		return reconcile.Violation{}
	}
	return vs[0]
}
