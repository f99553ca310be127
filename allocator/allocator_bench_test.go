package allocator

import (
	"context"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

// BenchmarkClaimRange measures one claim against the shared ZooKeeper
// (zkAddrs), beside its baseline: the bare get + conditional set that a claim
// costs at least, issued by a plain client in the same run.
func BenchmarkClaimRange(b *testing.B) {
	ctx := context.Background()
	root := testRoot(b)

	b.Run("baseline-raw-get-set", func(b *testing.B) {
		conn := rawConn(b, zkAddrs(b), nil)
		path := root + "-raw"
		if _, err := conn.Create(path, []byte(`{"next":0,"token":""}`), zk.FlagPersistent, zk.WorldACL(zk.PermAll)); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			_, st, err := conn.Get(path)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := conn.Set(path, []byte(`{"next":1000,"token":"x:1"}`), st.Version); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("allocator", func(b *testing.B) {
		a := openT(b, Config{Servers: zkAddrs(b), Root: root})
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.ClaimRange(ctx, 1000); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(a.Stats().CASConflicts)/float64(b.N), "conflicts/op")
	})

	b.Run("allocator-parallel", func(b *testing.B) {
		a := openT(b, Config{Servers: zkAddrs(b), Root: root})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := a.ClaimRange(ctx, 1000); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(a.Stats().CASConflicts)/float64(b.N), "conflicts/op")
	})
}

// BenchmarkWorker is the hot-path check the generator makes per batch,
// beside the clock read it is always paired with.
func BenchmarkWorker(b *testing.B) {
	b.Run("baseline-time-now", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = time.Now()
			}
		})
	})
	b.Run("worker", func(b *testing.B) {
		a := openT(b, Config{Servers: zkAddrs(b), Root: testRoot(b)})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := a.Worker(time.Now()); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
