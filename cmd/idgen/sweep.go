package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/idgen/idgen/functions/generate"
	"github.com/idgen/idgen/shared/audit"
	"github.com/idgen/idgen/shared/compensation"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// sweepPage is how many expired IDs one sweep step compensates; they are
// sent together so the store group-commits them.
const sweepPage = 512

// sweepStore is what the sweeper needs of the registry.
type sweepStore interface {
	Expired(ctx context.Context, nowMS int64, limit int) ([]idcodec.ID, error)
	Transition(ctx context.Context, id idcodec.ID, ch registry.Change) (registry.Record, registry.Outcome, error)
	Get(ctx context.Context, id idcodec.ID) (registry.Record, error)
	PurgeIdempotency(ctx context.Context, cutoffMS int64, limit int) (int, error)
}

// sweepClaimer elects the one sweeper that writes the audit entry of a
// timeout compensation. Claim is idempotent for its caller: asked again
// after an error, it finds its own claim (won).
type sweepClaimer interface {
	Claim(ctx context.Context, id idcodec.ID) (bool, error)
}

// soleSweeper is the claimer of the embedded mode: one process sweeps.
type soleSweeper struct {
	// marks keeps the audit marks of the HTTP API in the embedded store
	// (httpCompensationMarks); nil: none.
	marks compensation.MarkStore
}

// markPurger deletes the audit marks that ran out
// (*compensation.StoreMarks).
type markPurger interface {
	Purge(ctx context.Context, limit int) (int, error)
}

func (soleSweeper) Claim(context.Context, idcodec.ID) (bool, error) { return true, nil }

// Sweeper's audit marks in Redis.
const (
	sweepMarkPrefix = "idgen:sweep:audited:"
	sweepMarkTTL    = 48 * time.Hour
)

// redisSweepClaims claims with SET NX of a token of this process; a claim
// found taken is ours when it holds our token, so a claim whose reply was
// lost is recognised as won when repeated.
type redisSweepClaims struct {
	client redis.Cmdable
	token  string
}

func newRedisSweepClaims(c redis.Cmdable) *redisSweepClaims {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return &redisSweepClaims{client: c, token: hex.EncodeToString(b)}
}

func (r *redisSweepClaims) Claim(ctx context.Context, id idcodec.ID) (bool, error) {
	key := sweepMarkPrefix + id.String()
	won, err := r.client.SetNX(ctx, key, r.token, sweepMarkTTL).Result()
	if err != nil || won {
		return won, err
	}
	holder, err := r.client.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return false, errors.New("sweep claim expired between SET NX and GET") // try again later
	}
	return err == nil && holder == r.token, err
}

// sweeper compensates pending IDs past their deadline (reason "timeout").
// In embedded mode one process owns the store, so one sweeper runs; with
// Redis every instance sweeps, and the compare-and-set from pending makes
// each compensation happen once, whoever wins.
//
// Audit: exactly one entry per timeout compensation, across instances.
// A transition can fail after its write was applied (durable mode: WAIT
// short of replicas after the script ran; a connection lost before the
// reply): the compensation then stands, and its ID has left the deadline
// index, so no later sweep sees it. Such IDs are kept as suspects and read
// again at the next sweeps; one compensated by the sweeper ("system",
// "timeout") is audited by the sweeper that claims it (sweepClaimer), and
// so is every applied one: claim, then audit. A process that dies between
// a claim and its entry, or with suspects unresolved, loses those entries.
type sweeper struct {
	log    *zap.Logger
	store  sweepStore
	audit  *audit.Log
	claims sweepClaimer
	leads  func(context.Context) (bool, error)
	leader bool // led at the last tick (for the log line of a change)
	// marks are purged after the idempotency keys at every tick it leads.
	marks []markPurger

	mu       sync.Mutex
	suspects map[idcodec.ID]time.Time // ambiguous outcomes, since when
}

// maxSuspects bounds the ambiguous outcomes remembered; past it new ones
// are dropped (and logged), their audit entries possibly lost.
const maxSuspects = 100_000

// suspectTTL is how long an unresolvable suspect is kept.
const suspectTTL = 24 * time.Hour

// newSweeper returns a sweeper; leads (nil: always) tells before each tick
// whether this instance is the one that sweeps now.
func newSweeper(log *zap.Logger, store sweepStore, auditLog *audit.Log, claims sweepClaimer, leads func(context.Context) (bool, error)) *sweeper {
	if leads == nil {
		leads = func(context.Context) (bool, error) { return true, nil }
	}
	return &sweeper{log: log, store: store, audit: auditLog, claims: claims, leads: leads, suspects: map[idcodec.ID]time.Time{}}
}

// run sweeps every tick until ctx ends. Pages are swept back to back while
// they come back full, so a burst of deadlines is caught up at
// group-commit speed rather than one tick per page.
func (s *sweeper) run(ctx context.Context, every time.Duration, idemTTL time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Suspects are this process's own ambiguous writes: resolved
		// whether it leads or not.
		s.resolve(ctx)
		if !s.lead(ctx) {
			continue
		}
		for ctx.Err() == nil {
			n, err := s.once(ctx)
			if err != nil && ctx.Err() == nil {
				s.log.Warn("sweeper: listing expired IDs", zap.Error(err))
			}
			if n < sweepPage {
				break
			}
		}
		if ctx.Err() != nil {
			return
		}
		if _, err := s.store.PurgeIdempotency(ctx, time.Now().Add(-idemTTL).UnixMilli(), 1000); err != nil && ctx.Err() == nil {
			s.log.Warn("sweeper: purging idempotency keys", zap.Error(err))
		}
		for _, m := range s.marks {
			if _, err := m.Purge(ctx, 1000); err != nil && ctx.Err() == nil {
				s.log.Warn("sweeper: purging audit marks", zap.Error(err))
			}
		}
	}
}

// lead asks whether this instance sweeps now and logs a change.
func (s *sweeper) lead(ctx context.Context) bool {
	ok, err := s.leads(ctx)
	if err != nil && ctx.Err() == nil {
		s.log.Debug("sweeper: not leading", zap.Error(err))
	}
	if ok != s.leader {
		s.leader = ok
		s.log.Info("sweeper: leadership changed", zap.Bool("leader", ok))
	}
	return ok
}

// once compensates one page of expired IDs concurrently and returns the
// page size.
func (s *sweeper) once(ctx context.Context) (int, error) {
	now := time.Now().UnixMilli()
	ids, err := s.store.Expired(ctx, now, sweepPage)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	var (
		wg                        sync.WaitGroup
		compensated, skipped, bad atomic.Int64
	)
	for _, id := range ids {
		wg.Go(func() {
			_, _, err := s.store.Transition(ctx, id, registry.Change{To: registry.Compensated, From: registry.Pending, Reason: generate.ReasonTimeout, Actor: generate.ActorSystem, NowMS: now})
			switch {
			case err == nil:
				compensated.Add(1)
				s.auditOnce(ctx, id)
			case errors.Is(err, registry.ErrConflict):
				skipped.Add(1) // committed meanwhile, or compensated by a late commit (generate.ReasonDeadline, audited by that request): not ours
			case ctx.Err() != nil:
				// Shutting down: the deadline index keeps it for the next start.
			default:
				bad.Add(1)
				if errors.Is(err, registry.ErrUnavailable) {
					s.suspect(id) // the write may have been applied
				}
				s.log.Warn("sweeper: compensating", zap.Stringer("id", id), zap.Error(err))
			}
		})
	}
	wg.Wait()
	if compensated.Load() > 0 {
		s.log.Info("sweeper: compensated IDs past their deadline", zap.Int64("count", compensated.Load()),
			zap.Int64("not_pending", skipped.Load()), zap.Int64("failed", bad.Load()), zap.String("reason", generate.ReasonTimeout))
	}
	return len(ids), nil
}

// auditOnce writes the audit entry of id's timeout compensation if this
// sweeper wins its claim; a claim that fails leaves id a suspect.
func (s *sweeper) auditOnce(ctx context.Context, id idcodec.ID) {
	won, err := s.claims.Claim(ctx, id)
	if err != nil {
		s.suspect(id)
		s.log.Warn("sweeper: audit claim failed; will retry", zap.Stringer("id", id), zap.Error(err))
		return
	}
	if !won {
		return // another sweeper audits it
	}
	if aerr := s.audit.Record(audit.Event{Actor: generate.ActorSystem, Action: audit.ActionCompensate, Resource: id.String(), Outcome: registry.Applied.String(), Reason: generate.ReasonTimeout}); aerr != nil {
		s.log.Error("audit: record failed", zap.Error(aerr))
	}
	// Audited: a later resolve must not claim (its own claim: won) again.
	s.mu.Lock()
	delete(s.suspects, id)
	s.mu.Unlock()
}

func (s *sweeper) suspect(id idcodec.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.suspects[id]; ok {
		return
	}
	if len(s.suspects) >= maxSuspects {
		s.log.Error("sweeper: too many unresolved compensations; an audit entry may be lost", zap.Stringer("id", id))
		return
	}
	s.suspects[id] = time.Now()
}

// resolve reads the suspects again: a pending one is still in the
// deadline index (it will be swept), one compensated by the sweeper is
// audited by whoever claims it, anything else is not the sweeper's.
func (s *sweeper) resolve(ctx context.Context) {
	s.mu.Lock()
	ids := make([]idcodec.ID, 0, len(s.suspects))
	for id, since := range s.suspects {
		if time.Since(since) > suspectTTL {
			delete(s.suspects, id)
			s.log.Error("sweeper: compensation outcome unresolved for a day; its audit entry may be lost", zap.Stringer("id", id))
			continue
		}
		ids = append(ids, id)
	}
	s.mu.Unlock()
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		rec, err := s.store.Get(ctx, id)
		if err != nil && !errors.Is(err, registry.ErrNotFound) {
			continue // read again next time
		}
		s.mu.Lock()
		delete(s.suspects, id)
		s.mu.Unlock()
		if err == nil && rec.State == registry.Compensated && sweptStep(rec) {
			s.auditOnce(ctx, id) // a failed claim makes it a suspect again
		}
	}
}

// sweptStep reports whether rec's compensation is the sweeper's.
func sweptStep(rec registry.Record) bool {
	for i := len(rec.History) - 1; i >= 0; i-- {
		if st := rec.History[i]; st.State == registry.Compensated {
			return st.Actor == generate.ActorSystem && st.Reason == generate.ReasonTimeout
		}
	}
	return false
}
