package saga_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/redisstore"
	"github.com/idgen/idgen/shared/saga"
	"github.com/idgen/idgen/shared/saga/sagatest"
)

func TestValidate(t *testing.T) {
	good := sagatest.NewIDs(1)[0].String()
	for _, tc := range []struct {
		name string
		ev   saga.Event
		want string // "" = valid; else a substring of the error
	}{
		{"minimal", saga.Event{ID: good, Reason: "payment failed"}, ""},
		{"full", saga.Event{EventID: "evt-1", ID: good, Reason: "r", OccurredAt: "2026-01-02T03:04:05.678Z", Source: "payments/v2"}, ""},
		{"missing id", saga.Event{Reason: "r"}, "missing id"},
		{"bad id", saga.Event{ID: "not-an-id", Reason: "r"}, "not an idgen ID"},
		{"uuid v4", saga.Event{ID: "6ba7b810-9dad-41d1-80b4-00c04fd430c8", Reason: "r"}, "not an idgen ID"},
		{"missing reason", saga.Event{ID: good}, "missing reason"},
		{"long reason", saga.Event{ID: good, Reason: strings.Repeat("x", 257)}, "longer than"},
		{"reason not utf-8", saga.Event{ID: good, Reason: "\xff"}, "UTF-8"},
		{"bad occurred_at", saga.Event{ID: good, Reason: "r", OccurredAt: "yesterday"}, "RFC 3339"},
		{"bad source", saga.Event{ID: good, Reason: "r", Source: "a b"}, "source"},
		{"long event id", saga.Event{ID: good, Reason: "r", EventID: strings.Repeat("e", 129)}, "event_id"},
		{"caller without reason", saga.Event{ID: good, Caller: "alice"}, ""},
		{"caller with a long reason", saga.Event{ID: good, Caller: "alice", Reason: strings.Repeat("x", 257)}, "longer than"},
		{"caller with a bad source", saga.Event{ID: good, Caller: "alice", Source: "a b"}, "source"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.ev.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("valid event refused: %v", err)
				}
				return
			}
			if !errors.Is(err, saga.ErrMalformed) || !saga.Permanent(err) || !strings.Contains(err.Error(), tc.want) {
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
	e := sagatest.NewEnv(t, sharedRedis)
	store := e.Store()
	aud, path := e.AuditLog("core")
	core := e.Core(store, aud, e.RDB)
	ctx := context.Background()
	ids := sagatest.PendingIDs(t, store, 2)
	pending, committed, unknown := ids[0], ids[1], sagatest.NewIDs(1)[0]
	if _, _, err := store.Transition(ctx, committed, registry.Change{To: registry.Committed, Actor: "svc-payments", NowMS: sagatest.TestMS + 1}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		id    idcodec.ID
		first registry.Outcome
	}{
		{"pending", pending, registry.Applied},
		{"committed", committed, registry.Applied},
		{"unknown", unknown, registry.Tombstoned},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := saga.Event{EventID: "evt-" + tc.name, ID: tc.id.String(), Reason: "card declined", Source: "payments"}
			var results []saga.Result
			for i := range 5 {
				if i == 2 {
					// The saga's commit arrives late: refused, state unchanged.
					_, _, err := store.Transition(ctx, tc.id, registry.Change{To: registry.Committed, Actor: "svc-payments", NowMS: sagatest.TestMS + 2})
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
			if results[0].Outcome != tc.first {
				t.Fatalf("first delivery: case %s, want %s", results[0].Outcome, tc.first)
			}
			for i, r := range results[1:] {
				if r.Outcome != registry.Replayed || r.Answer != results[0].Answer || r.AuditRecovered {
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
			if n := sagatest.CompensatedSteps(t, store, tc.id); n != 1 {
				t.Fatalf("%d compensated steps in the history, want 1", n)
			}
			got := sagatest.PerResource(sagatest.AuditLines(t, audit.ActionCompensate, path))[tc.id.String()]
			if got != 1 {
				t.Fatalf("%d audit entries for %s, want 1", got, tc.id)
			}
		})
	}
	// Hanging: a late registration of the tombstoned ID is refused.
	if _, err := store.Register(ctx, registry.Issue{Records: []registry.Record{{ID: unknown, State: registry.Pending, IssuedAtMS: sagatest.TestMS}}}, 0, sagatest.TestMS); err == nil {
		t.Fatal("registration over a null-compensation tombstone succeeded")
	}
	evs := sagatest.AuditLines(t, audit.ActionCompensate, path)
	for _, ev := range evs {
		if ev.Actor != "compensate:payments" || ev.Source != "payments" || !strings.HasPrefix(ev.RequestID, "evt-") {
			t.Fatalf("audit entry %+v", ev)
		}
	}
}

// TestConcurrentCompensationsOneEffect: 16 concurrent compensations of one
// ID through 2 instances (each its own registry client and audit log).
func TestConcurrentCompensationsOneEffect(t *testing.T) {
	e := sagatest.NewEnv(t, sharedRedis)
	stores := []*redisstore.Store{e.Store(), e.Store()}
	aud1, p1 := e.AuditLog("i1")
	aud2, p2 := e.AuditLog("i2")
	cores := []*saga.Core{e.Core(stores[0], aud1, e.Client()), e.Core(stores[1], aud2, e.Client())}
	for round := range 20 {
		id := sagatest.PendingIDs(t, stores[0], 1)[0]
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			cases   = map[registry.Outcome]int{}
			answers = map[saga.Answer]int{}
		)
		start := make(chan struct{})
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				res, err := cores[i%2].Compensate(context.Background(), saga.Event{ID: id.String(), Reason: "timeout upstream", Source: "orders"})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				cases[res.Outcome]++
				answers[res.Answer]++
				mu.Unlock()
			}()
		}
		close(start)
		wg.Wait()
		if cases[registry.Applied] != 1 || cases[registry.Replayed] != 15 || len(answers) != 1 {
			t.Fatalf("round %d: cases %v, %d distinct answers; want 1 applied, 15 duplicates, 1 answer", round, cases, len(answers))
		}
		if n := sagatest.PerResource(sagatest.AuditLines(t, audit.ActionCompensate, p1, p2))[id.String()]; n != 1 {
			t.Fatalf("round %d: %d audit entries, want 1", round, n)
		}
	}
}

// TestCallerIsActor: an event applied for an authenticated caller (POST
// /compensate) has the caller as actor, in the history and the audit
// entry, and keeps the envelope's source and event_id in the entry.
func TestCallerIsActor(t *testing.T) {
	e := sagatest.NewEnv(t, sharedRedis)
	store := e.Store()
	aud, path := e.AuditLog("caller")
	core := e.Core(store, aud, e.RDB)
	id := sagatest.PendingIDs(t, store, 1)[0]
	ev := saga.Event{EventID: "evt-9", ID: id.String(), Source: "payments", Caller: "alice"}
	if ev.Actor() != "alice" {
		t.Fatalf("actor %q", ev.Actor())
	}
	res, err := core.Compensate(context.Background(), ev)
	if err != nil || res.Outcome != registry.Applied || res.Answer.Reason != "" {
		t.Fatalf("%+v, %v", res, err)
	}
	rec, err := store.Get(context.Background(), id)
	if err != nil || rec.Last().Actor != "alice" {
		t.Fatalf("history %+v, %v", rec.History, err)
	}
	lines := sagatest.AuditLines(t, audit.ActionCompensate, path)
	if len(lines) != 1 || lines[0].Actor != "alice" || lines[0].Source != "payments" || lines[0].RequestID != "evt-9" || lines[0].Outcome != "applied" {
		t.Fatalf("audit %+v", lines)
	}
}

// TestResultJSON: a Result (the EventBridge Lambda's answer) names its
// outcome as the Idgen-Outcome header does, and no field beside the
// answer.
func TestResultJSON(t *testing.T) {
	for _, c := range []struct {
		out  registry.Outcome
		want string
	}{
		{registry.Applied, `{"outcome":"applied","answer":{"id":"x","state":"compensated","reason":"r"}}`},
		{registry.Replayed, `{"outcome":"replayed","answer":{"id":"x","state":"compensated","reason":"r"}}`},
		{registry.Tombstoned, `{"outcome":"null_compensation","answer":{"id":"x","state":"compensated","reason":"r"}}`},
	} {
		res := saga.Result{Outcome: c.out, Answer: saga.Answer{ID: "x", State: "compensated", Reason: "r"}, AuditRecovered: true, Unmarked: true, MarkErr: errors.New("m")}
		b, err := json.Marshal(res)
		if err != nil || string(b) != c.want {
			t.Errorf("%s: %s, %v; want %s", c.out, b, err, c.want)
		}
	}
}
