package compensation

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/shared/idcodec"
)

// Defaults of RedisMarks.
const (
	DefaultMarkPrefix = "idgen:compensate:audited:"
	// DefaultMarkTTL outlives DefaultRecoverWithin with a day to spare.
	DefaultMarkTTL = 48 * time.Hour
	// DefaultLeaseTTL bounds how long a claim stays held by an attempt that
	// neither marked nor released it (it died): a redelivery waits that
	// long before it writes the entry itself.
	DefaultLeaseTTL = 15 * time.Second
	// DefaultMarkWaitTimeout bounds the WAIT of a mark in durable mode.
	DefaultMarkWaitTimeout = time.Second
)

// Values of a mark key: a lease held by an attempt writing the entry, or
// done (the entry is written).
const (
	markLease = "lease"
	markDone  = "1"
)

// releaseScript deletes a mark only while it is a lease: a done mark stays.
var releaseScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

// RedisMarks keeps the audit marks of Core in Redis: one small key per
// audited ID ("<Prefix><id>"), a lease ("lease", LeaseTTL) while an attempt
// writes the entry, then done ("1", TTL). Safe for concurrent use.
//
// Durable mode (WaitReplicas > 0, not in a Redis Cluster): Mark ends with
// WAIT on its connection and fails when fewer replicas acknowledged it, so
// a failover does not lose the mark of a written entry (a lost mark lets a
// later redelivery write the entry again).
type RedisMarks struct {
	Client redis.Cmdable
	// Prefix of the keys. Default DefaultMarkPrefix.
	Prefix string
	// TTL of a done mark; must exceed Core.RecoverWithin. Default DefaultMarkTTL.
	TTL time.Duration
	// LeaseTTL of a claim. Default DefaultLeaseTTL.
	LeaseTTL time.Duration
	// WaitReplicas > 0: durable marks (see the type). WaitTimeout bounds the
	// WAIT; default DefaultMarkWaitTimeout.
	WaitReplicas int
	WaitTimeout  time.Duration
}

var _ Marker = (*RedisMarks)(nil)

func (m *RedisMarks) key(id idcodec.ID) string {
	p := m.Prefix
	if p == "" {
		p = DefaultMarkPrefix
	}
	return p + id.String()
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Mark implements Marker.
func (m *RedisMarks) Mark(ctx context.Context, id idcodec.ID) error {
	ttl := orDefault(m.TTL, DefaultMarkTTL)
	_, cluster := m.Client.(*redis.ClusterClient)
	if m.WaitReplicas <= 0 || cluster {
		if err := m.Client.Set(ctx, m.key(id), markDone, ttl).Err(); err != nil {
			return fmt.Errorf("compensate: mark %s: %w", id, err)
		}
		return nil
	}
	// One pipeline is one connection: the WAIT covers this SET.
	p := m.Client.Pipeline()
	set := p.Set(ctx, m.key(id), markDone, ttl)
	wait := p.Do(ctx, "WAIT", m.WaitReplicas, orDefault(m.WaitTimeout, DefaultMarkWaitTimeout).Milliseconds())
	_, _ = p.Exec(ctx)
	if err := set.Err(); err != nil {
		return fmt.Errorf("compensate: mark %s: %w", id, err)
	}
	if n, err := wait.Int64(); err != nil || n < int64(m.WaitReplicas) {
		return fmt.Errorf("compensate: mark %s: %d of %d replicas acknowledged (%v)", id, n, m.WaitReplicas, err)
	}
	return nil
}

// Claim implements Marker: SET NX of a lease; a mark found is done (false)
// or another attempt's lease (ErrAuditBusy).
func (m *RedisMarks) Claim(ctx context.Context, id idcodec.ID) (bool, error) {
	key := m.key(id)
	ok, err := m.Client.SetNX(ctx, key, markLease, orDefault(m.LeaseTTL, DefaultLeaseTTL)).Result()
	if err != nil {
		return false, fmt.Errorf("compensate: claim mark %s: %w", id, err)
	}
	if ok {
		return true, nil
	}
	v, err := m.Client.Get(ctx, key).Result()
	switch {
	case errors.Is(err, redis.Nil):
		// The lease expired between SET NX and GET: ask again.
		return false, fmt.Errorf("%w: %s: lease expired while claiming", ErrAuditBusy, id)
	case err != nil:
		return false, fmt.Errorf("compensate: claim mark %s: %w", id, err)
	case v == markLease:
		return false, fmt.Errorf("%w: %s", ErrAuditBusy, id)
	}
	return false, nil
}

// Release implements Marker: it deletes a lease, never a done mark.
func (m *RedisMarks) Release(ctx context.Context, id idcodec.ID) error {
	if err := releaseScript.Run(ctx, m.Client, []string{m.key(id)}, markLease).Err(); err != nil {
		return fmt.Errorf("compensate: release mark %s: %w", id, err)
	}
	return nil
}
