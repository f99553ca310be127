package saga_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/saga"
	"github.com/idgen/idgen/shared/saga/sagatest"
)

// flakyAudit fails the first failN records.
type flakyAudit struct {
	next  saga.Recorder
	failN atomic.Int64
}

var _ saga.Recorder = (*flakyAudit)(nil)

func (f *flakyAudit) Record(e audit.Event) error {
	if f.failN.Add(-1) >= 0 {
		return errors.New("disk full")
	}
	return f.next.Record(e)
}

// TestAuditRecovery covers the window between a stored effect and its audit
// entry: a worker that died there (or failed to write the entry) leaves
// the effect unaudited, and the redelivery writes the entry, once.
func TestAuditRecovery(t *testing.T) {
	e := sagatest.NewEnv(t, sharedRedis)
	store := e.Store()
	ctx := context.Background()

	t.Run("died after the effect", func(t *testing.T) {
		aud, path := e.AuditLog("died")
		core := e.Core(store, aud, e.RDB)
		id := sagatest.PendingIDs(t, store, 1)[0]
		ev := saga.Event{ID: id.String(), Reason: "card declined", Source: "payments"}
		// The dead attempt's effect, never audited.
		if _, _, err := store.Transition(ctx, id, registry.Change{To: registry.Compensated, Reason: ev.Reason, Actor: ev.Actor(), NowMS: sagatest.NowMS()}); err != nil {
			t.Fatal(err)
		}
		res, err := core.Compensate(ctx, ev)
		if err != nil || res.Outcome != registry.Replayed || res.AuditRecovered {
			t.Fatalf("first delivery: %+v, %v; want a plain duplicate (no recovery without a redelivery)", res, err)
		}
		ev.Redelivered = true
		res, err = core.Compensate(ctx, ev)
		if err != nil || res.Outcome != registry.Replayed || !res.AuditRecovered {
			t.Fatalf("redelivery: %+v, %v; want a duplicate that recovered the audit entry", res, err)
		}
		for range 3 {
			if res, err := core.Compensate(ctx, ev); err != nil || res.AuditRecovered {
				t.Fatalf("later redelivery: %+v, %v", res, err)
			}
		}
		lines := sagatest.AuditLines(t, audit.ActionCompensate, path)
		if len(lines) != 1 || lines[0].Outcome != registry.Applied.String() || lines[0].Resource != id.String() || !lines[0].Recovered {
			t.Fatalf("audit %+v, want one applied entry marked recovered", lines)
		}
	})

	t.Run("effect of another actor is not recovered", func(t *testing.T) {
		aud, path := e.AuditLog("other")
		core := e.Core(store, aud, e.RDB)
		id := sagatest.PendingIDs(t, store, 1)[0]
		// POST /compensate or the sweeper did it, and audited it themselves.
		if _, _, err := store.Transition(ctx, id, registry.Change{To: registry.Compensated, Reason: "timeout", Actor: "system", NowMS: sagatest.NowMS()}); err != nil {
			t.Fatal(err)
		}
		for _, ev := range []saga.Event{
			{ID: id.String(), Reason: "timeout", Redelivered: true},
			{ID: id.String(), Reason: "card declined", Source: "payments", Redelivered: true},
		} {
			if res, err := core.Compensate(ctx, ev); err != nil || res.AuditRecovered {
				t.Fatalf("%+v: %+v, %v", ev, res, err)
			}
		}
		if n := len(sagatest.AuditLines(t, audit.ActionCompensate, path)); n != 0 {
			t.Fatalf("%d audit entries, want none", n)
		}
	})

	t.Run("audit write failed", func(t *testing.T) {
		aud, path := e.AuditLog("flaky")
		fa := &flakyAudit{next: aud}
		fa.failN.Store(1)
		core := e.Core(store, fa, e.RDB)
		id := sagatest.PendingIDs(t, store, 1)[0]
		ev := saga.Event{ID: id.String(), Reason: "r"}
		_, err := core.Compensate(ctx, ev)
		if !errors.Is(err, saga.ErrAudit) || saga.Permanent(err) {
			t.Fatalf("err = %v, want transient ErrAudit", err)
		}
		ev.Redelivered = true
		if res, err := core.Compensate(ctx, ev); err != nil || !res.AuditRecovered {
			t.Fatalf("retry: %+v, %v", res, err)
		}
		if n := sagatest.PerResource(sagatest.AuditLines(t, audit.ActionCompensate, path))[id.String()]; n != 1 {
			t.Fatalf("%d audit entries, want 1", n)
		}
	})

	t.Run("response lost", func(t *testing.T) {
		aud, path := e.AuditLog("lost")
		fr := &sagatest.FlakyRegistry{Next: store}
		fr.LostN.Store(1)
		core := e.Core(fr, aud, e.RDB)
		id := sagatest.NewIDs(1)[0] // a null compensation this time
		ev := saga.Event{ID: id.String(), Reason: "r"}
		if _, err := core.Compensate(ctx, ev); !errors.Is(err, registry.ErrUnavailable) || saga.Permanent(err) {
			t.Fatalf("err = %v, want transient ErrUnavailable", err)
		}
		ev.Redelivered = true
		if res, err := core.Compensate(ctx, ev); err != nil || !res.AuditRecovered || res.Outcome != registry.Replayed {
			t.Fatalf("retry: %+v, %v", res, err)
		}
		lines := sagatest.AuditLines(t, audit.ActionCompensate, path)
		if len(lines) != 1 || lines[0].Outcome != registry.Tombstoned.String() {
			t.Fatalf("audit %+v, want one null_compensation entry", lines)
		}
	})

	t.Run("recover within", func(t *testing.T) {
		aud, path := e.AuditLog("within")
		core := e.Core(store, aud, e.RDB)
		id := sagatest.PendingIDs(t, store, 1)[0]
		ev := saga.Event{ID: id.String(), Reason: "r", Redelivered: true}
		// The dead attempt's effect, an hour old and never audited.
		if _, _, err := store.Transition(ctx, id, registry.Change{To: registry.Compensated, Reason: ev.Reason, Actor: ev.Actor(), NowMS: sagatest.NowMS() - time.Hour.Milliseconds()}); err != nil {
			t.Fatal(err)
		}
		core.RecoverWithin = 30 * time.Minute // older: its mark may be gone
		if res, err := core.Compensate(ctx, ev); err != nil || res.AuditRecovered {
			t.Fatalf("older than RecoverWithin: %+v, %v", res, err)
		}
		core.RecoverWithin = 2 * time.Hour
		if res, err := core.Compensate(ctx, ev); err != nil || !res.AuditRecovered {
			t.Fatalf("within RecoverWithin: %+v, %v", res, err)
		}
		if n := len(sagatest.AuditLines(t, audit.ActionCompensate, path)); n != 1 {
			t.Fatalf("%d audit entries, want 1", n)
		}
	})

	t.Run("without marks at most once", func(t *testing.T) {
		aud, path := e.AuditLog("plain")
		id := sagatest.PendingIDs(t, store, 1)[0]
		ev := saga.Event{ID: id.String(), Reason: "r", Redelivered: true}
		for i := range 3 {
			res, err := saga.Compensate(ctx, store, aud, ev)
			if err != nil || (i == 0) != (res.Outcome == registry.Applied) {
				t.Fatalf("delivery %d: %+v, %v", i+1, res, err)
			}
		}
		if n := len(sagatest.AuditLines(t, audit.ActionCompensate, path)); n != 1 {
			t.Fatalf("%d audit entries, want 1", n)
		}
	})
}
