package saga_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/saga"
	"github.com/idgen/idgen/shared/saga/sagatest"
)

// onceMarkers are the real markers Once is tested with: RedisMarks and
// StoreMarks over both embedded engines.
func onceMarkers(t *testing.T) map[string]func(t *testing.T) saga.Marker {
	out := map[string]func(t *testing.T) saga.Marker{
		"redis": func(t *testing.T) saga.Marker {
			e := sagatest.NewEnv(t, sharedRedis)
			return e.Marks(e.RDB)
		},
	}
	for _, eng := range engines {
		out[eng.name] = func(t *testing.T) saga.Marker {
			return &saga.StoreMarks{Store: eng.open(t, t.TempDir(), &disk{})}
		}
	}
	return out
}

// effect is a record compensated by actor for reason at atMS, and the
// entry that audits it.
func effect(actor, reason string, atMS int64) (registry.Record, audit.Event) {
	id := sagatest.NewIDs(1)[0]
	rec := registry.Record{ID: id, State: registry.Compensated, History: []registry.Step{
		{State: registry.Pending, AtMS: atMS - 1, Actor: "s"},
		{State: registry.Compensated, AtMS: atMS, Reason: reason, Actor: actor},
	}}
	return rec, audit.Event{Actor: actor, Action: audit.ActionCompensate, Resource: id.String(), Outcome: registry.Applied.String(), Reason: reason}
}

// entries counts the entries of path per resource and how many of them
// are marked recovered.
func entries(t *testing.T, path string, id idcodec.ID) (n, recovered int) {
	t.Helper()
	for _, l := range sagatest.AuditLines(t, audit.ActionCompensate, path) {
		if l.Resource == id.String() {
			n++
			if l.Recovered {
				recovered++
			}
		}
	}
	return n, recovered
}

// TestOnce: with each real marker, one entry per effect whatever the
// attempts: an entry the audit log refused is written by the next
// Recover, and concurrent Recovers overlapping the effect's own Write
// write one entry between them.
func TestOnce(t *testing.T) {
	ctx := context.Background()
	for name, newMarks := range onceMarkers(t) {
		t.Run(name, func(t *testing.T) {
			env := sagatest.NewEnv(t, sharedRedis)

			t.Run("refused then recovered", func(t *testing.T) {
				aud, path := env.AuditLog("refused")
				fa := &flakyAudit{next: aud}
				fa.failN.Store(1)
				o := saga.Once{Audit: fa, Marks: newMarks(t)}
				rec, e := effect("system", "timeout", sagatest.NowMS())
				if w, err := o.Write(ctx, rec.ID, e); !errors.Is(err, saga.ErrAudit) || errors.Is(err, saga.ErrAuditBusy) || w.Wrote {
					t.Fatalf("refused write: %+v, %v; want ErrAudit, not busy (the claim is released)", w, err)
				}
				if w, err := o.Recover(ctx, rec, registry.Compensated, e); err != nil || !w.Wrote || w.MarkErr != nil {
					t.Fatalf("recover: %+v, %v; want the entry written and marked", w, err)
				}
				for range 3 {
					if w, err := o.Recover(ctx, rec, registry.Compensated, e); err != nil || w.Wrote {
						t.Fatalf("later recover: %+v, %v; want nothing written", w, err)
					}
				}
				if n, r := entries(t, path, rec.ID); n != 1 || r != 1 {
					t.Fatalf("%d entries (%d recovered), want 1 marked recovered", n, r)
				}
			})

			t.Run("overlapping attempts", func(t *testing.T) {
				aud, path := env.AuditLog("overlap")
				marks := newMarks(t)
				rec, e := effect("compensate:payments", "card declined", sagatest.NowMS())
				var wg sync.WaitGroup
				var wrote atomic.Int64
				for i := range 9 {
					wg.Go(func() {
						o := saga.Once{Audit: aud, Marks: marks}
						for {
							var w saga.Written
							var err error
							if i == 0 {
								w, err = o.Write(ctx, rec.ID, e)
							} else {
								w, err = o.Recover(ctx, rec, registry.Compensated, e)
							}
							if errors.Is(err, saga.ErrAuditBusy) {
								time.Sleep(time.Millisecond)
								continue
							}
							if err != nil {
								t.Error(err)
							}
							if w.Wrote {
								wrote.Add(1)
							}
							return
						}
					})
				}
				wg.Wait()
				if n, _ := entries(t, path, rec.ID); n != 1 || wrote.Load() != 1 {
					t.Fatalf("%d entries, %d calls wrote; want 1", n, wrote.Load())
				}
			})

			t.Run("not its effect", func(t *testing.T) {
				aud, path := env.AuditLog("other")
				o := saga.Once{Audit: aud, Marks: newMarks(t), RecoverWithin: time.Hour}
				rec, e := effect("system", "timeout", sagatest.NowMS())
				old, _ := effect("system", "timeout", sagatest.NowMS()-2*time.Hour.Milliseconds())
				for _, c := range []struct {
					name string
					rec  registry.Record
					to   registry.State
					e    func(audit.Event) audit.Event
				}{
					{"other actor", rec, registry.Compensated, func(e audit.Event) audit.Event { e.Actor = "alice"; return e }},
					{"other reason", rec, registry.Compensated, func(e audit.Event) audit.Event { e.Reason = "deadline"; return e }},
					{"other state", rec, registry.Committed, func(e audit.Event) audit.Event { return e }},
					{"older than RecoverWithin", old, registry.Compensated, func(e audit.Event) audit.Event { e.Resource = old.ID.String(); return e }},
				} {
					if w, err := o.Recover(ctx, c.rec, c.to, c.e(e)); err != nil || w.Wrote {
						t.Errorf("%s: %+v, %v; want nothing written", c.name, w, err)
					}
				}
				if n := len(sagatest.AuditLines(t, audit.ActionCompensate, path)); n != 0 {
					t.Fatalf("%d entries, want none", n)
				}
			})
		})
	}
}

// TestOnceWithoutMarks: Write writes, at most once per call; Recover
// writes nothing (nothing tells whether the effect's own attempt wrote).
func TestOnceWithoutMarks(t *testing.T) {
	env := sagatest.NewEnv(t, sharedRedis)
	aud, path := env.AuditLog("plain")
	fa := &flakyAudit{next: aud}
	fa.failN.Store(1)
	o := saga.Once{Audit: fa}
	rec, e := effect("system", "timeout", sagatest.NowMS())
	ctx := context.Background()
	if _, err := o.Write(ctx, rec.ID, e); !errors.Is(err, saga.ErrAudit) {
		t.Fatalf("refused write: %v, want ErrAudit", err)
	}
	if w, err := o.Recover(ctx, rec, registry.Compensated, e); err != nil || w.Wrote {
		t.Fatalf("recover without marks: %+v, %v; want nothing written", w, err)
	}
	if w, err := o.Write(ctx, rec.ID, e); err != nil || !w.Wrote {
		t.Fatalf("write: %+v, %v", w, err)
	}
	if n, r := entries(t, path, rec.ID); n != 1 || r != 0 {
		t.Fatalf("%d entries (%d recovered), want 1 not recovered", n, r)
	}
}

// faultyMarks fails its first claimN claims with a plain error (the marks
// cannot be reached) and every mark while markFails is set.
type faultyMarks struct {
	saga.Marker
	claimN    atomic.Int64
	markFails atomic.Bool
}

var _ saga.Marker = (*faultyMarks)(nil)

func (f *faultyMarks) Claim(ctx context.Context, id idcodec.ID, token string) (bool, error) {
	if f.claimN.Add(-1) >= 0 {
		return false, errors.New("connection reset")
	}
	return f.Marker.Claim(ctx, id, token)
}

func (f *faultyMarks) Mark(ctx context.Context, id idcodec.ID, token string) error {
	if f.markFails.Load() {
		return errors.New("connection reset")
	}
	return f.Marker.Mark(ctx, id, token)
}

// TestOnceMarksFaults: a claim that cannot reach the marks is retried; a
// mark never stored is reported (MarkErr) with the entry written, and the
// entry's lease keeps a Recover off until it runs out.
func TestOnceMarksFaults(t *testing.T) {
	env := sagatest.NewEnv(t, sharedRedis)
	ctx := context.Background()
	aud, path := env.AuditLog("faults")
	fm := &faultyMarks{Marker: env.Marks(env.RDB)}
	o := saga.Once{Audit: aud, Marks: fm}

	rec, e := effect("system", "timeout", sagatest.NowMS())
	fm.claimN.Store(2)
	if w, err := o.Write(ctx, rec.ID, e); err != nil || !w.Wrote || w.MarkErr != nil {
		t.Fatalf("write after two failed claims: %+v, %v", w, err)
	}

	rec, e = effect("system", "timeout", sagatest.NowMS())
	fm.markFails.Store(true)
	start := time.Now()
	w, err := o.Write(ctx, rec.ID, e)
	if err != nil || !w.Wrote || w.MarkErr == nil {
		t.Fatalf("write with marks refused: %+v, %v; want written with MarkErr", w, err)
	}
	if took := time.Since(start); took < 4*time.Second {
		t.Errorf("mark given up after %v, want about 5s of retries", took)
	}
	fm.markFails.Store(false)
	if _, err := o.Recover(ctx, rec, registry.Compensated, e); !errors.Is(err, saga.ErrAuditBusy) {
		t.Fatalf("recover under the unmarked entry's lease: %v, want ErrAuditBusy", err)
	}
	if n := len(sagatest.AuditLines(t, audit.ActionCompensate, path)); n != 2 {
		t.Fatalf("%d entries, want 2", n)
	}
}
