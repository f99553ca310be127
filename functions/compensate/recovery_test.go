package compensate_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/idgen/idgen/functions/compensate"
	"github.com/idgen/idgen/shared/audit"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// flakyRegistry fails the first failN transitions without touching the
// registry and, when lostN > 0, then stores lostN transitions but reports
// them as failed (a response lost with the connection).
type flakyRegistry struct {
	next         compensate.Transitioner
	failN, lostN atomic.Int64
	calls        atomic.Int64
}

var _ compensate.Transitioner = (*flakyRegistry)(nil)

func (f *flakyRegistry) Transition(ctx context.Context, id idcodec.ID, ch registry.Change) (registry.Record, registry.Outcome, error) {
	f.calls.Add(1)
	if f.failN.Add(-1) >= 0 {
		return registry.Record{}, 0, registry.ErrUnavailable
	}
	rec, out, err := f.next.Transition(ctx, id, ch)
	if err == nil && f.lostN.Add(-1) >= 0 {
		return registry.Record{}, 0, registry.ErrUnavailable
	}
	return rec, out, err
}

// flakyAudit fails the first failN records.
type flakyAudit struct {
	next  compensate.Recorder
	failN atomic.Int64
}

var _ compensate.Recorder = (*flakyAudit)(nil)

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
	e := newEnv(t)
	store := e.store()
	ctx := context.Background()

	t.Run("died after the effect", func(t *testing.T) {
		aud, path := e.auditLog("died")
		core := e.core(store, aud, e.rdb)
		id := pendingIDs(t, store, 1)[0]
		ev := compensate.Event{ID: id.String(), Reason: "card declined", Source: "payments"}
		// The dead attempt's effect, never audited.
		if _, _, err := store.Transition(ctx, id, registry.Change{To: registry.Compensated, Reason: ev.Reason, Actor: ev.Actor(), NowMS: nowMS()}); err != nil {
			t.Fatal(err)
		}
		res, err := core.Compensate(ctx, ev)
		if err != nil || res.Case != compensate.CaseDuplicate || res.AuditRecovered {
			t.Fatalf("first delivery: %+v, %v; want a plain duplicate (no recovery without a redelivery)", res, err)
		}
		ev.Redelivered = true
		res, err = core.Compensate(ctx, ev)
		if err != nil || res.Case != compensate.CaseDuplicate || !res.AuditRecovered {
			t.Fatalf("redelivery: %+v, %v; want a duplicate that recovered the audit entry", res, err)
		}
		for range 3 {
			if res, err := core.Compensate(ctx, ev); err != nil || res.AuditRecovered {
				t.Fatalf("later redelivery: %+v, %v", res, err)
			}
		}
		lines := auditLines(t, audit.ActionCompensate, path)
		if len(lines) != 1 || lines[0].Outcome != string(compensate.CaseApplied) || lines[0].Resource != id.String() {
			t.Fatalf("audit %+v, want one applied entry", lines)
		}
	})

	t.Run("effect of another actor is not recovered", func(t *testing.T) {
		aud, path := e.auditLog("other")
		core := e.core(store, aud, e.rdb)
		id := pendingIDs(t, store, 1)[0]
		// POST /compensate or the sweeper did it, and audited it themselves.
		if _, _, err := store.Transition(ctx, id, registry.Change{To: registry.Compensated, Reason: "timeout", Actor: "system", NowMS: nowMS()}); err != nil {
			t.Fatal(err)
		}
		for _, ev := range []compensate.Event{
			{ID: id.String(), Reason: "timeout", Redelivered: true},
			{ID: id.String(), Reason: "card declined", Source: "payments", Redelivered: true},
		} {
			if res, err := core.Compensate(ctx, ev); err != nil || res.AuditRecovered {
				t.Fatalf("%+v: %+v, %v", ev, res, err)
			}
		}
		if n := len(auditLines(t, audit.ActionCompensate, path)); n != 0 {
			t.Fatalf("%d audit entries, want none", n)
		}
	})

	t.Run("audit write failed", func(t *testing.T) {
		aud, path := e.auditLog("flaky")
		fa := &flakyAudit{next: aud}
		fa.failN.Store(1)
		core := e.core(store, fa, e.rdb)
		id := pendingIDs(t, store, 1)[0]
		ev := compensate.Event{ID: id.String(), Reason: "r"}
		_, err := core.Compensate(ctx, ev)
		if !errors.Is(err, compensate.ErrAudit) || compensate.Permanent(err) {
			t.Fatalf("err = %v, want transient ErrAudit", err)
		}
		ev.Redelivered = true
		if res, err := core.Compensate(ctx, ev); err != nil || !res.AuditRecovered {
			t.Fatalf("retry: %+v, %v", res, err)
		}
		if n := perResource(auditLines(t, audit.ActionCompensate, path))[id.String()]; n != 1 {
			t.Fatalf("%d audit entries, want 1", n)
		}
	})

	t.Run("response lost", func(t *testing.T) {
		aud, path := e.auditLog("lost")
		fr := &flakyRegistry{next: store}
		fr.lostN.Store(1)
		core := e.core(fr, aud, e.rdb)
		id := newIDs(1)[0] // a null compensation this time
		ev := compensate.Event{ID: id.String(), Reason: "r"}
		if _, err := core.Compensate(ctx, ev); !errors.Is(err, registry.ErrUnavailable) || compensate.Permanent(err) {
			t.Fatalf("err = %v, want transient ErrUnavailable", err)
		}
		ev.Redelivered = true
		if res, err := core.Compensate(ctx, ev); err != nil || !res.AuditRecovered || res.Case != compensate.CaseDuplicate {
			t.Fatalf("retry: %+v, %v", res, err)
		}
		lines := auditLines(t, audit.ActionCompensate, path)
		if len(lines) != 1 || lines[0].Outcome != string(compensate.CaseNullCompensation) {
			t.Fatalf("audit %+v, want one null_compensation entry", lines)
		}
	})

	t.Run("without marks at most once", func(t *testing.T) {
		aud, path := e.auditLog("plain")
		id := pendingIDs(t, store, 1)[0]
		ev := compensate.Event{ID: id.String(), Reason: "r", Redelivered: true}
		for i := range 3 {
			res, err := compensate.Compensate(ctx, store, aud, ev)
			if err != nil || (i == 0) != (res.Case == compensate.CaseApplied) {
				t.Fatalf("delivery %d: %+v, %v", i+1, res, err)
			}
		}
		if n := len(auditLines(t, audit.ActionCompensate, path)); n != 1 {
			t.Fatalf("%d audit entries, want 1", n)
		}
	})
}
