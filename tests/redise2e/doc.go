// Package redise2e holds process-level tests of `idgen serve` in Redis
// registry mode: real `idgen` processes (built once by TestMain) sharing a
// real Redis (harness/redisharness: standalone, Sentinel group or Cluster)
// as their registry, and a real one-node ZooKeeper (harness/zkharness) for
// the counter ranges.
//
// Every test checks the service's invariants from the outside, through HTTP
// and by reading Redis directly (the key layout of shared/registry/redisstore):
// no two IDs returned share (shard, counter); every ID returned is held by
// the registry under its own value (its bucket field starts with the ID's
// high half), and readable from the other instance; a fault costs only 503
// with Retry-After, never a lost acknowledged ID.
//
// The tests share one ZooKeeper server (started on first use, closed by
// TestMain); each test uses a ZooKeeper root of its own and a Redis of its
// own. They run one after the other: the suite is sized for two busy cores.
// An instance's stderr is shown when its test fails, or always with
// REDISE2E_LOGS=1.
package redise2e
