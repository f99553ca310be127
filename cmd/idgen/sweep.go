package main

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/idgen/idgen/shared/audit"
	"github.com/idgen/idgen/shared/registry"
)

// sweepPage is how many expired IDs one sweep step compensates; they are
// sent together so the store group-commits them.
const sweepPage = 512

// sweep compensates pending IDs past their deadline (reason "timeout"). In
// embedded mode one process owns the store, so one sweeper runs; with Redis
// every instance sweeps, and the compare-and-set from pending makes each
// compensation happen (and be audited) once, whoever wins. Pages are
// swept back to back while they come back full, so a burst of deadlines is
// caught up at group-commit speed rather than one tick per page.
func sweep(ctx context.Context, log *zap.Logger, store registryStore, auditLog *audit.Log, every time.Duration, idemTTL time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for ctx.Err() == nil {
			n, err := sweepOnce(ctx, log, store, auditLog)
			if err != nil && ctx.Err() == nil {
				log.Warn("sweeper: listing expired IDs", zap.Error(err))
			}
			if n < sweepPage {
				break
			}
		}
		if ctx.Err() != nil {
			return
		}
		if _, err := store.PurgeIdempotency(ctx, time.Now().Add(-idemTTL).UnixMilli(), 1000); err != nil && ctx.Err() == nil {
			log.Warn("sweeper: purging idempotency keys", zap.Error(err))
		}
	}
}

// sweepOnce compensates one page of expired IDs concurrently and returns the
// page size.
func sweepOnce(ctx context.Context, log *zap.Logger, store registryStore, auditLog *audit.Log) (int, error) {
	now := time.Now().UnixMilli()
	ids, err := store.Expired(ctx, now, sweepPage)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	var (
		wg                        sync.WaitGroup
		compensated, skipped, bad atomic.Int64
	)
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, out, err := store.Transition(ctx, id, registry.Change{To: registry.Compensated, From: registry.Pending, Reason: "timeout", Actor: "system", NowMS: now})
			switch {
			case err == nil:
				compensated.Add(1)
				if aerr := auditLog.Record(audit.Event{Actor: "system", Action: audit.ActionCompensate, Resource: id.String(), Outcome: out.String(), Reason: "timeout"}); aerr != nil {
					log.Error("audit: record failed", zap.Error(aerr))
				}
			case errors.Is(err, registry.ErrConflict):
				skipped.Add(1) // committed meanwhile: not ours to compensate
			case ctx.Err() != nil:
				// Shutting down: the deadline index keeps it for the next start.
			default:
				bad.Add(1)
				log.Warn("sweeper: compensating", zap.Stringer("id", id), zap.Error(err))
			}
		}()
	}
	wg.Wait()
	if compensated.Load() > 0 {
		log.Info("sweeper: compensated IDs past their deadline", zap.Int64("count", compensated.Load()),
			zap.Int64("committed_meanwhile", skipped.Load()), zap.Int64("failed", bad.Load()), zap.String("reason", "timeout"))
	}
	return len(ids), nil
}
