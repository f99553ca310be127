package httpapi_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/idgen/idgen/functions/httpapi"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/registry"
)

// sweep applies to id the transition of the deadline sweeper
// (functions/sweeper), as it does: from pending only, reason "timeout", actor
// "system". Its audit entry is the sweeper's own, not the service's.
func sweep(h *harness, id idcodec.ID) error {
	_, _, err := h.store.Transition(context.Background(), id, registry.Change{
		To: registry.Compensated, From: registry.Pending, Reason: "timeout", Actor: "system", NowMS: time.Now().UnixMilli(),
	})
	return err
}

// compensatedSteps returns the compensated steps of id's history.
func compensatedSteps(t *testing.T, h *harness, id idcodec.ID) (state string, steps []struct{ Reason, Actor string }, committed bool) {
	t.Helper()
	v := h.view(t, id.String())
	for _, st := range v.History {
		switch st.State {
		case "compensated":
			steps = append(steps, struct{ Reason, Actor string }{st.Reason, st.Actor})
		case "committed":
			committed = true
		}
	}
	return v.State, steps, committed
}

// compensateEntries counts the id.compensate audit entries of id with the
// given reason.
func compensateEntries(t *testing.T, h *harness, id idcodec.ID, reason string) (n, all int) {
	t.Helper()
	for _, l := range auditLines(t, h.auditPath) {
		if l["action"] == "id.compensate" && l["resource"] == id.String() {
			all++
			if l["reason"] == reason && l["actor"] == "system" {
				n++
			}
		}
	}
	return n, all
}

// TestLateCommitExpires: the deadline decides at commit time. A commit
// after an ID's deadline is refused (409 expired) and the ID is
// compensated in that same request (reason "deadline", actor "system", one
// audit entry) when the sweeper has not done it yet; after the sweeper it
// is refused the same way and writes no entry (the sweeper writes its
// own). A retry changes nothing and writes nothing. A commit made in time,
// or a compensation by a client, is not turned into an expiry.
func TestLateCommitExpires(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const deadline = 100 * time.Millisecond
	late := func() { time.Sleep(350 * time.Millisecond) } // the timing: 3.5 × timeout_ms
	body := func(id idcodec.ID) string { return `{"id":"` + id.String() + `"}` }
	for _, tc := range []struct {
		name   string
		before func(t *testing.T, id idcodec.ID) // between issue and the late commit
		status int
		code   string
		reason string // of the one compensated step ("" = none)
		owned  int    // id.compensate entries the service writes
	}{
		{name: "sweeper has not run", before: func(*testing.T, idcodec.ID) { late() }, status: 409, code: "expired", reason: "deadline", owned: 1},
		{name: "sweeper ran first", before: func(t *testing.T, id idcodec.ID) {
			late()
			if err := sweep(h, id); err != nil {
				t.Fatalf("sweep: %v", err)
			}
		}, status: 409, code: "expired", reason: "timeout", owned: 0},
		{name: "committed in time", before: func(t *testing.T, id idcodec.ID) {
			if r := h.post(t, "/commit", body(id)); r.status != 200 {
				t.Fatalf("commit in time: %s", r)
			}
			late()
		}, status: 200},
		{name: "compensated by a client in time", before: func(t *testing.T, id idcodec.ID) {
			if r := h.post(t, "/compensate", `{"id":"`+id.String()+`","reason":"declined"}`); r.status != 200 {
				t.Fatalf("compensate: %s", r)
			}
			late()
		}, status: 409, code: "conflict", reason: "declined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := h.generateOne(t, `{"timeout_ms":`+strconv.FormatInt(deadline.Milliseconds(), 10)+`}`)
			tc.before(t, id)
			for attempt := 0; attempt < 2; attempt++ { // the retry answers the same, writes nothing
				r := h.post(t, "/commit", body(id))
				if tc.code != "" {
					assertError(t, r, tc.status, tc.code)
				} else if r.status != tc.status {
					t.Fatalf("attempt %d: %s, want %d", attempt, r, tc.status)
				}
				state, steps, committed := compensatedSteps(t, h, id)
				switch {
				case tc.reason == "":
					if state != "committed" || len(steps) != 0 {
						t.Fatalf("attempt %d: state %s, compensations %v; want committed", attempt, state, steps)
					}
				case state != "compensated" || len(steps) != 1 || steps[0].Reason != tc.reason || committed:
					t.Fatalf("attempt %d: state %s, compensations %v, committed %v; want one compensation, reason %s, never committed", attempt, state, steps, committed, tc.reason)
				}
				if n, all := compensateEntries(t, h, id, "deadline"); n != tc.owned || (tc.reason != "declined" && all != tc.owned) {
					t.Fatalf("attempt %d: %d deadline entries (%d id.compensate in all), want %d", attempt, n, all, tc.owned)
				}
				if n := countAction(auditLines(t, h.auditPath), "id.commit", id.String()); n != 0 && tc.reason != "" {
					t.Fatalf("attempt %d: %d id.commit entries for a refused commit", attempt, n)
				}
			}
		})
	}
}

// TestLateCommitRace: late commits racing each other and the sweeper. The
// registry's compare-and-set from pending decides who compensates: exactly
// one compensation, every commit answered 409 expired, one audit entry
// when a commit won ("deadline"), none from the service when the sweeper
// won ("timeout", audited by the sweeper).
func TestLateCommitRace(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const commits = 8
	won := map[string]int{}
	for round := 0; round < 6; round++ {
		id := h.generateOne(t, `{"timeout_ms":30}`)
		time.Sleep(80 * time.Millisecond)
		var (
			wg       sync.WaitGroup
			start    = make(chan struct{})
			replies  = make([]*reply, commits)
			sweepErr error
		)
		for i := range commits {
			wg.Go(func() {
				<-start
				replies[i] = h.post(t, "/commit", `{"id":"`+id.String()+`"}`)
			})
		}
		wg.Go(func() {
			<-start
			sweepErr = sweep(h, id)
		})
		close(start)
		wg.Wait()
		for i, r := range replies {
			if r.status != 409 {
				t.Fatalf("round %d commit %d: %s, want 409 expired", round, i, r)
			}
			checkErrorBody(t, r.body, "expired")
		}
		state, steps, committed := compensatedSteps(t, h, id)
		if state != "compensated" || len(steps) != 1 || committed {
			t.Fatalf("round %d: state %s, compensations %v, committed %v; want exactly one compensation", round, state, steps, committed)
		}
		n, all := compensateEntries(t, h, id, "deadline")
		switch steps[0].Reason {
		case "timeout":
			if sweepErr != nil || all != 0 {
				t.Fatalf("round %d: the sweeper's compensation stored (sweep error %v) with %d service entries, want 0", round, sweepErr, all)
			}
		case "deadline":
			if !errors.Is(sweepErr, registry.ErrConflict) || n != 1 || all != 1 {
				t.Fatalf("round %d: a commit's compensation stored, sweep error %v, %d entries (%d in all); want the sweeper refused and 1 entry", round, sweepErr, n, all)
			}
		default:
			t.Fatalf("round %d: compensation reason %q", round, steps[0].Reason)
		}
		won[steps[0].Reason]++
	}
	t.Logf("compensated by: %v", won)
}

// TestLateCommitAuditNotWritten: a late commit whose compensation is
// stored but whose audit entry fails is answered 503 with Retry-After
// (fail closed); with CompensationMarks the retry writes the entry, once,
// marked recovered, and answers 409 expired.
func TestLateCommitAuditNotWritten(t *testing.T) {
	t.Parallel()
	h := serveStack(t, newStackDeps(t, newTestCore(t), httpapi.Config{Dev: true}, nil, func(d *httpapi.Deps) {
		d.CompensationMarks = &memMarks{marked: map[idcodec.ID]string{}}
		d.Audit = &failFirst{Auditor: d.Audit, action: audit.ActionCompensate}
	}))
	id := h.generateOne(t, `{"timeout_ms":20}`)
	time.Sleep(60 * time.Millisecond)
	body := `{"id":"` + id.String() + `"}`
	if r := h.post(t, "/commit", body); r.status != 503 || r.h("Retry-After") == "" {
		t.Fatalf("first attempt: %s, Retry-After %q; want 503 with Retry-After", r, r.h("Retry-After"))
	}
	if state, steps, _ := compensatedSteps(t, h, id); state != "compensated" || len(steps) != 1 || steps[0].Reason != "deadline" {
		t.Fatalf("after the first attempt: %s %v, want compensated for its deadline", state, steps)
	}
	for range 2 {
		assertError(t, h.post(t, "/commit", body), 409, "expired")
	}
	if n, all := compensateEntries(t, h, id, "deadline"); n != 1 || all != 1 {
		t.Fatalf("%d deadline entries (%d in all), want 1", n, all)
	}
	if got := recoveredFlag(t, h.auditPath, audit.ActionCompensate, id.String()); got != "true" {
		t.Fatalf("recovered=%q, want true", got)
	}
}
