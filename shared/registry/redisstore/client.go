package redisstore

import "github.com/redis/go-redis/v9"

// Client is the store's Redis client, for the other users of the same Redis
// in one process (the audit marks, the failure stream), so that a process
// holds one connection pool. It does not retry a command by itself (see
// options): a user retries what is safe to repeat. Close closes it; its
// users stop before the store closes.
func (s *Store) Client() redis.UniversalClient { return s.client }
