package redisstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/shared/registry"
)

// keyKey is where a wrapped data key lives; the name is the hash tag, so
// one subject's key is one slot in a cluster. Keys never expire.
func (s *Store) keyKey(name string) string { return s.cfg.Prefix + "key:{" + name + "}" }

// GetKey returns the stored key material under name, or nil (sealer.KeyStore).
func (s *Store) GetKey(ctx context.Context, name string) ([]byte, error) {
	if err := s.readable(); err != nil {
		return nil, err
	}
	v, err := s.client.Get(ctx, s.keyKey(name)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("redisstore: get key: %w", s.readErr(err))
	}
	return v, nil
}

// PutKeyIfAbsent stores v under name unless a value exists (SET NX GET) and
// returns the stored value; in durable mode it waits for the replicas.
func (s *Store) PutKeyIfAbsent(ctx context.Context, name string, v []byte) ([]byte, error) {
	if err := s.readable(); err != nil {
		return nil, err
	}
	var set *redis.StatusCmd
	err := s.writeDurable(ctx, func(p redis.Pipeliner) {
		set = p.SetArgs(ctx, s.keyKey(name), v, redis.SetArgs{Mode: "NX", Get: true})
	})
	old, gerr := set.Bytes()
	switch {
	case errors.Is(gerr, redis.Nil):
		// Absent before: ours is stored.
	case gerr != nil:
		return nil, fmt.Errorf("redisstore: put key: %w", s.readErr(gerr))
	default:
		return old, nil
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

// DeleteKey removes the key material under name; in durable mode it waits
// for the replicas.
func (s *Store) DeleteKey(ctx context.Context, name string) error {
	if err := s.readable(); err != nil {
		return err
	}
	return s.writeDurable(ctx, func(p redis.Pipeliner) { p.Del(ctx, s.keyKey(name)) })
}

// writeDurable runs the commands add queues in one pipeline and, in durable
// mode (not in a cluster, where WAIT has no connection to follow), ends it
// with WAIT on the same connection.
func (s *Store) writeDurable(ctx context.Context, add func(redis.Pipeliner)) error {
	p := s.client.Pipeline()
	add(p)
	var wait *redis.Cmd
	if s.cfg.WaitReplicas > 0 && !s.cluster {
		wait = p.Do(ctx, "WAIT", s.cfg.WaitReplicas, s.cfg.WaitTimeout.Milliseconds())
	}
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("redisstore: %w", s.readErr(err))
	}
	if wait != nil {
		if n, err := wait.Int64(); err != nil || n < int64(s.cfg.WaitReplicas) {
			return fmt.Errorf("%w: %d of %d replicas acknowledged (%v)", registry.ErrUnavailable, n, s.cfg.WaitReplicas, err)
		}
	}
	return nil
}
