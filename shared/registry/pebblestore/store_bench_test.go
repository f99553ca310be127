package pebblestore

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/boltstore"
)

// registrar is what the benchmark needs of either store.
type registrar interface {
	Register(ctx context.Context, iss registry.Issue, idemTTLMS, nowMS int64) (*registry.IdemEntry, error)
	Close() error
}

var (
	_ registrar = (*Store)(nil)
	_ registrar = (*boltstore.Store)(nil)
)

// BenchmarkRegisterParallel: one pending record per op from 32×GOMAXPROCS
// goroutines, so that group commits form as under concurrent HTTP clients;
// boltstore is the baseline, measured in the same run. ops/commit is the
// mean group size.
func BenchmarkRegisterParallel(b *testing.B) {
	stores := []struct {
		name string
		open func(dir string, observe func(int, time.Duration)) (registrar, error)
	}{
		{"pebblestore", func(dir string, observe func(int, time.Duration)) (registrar, error) {
			return Open(Config{Dir: dir, Observe: observe})
		}},
		// Without the WAL's fsync: the CPU of the commit path alone.
		{"pebblestore-nosync", func(dir string, observe func(int, time.Duration)) (registrar, error) {
			return Open(Config{Dir: dir, Observe: observe, NoSync: true})
		}},
		{"boltstore", func(dir string, observe func(int, time.Duration)) (registrar, error) {
			return boltstore.Open(boltstore.Config{Dir: dir, Observe: observe})
		}},
	}
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			var commits, ops atomic.Int64
			s, err := st.open(b.TempDir(), func(n int, _ time.Duration) {
				commits.Add(1)
				ops.Add(int64(n))
			})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			var next atomic.Uint64
			b.ReportAllocs()
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Register(ctx, pending(id(next.Add(1))), 1000, 1); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			if c := commits.Load(); c > 0 {
				b.ReportMetric(float64(ops.Load())/float64(c), "ops/commit")
			}
		})
	}
}
