package sweeper

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/saga"
)

// maxSuspects bounds the suspects remembered; past it new ones are dropped
// (and logged), their audit entries possibly lost.
const maxSuspects = 100_000

// sweep compensates one page of expired IDs concurrently and returns the
// page's size.
func (s *Sweeper) sweep(ctx context.Context) (int, error) {
	now := s.cfg.Now().UnixMilli()
	ids, err := s.d.Store.Expired(ctx, now, page)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	var (
		wg                        sync.WaitGroup
		compensated, skipped, bad atomic.Int64
	)
	for _, id := range ids {
		wg.Go(func() {
			_, _, err := s.d.Store.Transition(ctx, id, registry.Change{
				To: registry.Compensated, From: registry.Pending, Reason: saga.ReasonTimeout, Actor: saga.ActorSystem, NowMS: now,
			})
			switch {
			case err == nil:
				compensated.Add(1)
				w, err := s.once.Write(ctx, id, entry(id))
				s.audited(id, w, err)
			case errors.Is(err, registry.ErrConflict):
				// Committed meanwhile, or compensated by a late commit
				// (audited by that request): not the sweeper's.
				skipped.Add(1)
			case ctx.Err() != nil:
				// Shutting down: the deadline index keeps it for the next start.
			default:
				bad.Add(1)
				if errors.Is(err, registry.ErrUnavailable) {
					s.suspect(id) // the write may have been applied
				}
				s.d.Logger.Warn("compensating", zap.Stringer("id", id), zap.Error(err))
			}
		})
	}
	wg.Wait()
	if compensated.Load() > 0 {
		s.d.Logger.Info("compensated IDs past their deadline", zap.Int64("count", compensated.Load()),
			zap.Int64("not_pending", skipped.Load()), zap.Int64("failed", bad.Load()), zap.String("reason", saga.ReasonTimeout))
	}
	return len(ids), nil
}

// entry is the audit entry of id's timeout compensation.
func entry(id idcodec.ID) audit.Event {
	return audit.Event{
		Actor: saga.ActorSystem, Action: audit.ActionCompensate, Resource: id.String(),
		Outcome: registry.Applied.String(), Reason: saga.ReasonTimeout,
	}
}

// audited settles id after its entry was written (err nil: by this call or
// another sweeper, or it is not the sweeper's to write) or not (err: id is
// a suspect until it is).
func (s *Sweeper) audited(id idcodec.ID, w saga.Written, err error) {
	if w.MarkErr != nil {
		s.d.Logger.Warn("audit mark not stored; a retry after the lease may repeat the entry", zap.Stringer("id", id), zap.Error(w.MarkErr))
	}
	if err == nil {
		s.mu.Lock()
		delete(s.suspects, id)
		s.mu.Unlock()
		return
	}
	s.suspect(id)
	if errors.Is(err, saga.ErrAuditBusy) {
		s.d.Logger.Info("another attempt holds the audit claim; will retry", zap.Stringer("id", id))
		return
	}
	s.d.Logger.Warn("audit entry not written; will retry", zap.Stringer("id", id), zap.Error(err))
}

// suspect keeps id to be read again at the next ticks.
func (s *Sweeper) suspect(id idcodec.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.suspects[id]; ok {
		return
	}
	if len(s.suspects) >= maxSuspects {
		s.d.Logger.Error("too many unresolved compensations; an audit entry may be lost", zap.Stringer("id", id))
		return
	}
	s.suspects[id] = s.cfg.Now()
}

// resolve reads the suspects again: one compensated by the sweeper gets
// its entry unless it is marked written (Once.Recover); a pending one is
// still in the deadline index (it will be swept); anything else is not
// the sweeper's. A suspect that cannot be read, or whose entry is not
// written, stays.
func (s *Sweeper) resolve(ctx context.Context) {
	now := s.cfg.Now()
	s.mu.Lock()
	ids := make([]idcodec.ID, 0, len(s.suspects))
	for id, since := range s.suspects {
		if now.Sub(since) > saga.DefaultRecoverWithin {
			delete(s.suspects, id)
			s.d.Logger.Error("compensation unresolved for a day; its audit entry may be lost", zap.Stringer("id", id))
			continue
		}
		ids = append(ids, id)
	}
	s.mu.Unlock()
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		rec, err := s.d.Store.Get(ctx, id)
		switch {
		case errors.Is(err, registry.ErrNotFound):
			s.audited(id, saga.Written{}, nil) // never registered: nothing to audit
		case err != nil:
			// Read again next time.
		default:
			w, err := s.once.Recover(ctx, rec, registry.Compensated, entry(id))
			if w.Wrote {
				s.d.Logger.Info("wrote the audit entry of a timeout compensation left unaudited", zap.Stringer("id", id))
			}
			s.audited(id, w, err)
		}
	}
}
