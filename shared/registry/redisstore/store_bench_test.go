package redisstore

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/harness/proc"
	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/shared/idcodec"
)

// BenchmarkRegisterParallel: one pending record per op from 32×GOMAXPROCS
// goroutines, so that group commits form as under concurrent HTTP clients.
// The baseline, measured in the same run, is what a registry without group
// commit would do: one HSETNX round trip per ID from the client pool.
// ops/roundtrip is the mean group size. The group commit on the shared
// server also reports its CPU (redis-cpu-ns/op, from INFO cpu) and the time
// of the batch script (evalsha-ns/op, from INFO commandstats) per
// registration: the cost of the script, the state maps included.
func BenchmarkRegisterParallel(b *testing.B) {
	ctx := context.Background()
	var seq atomic.Uint64
	run := func(b *testing.B, s *Store) {
		b.ReportAllocs()
		b.SetParallelism(32)
		var srv *redis.Client
		if s.cfg.WaitReplicas == 0 { // the shared server, used by this benchmark alone
			srv = redis.NewClient(&redis.Options{Addr: shared.Addr(), DisableIdentity: true})
			defer srv.Close()
			if err := srv.ConfigResetStat(ctx).Err(); err != nil {
				b.Fatal(err)
			}
		}
		cpu0 := serverCPU(b, srv)
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
		if srv != nil {
			b.ReportMetric(float64(serverCPU(b, srv)-cpu0)/float64(b.N), "redis-cpu-ns/op")
			b.ReportMetric(evalshaNanos(b, srv)/float64(b.N), "evalsha-ns/op")
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

// serverCPU is the CPU time the server has used (user and system), or 0
// without a client.
func serverCPU(b *testing.B, c *redis.Client) time.Duration {
	if c == nil {
		return 0
	}
	info, err := c.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var sec float64
	for line := range strings.SplitSeq(info, "\r\n") {
		for _, f := range []string{"used_cpu_user:", "used_cpu_sys:"} {
			if v, ok := strings.CutPrefix(line, f); ok {
				x, err := strconv.ParseFloat(v, 64)
				if err != nil {
					b.Fatalf("INFO cpu %q: %v", line, err)
				}
				sec += x
			}
		}
	}
	return time.Duration(sec * float64(time.Second))
}

// evalshaNanos is the time the server spent in EVALSHA since its last
// CONFIG RESETSTAT.
func evalshaNanos(b *testing.B, c *redis.Client) float64 {
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_evalsha:"); ok {
			for kv := range strings.SplitSeq(rest, ",") {
				if v, ok := strings.CutPrefix(kv, "usec="); ok {
					us, err := strconv.ParseFloat(v, 64)
					if err != nil {
						b.Fatalf("INFO commandstats %q: %v", line, err)
					}
					return us * 1000
				}
			}
		}
	}
	return 0
}

// BenchmarkRegisterBatch: one issue of 1000 pending records of one
// millisecond per op (a POST /generate with count=1000) from 4×GOMAXPROCS
// goroutines, on the shared server. It reports per ID the server's CPU
// (redis-cpu-ns/id, from INFO cpu), the time of the batch script
// (evalsha-ns/id), this process's CPU (client-cpu-ns/id: Register, the
// flusher and go-redis, from getrusage), and the IDs registered per second.
func BenchmarkRegisterBatch(b *testing.B) {
	const n = 1000
	ctx := context.Background()
	s := open(b, Config{})
	srv := redis.NewClient(&redis.Options{Addr: shared.Addr(), DisableIdentity: true})
	defer srv.Close()
	if err := srv.ConfigResetStat(ctx).Err(); err != nil {
		b.Fatal(err)
	}
	var seq atomic.Uint64
	b.ReportAllocs()
	b.SetParallelism(4)
	cpu0, own0 := serverCPU(b, srv), proc.SelfCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		// The records are built once and renumbered per op, as the
		// handler reuses its pooled records: the figures are the store's.
		batch := make([]idcodec.ID, n)
		for i := range batch {
			batch[i] = id(uint64(i) + 1)
		}
		iss := pending(batch...)
		for pb.Next() {
			first := seq.Add(n) - n + 1
			for i := range iss.Records {
				iss.Records[i].ID = id(first + uint64(i))
			}
			if _, err := s.Register(ctx, iss, 0, testMS); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	ids := float64(b.N) * n
	b.ReportMetric(float64(proc.SelfCPU(b)-own0)/ids, "client-cpu-ns/id")
	b.ReportMetric(float64(serverCPU(b, srv)-cpu0)/ids, "redis-cpu-ns/id")
	b.ReportMetric(evalshaNanos(b, srv)/ids, "evalsha-ns/id")
	b.ReportMetric(ids/b.Elapsed().Seconds(), "ids/s")
}
