package compensation

import (
	"context"
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
)

// RedisMarks keeps the audited marks of Core in Redis: one small key per
// compensated ID ("<Prefix><id>") that expires after TTL. Safe for
// concurrent use.
type RedisMarks struct {
	Client redis.Cmdable
	// Prefix of the keys. Default DefaultMarkPrefix.
	Prefix string
	// TTL of a mark; must exceed Core.RecoverWithin. Default DefaultMarkTTL.
	TTL time.Duration
}

var _ Marker = (*RedisMarks)(nil)

func (m *RedisMarks) key(id idcodec.ID) string {
	p := m.Prefix
	if p == "" {
		p = DefaultMarkPrefix
	}
	return p + id.String()
}

func (m *RedisMarks) ttl() time.Duration {
	if m.TTL <= 0 {
		return DefaultMarkTTL
	}
	return m.TTL
}

// Mark implements Marker.
func (m *RedisMarks) Mark(ctx context.Context, id idcodec.ID) error {
	if err := m.Client.Set(ctx, m.key(id), "1", m.ttl()).Err(); err != nil {
		return fmt.Errorf("compensate: mark %s: %w", id, err)
	}
	return nil
}

// Claim implements Marker (SET NX).
func (m *RedisMarks) Claim(ctx context.Context, id idcodec.ID) (bool, error) {
	ok, err := m.Client.SetNX(ctx, m.key(id), "1", m.ttl()).Result()
	if err != nil {
		return false, fmt.Errorf("compensate: claim mark %s: %w", id, err)
	}
	return ok, nil
}

// Release implements Marker.
func (m *RedisMarks) Release(ctx context.Context, id idcodec.ID) error {
	if err := m.Client.Del(ctx, m.key(id)).Err(); err != nil {
		return fmt.Errorf("compensate: release mark %s: %w", id, err)
	}
	return nil
}
