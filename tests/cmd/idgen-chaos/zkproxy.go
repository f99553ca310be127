package main

import "github.com/idgen/idgen/harness/zkproxy"

// zkProxy stands between one idgen instance and the ZooKeeper servers, one
// loopback listener per server, so that link faults hit that instance only
// while the ensemble keeps its quorum (harness/zkproxy): Partition and Heal
// cut it off, ArmSetDrop loses the replies of its range claims.
type zkProxy = zkproxy.Proxy

// zkOpSetData is the opcode whose replies ArmSetDrop swallows.
const zkOpSetData = zkproxy.OpSetData

// startZKProxy listens on a fresh loopback port for each target.
func startZKProxy(targets []string) (*zkProxy, error) { return zkproxy.Start(targets...) }

// readFrame reads one length-prefixed ZooKeeper frame, prefix included.
var readFrame = zkproxy.ReadFrame
