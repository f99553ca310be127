package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

var _ registry.StateMapper = (*Store)(nil)

// stateMapBatch is how many state maps one pipeline of StateMaps reads
// (128 bytes each).
const stateMapBatch = 1024

// stateKey is the key of the state map of bucket num of Config.Shard.
func (s *Store) stateKey(num uint64) string {
	return s.cfg.Prefix + "s:{" + strconv.Itoa(int(s.cfg.Shard)) + ":" + strconv.FormatUint(num, 10) + "}"
}

// StateMaps calls fn with the state map of every bucket of Config.Shard in
// [from, to) that has one, in order of bucket: pipelines of stateMapBatch
// GETs. The batch script writes a bucket's map in the same script call as
// the bucket's fields, so a map read here says what its bucket held at
// some instant; two maps may be of different instants. A map that is not
// registry.StateMapSize bytes or holds a byte that is no valid state is
// registry.ErrCorrupt. Errors: fn's, ErrCorrupt, ErrUnavailable,
// ErrClosed.
func (s *Store) StateMaps(ctx context.Context, from, to uint64, fn func(*registry.StateMap) error) error {
	to = min(to, idcodec.MaxCounter>>bucketBits+1)
	if from >= to {
		return nil
	}
	if err := s.readable(); err != nil {
		return fmt.Errorf("redisstore: state maps: %w", err)
	}
	m := new(registry.StateMap)
	cmds := make([]*redis.StringCmd, 0, min(to-from, stateMapBatch))
	for b := from; b < to; b += uint64(len(cmds)) {
		p := s.client.Pipeline()
		cmds = cmds[:0]
		for n := b; n < to && len(cmds) < stateMapBatch; n++ {
			cmds = append(cmds, p.Get(ctx, s.stateKey(n)))
		}
		if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("redisstore: state maps: %w", s.readErr(err))
		}
		for i, cmd := range cmds {
			v, err := cmd.Bytes()
			if errors.Is(err, redis.Nil) {
				continue
			}
			if err != nil {
				return fmt.Errorf("redisstore: state maps: %w", s.readErr(err))
			}
			m.Bucket = b + uint64(i)
			if len(v) != registry.StateMapSize {
				return fmt.Errorf("redisstore: state map of bucket %d: %w: %d bytes", m.Bucket, registry.ErrCorrupt, len(v))
			}
			for j, c := range v {
				st := registry.CounterState(c)
				if !st.Valid() {
					return fmt.Errorf("redisstore: state map of bucket %d: %w: counter %d in state %#x", m.Bucket, registry.ErrCorrupt, m.Bucket<<bucketBits+uint64(j), c)
				}
				m.States[j] = st
			}
			if err := fn(m); err != nil {
				return err
			}
		}
	}
	return nil
}
