package allocator

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/go-zookeeper/zk"
)

// candidate is this instance's znode in one election.
type candidate struct {
	sid  int64  // session that owns it
	name string // znode name under the election directory
}

// Leader reports whether this instance leads role (e.g. "sweeper") in its
// shard: the ZooKeeper election recipe. Each candidate owns an ephemeral
// sequential znode under shards/<shard>/elections/<role>/, created with the
// session that owns its worker slot; the lowest sequence number leads. A
// leader that loses its session loses its znode with it, and the next
// candidate leads from then on.
//
// Call it before each unit of work the role does. It answers true only while
// the worker lease is valid, so a leader cut off from ZooKeeper stops
// believing it leads (after at most 2/3 of the session timeout) before the
// server can expire its session and let another candidate lead: two leaders
// never act at once. The read is synced with the leader, so a stale follower
// never shows a deleted predecessor. Cost when nothing changed: one sync and
// one list of the election directory.
func (a *Allocator) Leader(ctx context.Context, role string) (bool, error) {
	if !validRole(role) {
		return false, fmt.Errorf("allocator: election role %q: want [a-z0-9-]+", role)
	}
	if _, err := a.Worker(a.cfg.Clock()); err != nil {
		return false, err
	}
	sid := a.slotSession.Load()
	dir := a.shardPath() + "/elections/" + role
	a.mu.Lock()
	c := a.candidates[role]
	a.mu.Unlock()
	if c.sid != sid || c.name == "" {
		var err error
		if c, err = a.stand(ctx, dir, sid); err != nil || c.name == "" {
			return false, err
		}
		a.mu.Lock()
		if a.candidates == nil {
			a.candidates = map[string]candidate{}
		}
		a.candidates[role] = c
		a.mu.Unlock()
	}
	if _, err := call(ctx, func() (string, error) { return a.conn.Sync(dir) }); err != nil {
		return false, a.closedOr(err)
	}
	kids, _, err := call2(ctx, func() ([]string, *zk.Stat, error) { return a.conn.Children(dir) })
	if err != nil {
		return false, a.closedOr(err)
	}
	if !slices.Contains(kids, c.name) {
		// Gone with a session we no longer have: stand again next time.
		a.mu.Lock()
		delete(a.candidates, role)
		a.mu.Unlock()
		return false, nil
	}
	lowest := slices.MinFunc(kids, func(x, y string) int { return strings.Compare(seqOf(x), seqOf(y)) })
	if lowest != c.name {
		return false, nil
	}
	// Still leased now, after the round trips.
	if _, err := a.Worker(a.cfg.Clock()); err != nil {
		return false, err
	}
	return true, nil
}

// stand creates this instance's candidate znode for session sid. A create
// whose reply was lost is found again by the library's protected name; a
// znode that ended up with another session than the slot's is removed and
// reported as no candidate (the next call stands again).
func (a *Allocator) stand(ctx context.Context, dir string, sid int64) (candidate, error) {
	parent := path.Dir(dir)
	if err := a.ensureNodes(ctx, []znode{{parent, nil, a.acl.private}, {dir, nil, a.acl.private}}); err != nil {
		return candidate{}, err
	}
	p, err := call(ctx, func() (string, error) {
		return a.conn.CreateProtectedEphemeralSequential(dir+"/c-", []byte(a.instance), a.acl.private)
	})
	if err != nil {
		return candidate{}, a.closedOr(err)
	}
	_, st, err := call2(ctx, func() (bool, *zk.Stat, error) { return a.conn.Exists(p) })
	if err != nil {
		return candidate{}, a.closedOr(err)
	}
	if st == nil || st.EphemeralOwner != sid {
		_ = a.conn.Delete(p, -1)
		return candidate{}, nil
	}
	return candidate{sid: sid, name: path.Base(p)}, nil
}

// seqOf is the 10-digit sequence suffix ZooKeeper appends to a sequential
// znode's name.
func seqOf(name string) string {
	if len(name) < 10 {
		return name
	}
	return name[len(name)-10:]
}

func validRole(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
