// Package chaose2e runs tests/cmd/idgen-chaos in its -smoke mode, as `make
// test` does: the whole deployment (ZooKeeper ×3, Redis primary + replica + 3
// Sentinels, three idgen instances in durable mode behind HAProxy, two
// compensate workers) on loopback, a bounded load, the eleven faults with
// shorter holds, then the operator and resource faults (two embedded
// instances, pebble and bbolt, with their data directory and audit log on
// tmpfs mounts: another engine refused on a data directory, the data and
// the audit volume filled and freed under load), and every check of the
// full run. Mounting needs root, as in CI. The test passes when the
// program exits 0 and prints its final line with no violation.
//
// The binaries are built once by TestMain (the chaos program with the race
// detector when cgo is available, so races in its proxies and driver
// surface; idgen without, as the other suites do).
package chaose2e
