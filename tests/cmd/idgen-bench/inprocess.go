package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/bwmarrin/snowflake"
	"github.com/google/uuid"
	"github.com/rs/xid"
	"github.com/sony/sonyflake"

	"github.com/idgen/idgen/shared/generator"
	"github.com/idgen/idgen/shared/generator/generatortest"
)

// peer is one in-process ID generator. next returns the binary ID in 16
// bytes (shorter IDs zero-padded) so that tests can check uniqueness; it is
// what each library's own call returns, without text formatting.
type peer struct {
	name string
	note string
	next func() ([16]byte, error)
}

// peers returns idgen's hot path first, then the baselines. close releases
// the generator.
func peers() (ps []peer, closeFn func(), err error) {
	g, err := generator.New(&generatortest.Source{}, generator.FixedWorker(1), generator.Config{InitialStep: 1 << 22, MinStep: 1 << 22, MaxStep: 1 << 22})
	if err != nil {
		return nil, nil, err
	}
	node, err := snowflake.NewNode(1)
	if err != nil {
		g.Close()
		return nil, nil, err
	}
	// The default machine ID is the low 16 bits of a private IPv4 address,
	// which containers may not have.
	sf, err := sonyflake.New(sonyflake.Settings{MachineID: func() (uint16, error) { return 1, nil }})
	if err != nil {
		g.Close()
		return nil, nil, err
	}
	ctx := context.Background()
	u64 := func(v uint64) (out [16]byte) { binary.BigEndian.PutUint64(out[8:], v); return out }
	ps = []peer{
		{"idgen hot path", "Generator.Next: one atomic add in the current range", func() ([16]byte, error) { return g.Next(ctx) }},
		{"google/uuid NewV7", "crypto/rand per call (default, no rand pool)", func() ([16]byte, error) { return uuid.NewV7() }},
		{"google/uuid NewRandom", "v4, crypto/rand per call", func() ([16]byte, error) { return uuid.NewRandom() }},
		{"bwmarrin/snowflake", "mutex; 4096 IDs per ms per node, then waits", func() ([16]byte, error) { return u64(uint64(node.Generate().Int64())), nil }},
		{"sony/sonyflake", "mutex; 256 IDs per 10 ms per machine, then sleeps", func() ([16]byte, error) {
			v, err := sf.NextID()
			return u64(v), err
		}},
		{"rs/xid", "atomic counter, 12 bytes", func() (out [16]byte, _ error) { id := xid.New(); copy(out[:], id[:]); return out, nil }},
	}
	return ps, g.Close, nil
}

// peerResult is one peer's medians.
type peerResult struct {
	Name, Note                     string
	SerialNs, SerialAllocs         float64
	ParallelNs, ParallelAllocs     float64
	SerialRounds, ParallelRoundsNs []float64
}

// setBenchtime makes testing.Benchmark run each measurement for d: outside
// `go test` the testing flags exist only after testing.Init.
func setBenchtime(d time.Duration) {
	testing.Init()
	if err := flag.CommandLine.Set("test.benchtime", d.String()); err != nil {
		panic(err) // the flag is the testing package's own
	}
}

func serialBench(f func() ([16]byte, error)) func(*testing.B) {
	return func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := f(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func parallelBench(f func() ([16]byte, error)) func(*testing.B) {
	return func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := f(); err != nil {
					panic(err)
				}
			}
		})
	}
}

// inProcess measures ns/ID and allocs/ID of every peer, serial and parallel
// (GOMAXPROCS goroutines), after one warm-up pass, alternating peers within
// each round; it returns the medians in peers() order.
func inProcess(rounds int, benchtime time.Duration) []peerResult {
	setBenchtime(benchtime)
	ps, closeFn, err := peers()
	if err != nil {
		panic(fmt.Sprintf("in-process peers: %v", err)) // fixed settings: cannot fail
	}
	defer closeFn()
	type acc struct{ sns, sal, pns, pal []float64 }
	accs := make([]acc, len(ps))
	for _, p := range ps { // warm-up
		testing.Benchmark(serialBench(p.next))
	}
	for range rounds {
		for i, p := range ps {
			s := testing.Benchmark(serialBench(p.next))
			accs[i].sns = append(accs[i].sns, nsPerOp(s))
			accs[i].sal = append(accs[i].sal, float64(s.AllocsPerOp()))
			q := testing.Benchmark(parallelBench(p.next))
			accs[i].pns = append(accs[i].pns, nsPerOp(q))
			accs[i].pal = append(accs[i].pal, float64(q.AllocsPerOp()))
		}
	}
	out := make([]peerResult, len(ps))
	for i, p := range ps {
		a := accs[i]
		out[i] = peerResult{Name: p.name, Note: p.note, SerialNs: median(a.sns), SerialAllocs: median(a.sal),
			ParallelNs: median(a.pns), ParallelAllocs: median(a.pal), SerialRounds: a.sns, ParallelRoundsNs: a.pns}
	}
	return out
}

// nsPerOp keeps the fraction BenchmarkResult.NsPerOp truncates: the hot
// path costs a few ns.
func nsPerOp(r testing.BenchmarkResult) float64 {
	if r.N == 0 {
		return 0
	}
	return float64(r.T.Nanoseconds()) / float64(r.N)
}
