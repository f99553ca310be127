// Package zke2e holds process-level tests of `idgen serve` in distributed
// mode: real `idgen` processes (built once by TestMain) against a real
// three-node ZooKeeper ensemble (harness/zkharness), with faults injected by
// signals: ZooKeeper leader SIGKILLed, quorum lost, an idgen process
// SIGKILLed or SIGSTOPped past its session timeout, and hundreds of
// short-lived processes (scale-to-zero).
//
// Every test checks the service's first invariant from the outside: no two
// IDs returned by any process share (shard, counter). It also checks what the
// fault may cost: only 503 with Retry-After, never another error; a frozen
// process never stamps a worker slot it lost.
//
// Tests share one ensemble (started on first use, closed by TestMain); each
// test runs under a ZooKeeper root of its own (--zookeeper-root), and puts
// back any server it killed before it ends. Benchmarks (bench_test.go) report
// ZooKeeper writes per million IDs and the time from fork+exec to the first
// ID served.
package zke2e
