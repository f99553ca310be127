package main

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/bwmarrin/snowflake"
	"github.com/google/uuid"

	"github.com/idgen/idgen/shared/generator"
)

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

// memSource is an in-memory range source: the hot path is measured without
// the claim cost (one claim per 4M IDs in service).
type memSource struct {
	mu   sync.Mutex
	next uint64
}

func (s *memSource) ClaimRange(_ context.Context, n uint64) (generator.Range, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := generator.Range{Start: s.next, End: s.next + n}
	s.next += n
	return r, nil
}

type contender struct {
	name     string
	serial   func(b *testing.B)
	parallel func(b *testing.B)
}

func contenders() []contender {
	g, err := generator.New(&memSource{}, generator.FixedWorker(1), generator.Config{InitialStep: 1 << 22, MinStep: 1 << 22, MaxStep: 1 << 22})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	node, err := snowflake.NewNode(1)
	if err != nil {
		panic(err)
	}
	loop := func(f func()) (func(*testing.B), func(*testing.B)) {
		return func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					f()
				}
			}, func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						f()
					}
				})
			}
	}
	var cs []contender
	add := func(name string, f func()) {
		s, p := loop(f)
		cs = append(cs, contender{name, s, p})
	}
	add("idgen hot path", func() {
		if _, err := g.Next(ctx); err != nil {
			panic(err)
		}
	})
	add("google/uuid NewV7", func() {
		if _, err := uuid.NewV7(); err != nil {
			panic(err)
		}
	})
	add("bwmarrin/snowflake", func() { _ = node.Generate() })
	return cs
}

// inProcess prints ns/ID and allocs/ID, serial and parallel, with each
// peer's figure as a multiple of idgen's.
func inProcess(rounds int) {
	cs := contenders()
	type res struct{ ns, allocs []float64 }
	serial := make([]res, len(cs))
	parallel := make([]res, len(cs))
	for _, c := range cs { // warm-up
		testing.Benchmark(c.serial)
	}
	for r := 0; r < rounds; r++ {
		for i, c := range cs {
			s := testing.Benchmark(c.serial)
			serial[i].ns = append(serial[i].ns, float64(s.NsPerOp()))
			serial[i].allocs = append(serial[i].allocs, float64(s.AllocsPerOp()))
			p := testing.Benchmark(c.parallel)
			parallel[i].ns = append(parallel[i].ns, float64(p.NsPerOp()))
			parallel[i].allocs = append(parallel[i].allocs, float64(p.AllocsPerOp()))
		}
	}
	fmt.Println("In-process, one ID per call (median ns/ID; ratio = peer / idgen, higher is better for idgen)")
	fmt.Printf("%-22s %12s %8s %14s %12s %8s\n", "", "serial ns", "allocs", "serial ratio", "parallel ns", "ratio")
	base, pbase := median(serial[0].ns), median(parallel[0].ns)
	for i, c := range cs {
		fmt.Printf("%-22s %12.1f %8.0f %13.2fx %12.1f %7.2fx\n", c.name, median(serial[i].ns), median(serial[i].allocs),
			median(serial[i].ns)/base, median(parallel[i].ns), median(parallel[i].ns)/pbase)
	}
	fmt.Println()
}
