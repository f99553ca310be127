package main

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/shared/compensation"
	"github.com/idgen/idgen/shared/registry/pebblestore"
)

// TestHTTPCompensationMarks: Redis mode marks through the sweeper's client
// (the worker's key prefix), durable as the registry; embedded mode marks
// in the embedded store, commit marks under their own prefix.
func TestHTTPCompensationMarks(t *testing.T) {
	if m := httpCompensationMarks(soleSweeper{}, 1); m != nil {
		t.Fatalf("embedded mode without a store: %#v, want no marks", m)
	}
	store, err := pebblestore.Open(pebblestore.Config{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	sm, ok := httpCompensationMarks(soleSweeper{marks: store}, 1).(*compensation.StoreMarks)
	if !ok || sm.Store != compensation.MarkStore(store) || sm.Prefix != "" {
		t.Fatalf("embedded mode: %#v, want StoreMarks on the store with the default prefix", sm)
	}
	sc, ok := httpCommitMarks(soleSweeper{marks: store}, 1).(*compensation.StoreMarks)
	if !ok || sc.Store != compensation.MarkStore(store) || sc.Prefix != commitMarkPrefix {
		t.Fatalf("embedded commit marks: %#v, want StoreMarks under %q", sc, commitMarkPrefix)
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	m, ok := httpCompensationMarks(newRedisSweepClaims(rdb), 2).(*compensation.RedisMarks)
	if !ok || m.Client != redis.Cmdable(rdb) || m.Prefix != "" || m.TTL != 0 || m.WaitReplicas != 2 {
		t.Fatalf("Redis mode: %#v, want RedisMarks on the sweeper's client with the defaults, waiting for 2 replicas", m)
	}
	c, ok := httpCommitMarks(newRedisSweepClaims(rdb), 0).(*compensation.RedisMarks)
	if !ok || c.Prefix != commitMarkPrefix || c.WaitReplicas != 0 {
		t.Fatalf("commit marks: %#v, want RedisMarks under %q", c, commitMarkPrefix)
	}
}
