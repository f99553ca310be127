package compensate_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/idgen/idgen/functions/compensate"
	"github.com/idgen/idgen/shared/audit"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/redisstore"
)

func TestValidate(t *testing.T) {
	good := newIDs(1)[0].String()
	for _, tc := range []struct {
		name string
		ev   compensate.Event
		want string // "" = valid; else a substring of the error
	}{
		{"minimal", compensate.Event{ID: good, Reason: "payment failed"}, ""},
		{"full", compensate.Event{EventID: "evt-1", ID: good, Reason: "r", OccurredAt: "2026-01-02T03:04:05.678Z", Source: "payments/v2"}, ""},
		{"missing id", compensate.Event{Reason: "r"}, "missing id"},
		{"bad id", compensate.Event{ID: "not-an-id", Reason: "r"}, "not an idgen ID"},
		{"uuid v4", compensate.Event{ID: "6ba7b810-9dad-41d1-80b4-00c04fd430c8", Reason: "r"}, "not an idgen ID"},
		{"missing reason", compensate.Event{ID: good}, "missing reason"},
		{"long reason", compensate.Event{ID: good, Reason: strings.Repeat("x", 257)}, "longer than"},
		{"reason not utf-8", compensate.Event{ID: good, Reason: "\xff"}, "UTF-8"},
		{"bad occurred_at", compensate.Event{ID: good, Reason: "r", OccurredAt: "yesterday"}, "RFC 3339"},
		{"bad source", compensate.Event{ID: good, Reason: "r", Source: "a b"}, "source"},
		{"long event id", compensate.Event{ID: good, Reason: "r", EventID: strings.Repeat("e", 129)}, "event_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.ev.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("valid event refused: %v", err)
				}
				return
			}
			if !errors.Is(err, compensate.ErrMalformed) || !compensate.Permanent(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrMalformed mentioning %q", err, tc.want)
			}
		})
	}
}

// TestBarrierCases delivers one failure event 5 times, interleaved with a
// commit, for a pending, a committed and an unknown ID: one effect, one
// audit entry, the same answer every time; a commit or registration after
// the compensation is refused (hanging).
func TestBarrierCases(t *testing.T) {
	e := newEnv(t)
	store := e.store()
	aud, path := e.auditLog("core")
	core := e.core(store, aud, e.rdb)
	ctx := context.Background()
	ids := pendingIDs(t, store, 2)
	pending, committed, unknown := ids[0], ids[1], newIDs(1)[0]
	if _, _, err := store.Transition(ctx, committed, registry.Change{To: registry.Committed, Actor: "svc-payments", NowMS: testMS + 1}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		id    idcodec.ID
		first compensate.Case
	}{
		{"pending", pending, compensate.CaseApplied},
		{"committed", committed, compensate.CaseApplied},
		{"unknown", unknown, compensate.CaseNullCompensation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := compensate.Event{EventID: "evt-" + tc.name, ID: tc.id.String(), Reason: "card declined", Source: "payments"}
			var results []compensate.Result
			for i := range 5 {
				if i == 2 {
					// The saga's commit arrives late: refused, state unchanged.
					_, _, err := store.Transition(ctx, tc.id, registry.Change{To: registry.Committed, Actor: "svc-payments", NowMS: testMS + 2})
					if !errors.Is(err, registry.ErrConflict) {
						t.Fatalf("commit after compensation: %v, want ErrConflict", err)
					}
				}
				ev.Redelivered = i > 0 // a transport redelivering: still no second entry
				res, err := core.Compensate(ctx, ev)
				if err != nil {
					t.Fatalf("delivery %d: %v", i+1, err)
				}
				results = append(results, res)
			}
			if results[0].Case != tc.first {
				t.Fatalf("first delivery: case %s, want %s", results[0].Case, tc.first)
			}
			for i, r := range results[1:] {
				if r.Case != compensate.CaseDuplicate || r.Answer != results[0].Answer || r.AuditRecovered {
					t.Fatalf("delivery %d: %+v, want a duplicate with answer %+v", i+2, r, results[0].Answer)
				}
				if r != results[1] {
					t.Fatalf("duplicates differ: %+v vs %+v", r, results[1])
				}
			}
			a := results[0].Answer
			if a.State != "compensated" || a.Reason != "card declined" || a.CompensatedAt == "" || (tc.id == committed) != (a.CommittedAt != "") {
				t.Fatalf("answer %+v", a)
			}
			if n := compensatedSteps(t, store, tc.id); n != 1 {
				t.Fatalf("%d compensated steps in the history, want 1", n)
			}
			got := perResource(auditLines(t, audit.ActionCompensate, path))[tc.id.String()]
			if got != 1 {
				t.Fatalf("%d audit entries for %s, want 1", got, tc.id)
			}
		})
	}
	// Hanging: a late registration of the tombstoned ID is refused.
	if _, err := store.Register(ctx, registry.Issue{Records: []registry.Record{{ID: unknown, State: registry.Pending, IssuedAtMS: testMS}}}, 0, testMS); err == nil {
		t.Fatal("registration over a null-compensation tombstone succeeded")
	}
	evs := auditLines(t, audit.ActionCompensate, path)
	for _, ev := range evs {
		if ev.Actor != "compensate:payments" || ev.Source != "payments" || !strings.HasPrefix(ev.RequestID, "evt-") {
			t.Fatalf("audit entry %+v", ev)
		}
	}
}

// TestConcurrentCompensationsOneEffect: 16 concurrent compensations of one
// ID through 2 instances (each its own registry client and audit log).
func TestConcurrentCompensationsOneEffect(t *testing.T) {
	e := newEnv(t)
	stores := []*redisstore.Store{e.store(), e.store()}
	aud1, p1 := e.auditLog("i1")
	aud2, p2 := e.auditLog("i2")
	cores := []*compensate.Core{e.core(stores[0], aud1, e.client()), e.core(stores[1], aud2, e.client())}
	for round := range 20 {
		id := pendingIDs(t, stores[0], 1)[0]
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			cases   = map[compensate.Case]int{}
			answers = map[compensate.Answer]int{}
		)
		start := make(chan struct{})
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				res, err := cores[i%2].Compensate(context.Background(), compensate.Event{ID: id.String(), Reason: "timeout upstream", Source: "orders"})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				cases[res.Case]++
				answers[res.Answer]++
				mu.Unlock()
			}()
		}
		close(start)
		wg.Wait()
		if cases[compensate.CaseApplied] != 1 || cases[compensate.CaseDuplicate] != 15 || len(answers) != 1 {
			t.Fatalf("round %d: cases %v, %d distinct answers; want 1 applied, 15 duplicates, 1 answer", round, cases, len(answers))
		}
		if n := perResource(auditLines(t, audit.ActionCompensate, p1, p2))[id.String()]; n != 1 {
			t.Fatalf("round %d: %d audit entries, want 1", round, n)
		}
	}
}
