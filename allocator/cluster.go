package allocator

import (
	"context"
	"fmt"

	"github.com/go-zookeeper/zk"
	"github.com/google/uuid"
)

// clusterIDNode is the znode under Config.Root whose data names the
// ensemble's idgen state: a UUID written by the first allocator that finds
// it missing. A data directory that was bound to one cluster ID refuses an
// ensemble that shows another (an emptied or replaced ensemble, or another
// --zookeeper-root), because such an ensemble counts from the start again.
const clusterIDNode = "/cluster-id"

// loadClusterID creates the cluster-id znode unless it exists (the first
// creator wins; the others read its UUID) and keeps its value.
func (a *Allocator) loadClusterID(ctx context.Context) error {
	path := a.cfg.Root + clusterIDNode
	if err := a.ensureNode(ctx, path, []byte(uuid.NewString()), a.acl.private); err != nil {
		return fmt.Errorf("ensure %s: %w", path, err)
	}
	data, _, err := call2(ctx, func() ([]byte, *zk.Stat, error) { return a.conn.Get(path) })
	if err != nil {
		return fmt.Errorf("read %s: %w", path, a.closedOr(err))
	}
	id, err := uuid.ParseBytes(data)
	if err != nil {
		return fmt.Errorf("%s holds %q, not a UUID: %w", path, data, err)
	}
	a.clusterID = id.String()
	return nil
}

// ClusterID returns the UUID kept in <root>/cluster-id of the ensemble.
func (a *Allocator) ClusterID() string { return a.clusterID }

// InstanceID returns this Open's random instance name: the prefix of its
// claim tokens, and Member.Instance of its member znode.
func (a *Allocator) InstanceID() string { return a.instance }

// Root returns the znode under which this allocator keeps its state.
func (a *Allocator) Root() string { return a.cfg.Root }
