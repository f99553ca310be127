package generator

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"github.com/idgen/idgen/shared/idcodec"
)

// The hot path beside UUIDv7, measured in the same run:
//
//	go test -run XXX -bench . -benchmem ./shared/generator/
//
// Each answers "one fresh unique ID". The other ID libraries (snowflake,
// sonyflake, xid) are peers of make bench (tests/cmd/idgen-bench), so that
// the service's module does not depend on them.
func BenchmarkHotPath(b *testing.B) {
	g := newGen(b, &memSource{}, FixedWorker(1), Config{InitialStep: 1 << 22, MinStep: 1 << 22, MaxStep: 1 << 22})
	ctx := context.Background()
	if err := g.Warm(ctx); err != nil {
		b.Fatal(err)
	}
	b.Run("idgen", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := g.Next(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("idgen-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := g.Next(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("uuid-v7", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := uuid.NewV7(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("uuid-v7-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := uuid.NewV7(); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkBatch1000 is the batch path: one atomic add for 1000 IDs.
func BenchmarkBatch1000(b *testing.B) {
	g := newGen(b, &memSource{}, FixedWorker(1), Config{InitialStep: 1 << 22, MinStep: 1 << 22, MaxStep: 1 << 22})
	buf := make([]idcodec.ID, 0, 1000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := g.NextN(context.Background(), 1000, buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}
