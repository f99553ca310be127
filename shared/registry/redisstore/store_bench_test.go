package redisstore

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/harness/redisharness"
)

// BenchmarkRegisterParallel: one pending record per op from 32×GOMAXPROCS
// goroutines, so that group commits form as under concurrent HTTP clients.
// The baseline, measured in the same run, is what a registry without group
// commit would do: one HSETNX round trip per ID from the client pool.
// ops/roundtrip is the mean group size.
func BenchmarkRegisterParallel(b *testing.B) {
	ctx := context.Background()
	var seq atomic.Uint64
	run := func(b *testing.B, s *Store) {
		b.ReportAllocs()
		b.SetParallelism(32)
		st0 := s.Stats()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Register(ctx, pending(id(seq.Add(1))), 0, testMS); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		st := s.Stats()
		if rt := st.RoundTrips - st0.RoundTrips; rt > 0 {
			b.ReportMetric(float64(st.Ops-st0.Ops)/float64(rt), "ops/roundtrip")
		}
	}
	b.Run("groupcommit", func(b *testing.B) {
		run(b, open(b, Config{}))
	})
	b.Run("groupcommit-durable-wait1", func(b *testing.B) {
		g := redisharness.StartReplicatedT(b, redisharness.Options{AppendFsyncAlways: true}, 1, 0)
		run(b, open(b, Config{Addrs: []string{g.Primary().Addr()}, WaitReplicas: 1, WaitTimeout: time.Second}))
	})
	b.Run("baseline-hsetnx-per-call", func(b *testing.B) {
		s := open(b, Config{}) // for keys and values only
		c := redis.NewClient(&redis.Options{Addr: shared.Addr(), DisableIdentity: true})
		defer c.Close()
		b.ReportAllocs()
		b.SetParallelism(32)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				iss := pending(id(seq.Add(1)))
				k, f := s.bucket(iss.Records[0].ID)
				if err := c.HSetNX(ctx, k, f, appendValue(nil, &iss.Records[0], 1)).Err(); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(1, "ops/roundtrip")
	})
}
