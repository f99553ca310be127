package main

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/functions/sweeper"
	"github.com/idgen/idgen/shared/registry/pebblestore"
	"github.com/idgen/idgen/shared/saga"
)

// TestMarkers: Redis mode marks through one client, durable as the
// registry; embedded mode marks in the embedded store; each prefix (the
// API's compensations and commits, the sweeper) keeps its own key space.
func TestMarkers(t *testing.T) {
	store, err := pebblestore.Open(pebblestore.Config{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	for _, prefix := range []string{saga.DefaultMarkPrefix, commitMarkPrefix, sweeper.MarkPrefix} {
		sm, ok := storeMarkers(store)(prefix).(*saga.StoreMarks)
		if !ok || sm.Store != saga.MarkStore(store) || sm.Prefix != prefix {
			t.Errorf("embedded mode, prefix %q: %#v, want StoreMarks on the store", prefix, sm)
		}
		rm, ok := redisMarkers(rdb, 2)(prefix).(*saga.RedisMarks)
		if !ok || rm.Client != redis.Cmdable(rdb) || rm.Prefix != prefix || rm.TTL != 0 || rm.WaitReplicas != 2 {
			t.Errorf("Redis mode, prefix %q: %#v, want RedisMarks on the client, waiting for 2 replicas", prefix, rm)
		}
	}
	if commitMarkPrefix == saga.DefaultMarkPrefix || commitMarkPrefix == sweeper.MarkPrefix || sweeper.MarkPrefix == saga.DefaultMarkPrefix {
		t.Error("two kinds of audit marks share a key prefix")
	}
}
