package allocator

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/go-zookeeper/zk"
)

// Member is one live instance, as registered under members/.
type Member struct {
	Worker    uint16    `json:"worker"`
	Address   string    `json:"address"`
	Version   string    `json:"version"`
	StartedAt time.Time `json:"started_at"`
	Instance  string    `json:"instance"`   // random per Open
	SessionID int64     `json:"session_id"` // ZooKeeper session owning the znode
	Znode     string    `json:"znode"`      // name under members/, e.g. m-0000000007
}

// memberData is the JSON stored in the member and worker slot znodes.
type memberData struct {
	Worker    uint16    `json:"worker"`
	Address   string    `json:"address"`
	Version   string    `json:"version"`
	StartedAt time.Time `json:"started_at"`
	Instance  string    `json:"instance"`
}

func (a *Allocator) memberJSON(slot int) []byte {
	b, _ := json.Marshal(memberData{
		Worker: uint16(slot), Address: a.cfg.Address, Version: a.cfg.Version,
		StartedAt: a.started.UTC(), Instance: a.instance,
	})
	return b
}

// pendingSlot is a slot znode created for a session whose member
// registration has not succeeded yet; the next attempt reuses it.
type pendingSlot struct {
	sid  int64
	slot int
}

// claimSlot creates the ephemeral znode of the lowest free slot for session
// sid. The slot number is never derived from a sequence number (those grow
// forever and would exhaust 12 bits); freed slots are reused. A create whose
// reply was lost is recognised by the znode's ephemeral owner.
func (a *Allocator) claimSlot(ctx context.Context, sid int64) (int, string, error) {
	workers := a.cfg.Root + "/workers"
	a.mu.Lock()
	p := a.pending
	a.mu.Unlock()
	if p.sid == sid {
		if ok, err := a.ownedBy(ctx, a.slotZnode(p.slot), sid); err != nil {
			return 0, "", err
		} else if ok {
			return p.slot, a.slotZnode(p.slot), nil
		}
	}
	children, _, err := call2(ctx, func() ([]string, *zk.Stat, error) { return a.conn.Children(workers) })
	if err != nil {
		return 0, "", fmt.Errorf("list worker slots: %w", err)
	}
	taken := make(map[int]bool, len(children))
	for _, c := range children {
		if n, err := strconv.Atoi(c); err == nil {
			taken[n] = true
		}
	}
	for s := 0; s < a.cfg.MaxSlots; s++ {
		if taken[s] {
			continue
		}
		path := a.slotZnode(s)
		t0 := a.cfg.Clock()
		_, err := call(ctx, func() (string, error) {
			return a.conn.Create(path, a.memberJSON(s), zk.FlagEphemeral, a.acl.public)
		})
		a.alive(t0, sid, err)
		switch {
		case err == nil:
			return s, path, a.remember(sid, s)
		case errors.Is(err, zk.ErrNodeExists):
			continue // taken since the listing; try the next one
		case fromServer(err):
			return 0, "", fmt.Errorf("create %s: %w", path, err)
		}
		// Outcome unknown: the znode may be ours. Remember it so the next
		// attempt on this session checks it first.
		a.mu.Lock()
		a.pending = pendingSlot{sid: sid, slot: s}
		a.mu.Unlock()
		return 0, "", fmt.Errorf("create %s: %w", path, err)
	}
	return 0, "", fmt.Errorf("%w: all %d taken", ErrNoSlot, a.cfg.MaxSlots)
}

func (a *Allocator) remember(sid int64, slot int) error {
	a.mu.Lock()
	a.pending = pendingSlot{sid: sid, slot: slot}
	a.mu.Unlock()
	return nil
}

func (a *Allocator) slotZnode(s int) string {
	return a.cfg.Root + "/workers/" + strconv.Itoa(s)
}

// ownedBy reports whether path exists as an ephemeral of session sid.
func (a *Allocator) ownedBy(ctx context.Context, path string, sid int64) (bool, error) {
	ok, st, err := call2(ctx, func() (bool, *zk.Stat, error) { return a.conn.Exists(path) })
	if err != nil {
		return false, err
	}
	return ok && st.EphemeralOwner == sid, nil
}

// registerMember creates this instance's ephemeral-sequential member znode.
// After a lost reply it looks for a member znode of this session and
// instance before creating another, so a retry does not register twice.
func (a *Allocator) registerMember(ctx context.Context, sid int64, slot int) (string, error) {
	members := a.cfg.Root + "/members"
	if path, err := a.findMember(ctx, sid, slot); err != nil || path != "" {
		return path, err
	}
	t0 := a.cfg.Clock()
	path, err := call(ctx, func() (string, error) {
		return a.conn.Create(members+"/m-", a.memberJSON(slot), zk.FlagEphemeralSequential, a.acl.public)
	})
	a.alive(t0, sid, err)
	if err != nil {
		return "", fmt.Errorf("register member: %w", err)
	}
	return path, nil
}

// findMember returns the member znode of this instance on session sid, if
// an earlier attempt whose reply was lost created it; "" otherwise. It only
// scans after such a failure (a.pending set for sid), so normal starts cost
// one round trip.
func (a *Allocator) findMember(ctx context.Context, sid int64, slot int) (string, error) {
	a.mu.Lock()
	retry := a.memberTried == sid
	a.memberTried = sid
	a.mu.Unlock()
	if !retry {
		return "", nil
	}
	ms, err := a.list(ctx)
	if err != nil {
		return "", err
	}
	for _, m := range ms {
		if m.SessionID == sid && m.Instance == a.instance && int(m.Worker) == slot {
			return a.cfg.Root + "/members/" + m.Znode, nil
		}
	}
	return "", nil
}

// Members lists the live instances (those whose sessions hold a member
// znode), sorted by worker slot.
func (a *Allocator) Members(ctx context.Context) ([]Member, error) {
	if a.closed.Load() {
		return nil, ErrClosed
	}
	ms, err := a.list(ctx)
	if err != nil {
		return nil, fmt.Errorf("allocator: members: %w", a.closedOr(err))
	}
	return ms, nil
}

func (a *Allocator) list(ctx context.Context) ([]Member, error) {
	dir := a.cfg.Root + "/members"
	names, _, err := call2(ctx, func() ([]string, *zk.Stat, error) { return a.conn.Children(dir) })
	if err != nil {
		return nil, err
	}
	out := make([]Member, 0, len(names))
	for _, name := range names {
		data, st, err := call2(ctx, func() ([]byte, *zk.Stat, error) { return a.conn.Get(dir + "/" + name) })
		if errors.Is(err, zk.ErrNoNode) {
			continue // left since the listing
		}
		if err != nil {
			return nil, err
		}
		var d memberData
		if err := json.Unmarshal(data, &d); err != nil {
			continue // not ours; skip rather than fail discovery
		}
		out = append(out, Member{
			Worker: d.Worker, Address: d.Address, Version: d.Version, StartedAt: d.StartedAt,
			Instance: d.Instance, SessionID: st.EphemeralOwner, Znode: name,
		})
	}
	slices.SortFunc(out, func(x, y Member) int {
		return cmp.Or(cmp.Compare(x.Worker, y.Worker), cmp.Compare(x.Znode, y.Znode))
	})
	return out, nil
}
