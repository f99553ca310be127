package allocator

import (
	"context"
	"errors"
	"time"

	"github.com/go-zookeeper/zk"
	"go.uber.org/zap"
)

// Worker implements generator.WorkerSource. It returns the worker slot while
// this instance's session owns it and now is within the local lease, ErrFenced
// otherwise (slot lost with an expired session, or ZooKeeper unreachable for
// longer than the lease), and ErrClosed after Close. now must come from
// Config.Clock's source. Hot path: atomic loads only, no locks, no allocation.
func (a *Allocator) Worker(now time.Time) (uint16, error) {
	if a.closed.Load() {
		return 0, ErrClosed
	}
	s := a.slot.Load()
	if s < 0 {
		return 0, ErrFenced
	}
	if now.Sub(a.base) > time.Duration(a.leaseUntil.Load()) {
		return 0, ErrFenced
	}
	return uint16(s), nil
}

// touch extends the lease to t0 + lease, where t0 is a time at or before the
// server last heard from the slot's session: the server expires a session a
// full timeout after that, so until t0 + 2/3 timeout the slot cannot have been
// deleted and handed to someone else.
func (a *Allocator) touch(t0 time.Time) {
	d := int64(t0.Sub(a.base) + a.lease)
	for {
		cur := a.leaseUntil.Load()
		if d <= cur || a.leaseUntil.CompareAndSwap(cur, d) {
			return
		}
	}
}

// alive extends the lease after a request sent at t0 on session sid got an
// answer from the server (any answer, success or a server-side error, proves
// the server processed a packet of that session at or after t0). Requests
// that failed locally prove nothing.
func (a *Allocator) alive(t0 time.Time, sid int64, err error) {
	if sid != 0 && fromServer(err) && a.conn.SessionID() == sid && a.slotSession.Load() == sid {
		a.touch(t0)
	}
}

// onEvent is the client library's event callback. It runs on the library's
// goroutines and must not block: it only updates atomics, takes sessMu for a
// few stores, and wakes the keeper. Unlike the event channel, the callback
// never drops events.
func (a *Allocator) onEvent(ev zk.Event) {
	if ev.Type != zk.EventSession {
		return
	}
	a.state.Store(int32(ev.State))
	switch ev.State {
	case zk.StateConnected:
		// The TCP connection is up and the connect request not yet sent: the
		// server can only revalidate the session after this instant.
		a.connectedAt.Store(int64(a.cfg.Clock().Sub(a.base)))
	case zk.StateHasSession:
		// The session is (re)established. If it is the slot's session, the
		// server revalidated it after connectedAt; a new session is checked
		// by the keeper (it compares session IDs, which this callback cannot
		// read safely while Open is still assigning the connection).
		if at := a.connectedAt.Load(); at != 0 && a.slotSession.Load() != 0 {
			a.touchIfSlotSession(time.Duration(at))
		}
		a.kick()
	case zk.StateExpired:
		// The server deleted our ephemerals: another instance may take the
		// slot at any moment. Stop stamping now.
		a.sessMu.Lock()
		a.slot.Store(-1)
		a.slotSession.Store(0)
		a.sessMu.Unlock()
		a.log.Warn("zookeeper session expired: worker slot fenced; will re-claim with the new session")
		a.kick()
	case zk.StateDisconnected:
		if !a.closed.Load() {
			a.log.Info("zookeeper disconnected; worker slot usable until the lease runs out",
				zap.Duration("lease_left", time.Duration(a.leaseUntil.Load())-a.cfg.Clock().Sub(a.base)))
		}
	}
}

// touchIfSlotSession extends the lease from offset at (after base) when the
// reconnected session is still the slot's. The session ID is read from the
// library under sessMu only once the connection is assigned.
func (a *Allocator) touchIfSlotSession(at time.Duration) {
	conn := a.connPtr.Load()
	if conn == nil {
		return
	}
	if sid := conn.SessionID(); sid != 0 && sid == a.slotSession.Load() {
		a.touch(a.base.Add(at))
	}
}

// kick wakes the keeper without blocking.
func (a *Allocator) kick() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// keep is the background actor: every ping interval, and whenever the
// session changes, it proves the session alive and the slot znode still
// ours (extending the lease), or claims a slot and re-registers the member
// when the session is new. It stops when Close cancels a.ctx.
func (a *Allocator) keep() {
	defer a.wg.Done()
	t := time.NewTicker(a.cfg.pingInterval())
	defer t.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		case <-a.wake:
		}
		if err := a.check(); err != nil && a.ctx.Err() == nil {
			a.setErr(err)
			a.log.Warn("session check failed", zap.Error(err))
		}
	}
}

// check runs one keeper round.
func (a *Allocator) check() error {
	if zk.State(a.state.Load()) != zk.StateHasSession {
		return nil // the library is reconnecting; the lease runs down meanwhile
	}
	sid := a.conn.SessionID()
	if sid == 0 {
		return nil
	}
	if a.slotSession.Load() != sid || a.slot.Load() < 0 {
		a.fenceUnless(sid)
		ctx, cancel := context.WithTimeout(a.ctx, a.cfg.SessionTimeout)
		defer cancel()
		return a.claimSession(ctx)
	}
	a.mu.Lock()
	path := a.slotPath
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(a.ctx, a.lease)
	defer cancel()
	t0 := a.cfg.Clock()
	ok, st, err := call2(ctx, func() (bool, *zk.Stat, error) { return a.conn.Exists(path) })
	if err != nil {
		return err
	}
	if !ok || st.EphemeralOwner != sid {
		a.fenceUnless(0)
		a.log.Warn("worker slot znode lost; re-claiming", zap.String("path", path))
		return a.claimSession(ctx)
	}
	a.alive(t0, sid, nil)
	return nil
}

// fenceUnless stops stamping unless the slot belongs to session keep.
func (a *Allocator) fenceUnless(keep int64) {
	a.sessMu.Lock()
	if keep == 0 || a.slotSession.Load() != keep {
		a.slot.Store(-1)
		a.slotSession.Store(0)
	}
	a.sessMu.Unlock()
}

// errSessionChanged means the session changed while a slot was being claimed
// for it; the keeper claims again for the new one.
var errSessionChanged = errors.New("allocator: session changed during slot claim")

// claimSession claims a worker slot and registers the member for the current
// session, then publishes the slot to Worker.
func (a *Allocator) claimSession(ctx context.Context) error {
	sid := a.conn.SessionID()
	if sid == 0 {
		return zk.ErrNoServer
	}
	t0 := a.cfg.Clock()
	slot, slotPath, err := a.claimSlot(ctx, sid)
	if err != nil {
		return err
	}
	memberPath, err := a.registerMember(ctx, sid, slot)
	if err != nil {
		return err
	}
	a.sessMu.Lock()
	if a.conn.SessionID() != sid || a.closed.Load() {
		a.sessMu.Unlock()
		return errSessionChanged
	}
	a.slotSession.Store(sid)
	a.touch(t0) // the create succeeded on sid, sent after t0
	a.slot.Store(int32(slot))
	a.sessMu.Unlock()

	a.mu.Lock()
	a.slotPath, a.memberPath = slotPath, memberPath
	a.pending = pendingSlot{}
	a.mu.Unlock()
	a.slotClaims.Add(1)
	a.log.Info("worker slot claimed", zap.Int("worker", slot), zap.Int64("session", sid),
		zap.String("member", memberPath))
	return nil
}
