package reconcile_test

import (
	"context"
	"testing"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/reconcile"
	"github.com/idgen/idgen/shared/registry"
)

// BenchmarkRun is one report of a window of 10 claims of 20,000 counters,
// 190,000 of them issued in batches of 500, on an embedded store: from
// the state maps ("maps", what every report reads) and also from every
// record ("deep"), the baseline measured in the same run. counters/s is
// the report's speed.
//
//	go test -run XXX -bench Run -benchtime 5x ./shared/reconcile/
func BenchmarkRun(b *testing.B) {
	ctx := context.Background()
	st := edgeStore(b)
	const ms, claims, size, batch = 1_764_000_000_000, 10, 20_000, 500
	for i := range uint64(claims) {
		start := i * size
		put(b, st, zkc(start, start+size, ms, "a", false))
		for c := start; c < start+size-1000; c += batch {
			var iss registry.Issue
			for k := c; k < c+batch; k++ {
				id := idcodec.MustCompose(idcodec.Fields{TimestampMS: ms, Worker: 1, Shard: shard, Counter: k})
				iss.Records = append(iss.Records, registry.Record{ID: id, State: registry.Pending, IssuedAtMS: ms, Subject: "x"})
			}
			if _, err := st.Register(ctx, iss, 60_000, ms); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, deep := range []bool{false, true} {
		name := "maps"
		if deep {
			name = "deep"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				rep, err := reconcile.Run(ctx, st, reconcile.Query{Shard: shard, FromMS: ms, ToMS: ms, NowMS: ms + 10, SharedLedger: true, Deep: deep})
				if err != nil || rep.Totals.Issued != claims*(size-1000) || !rep.OK() {
					b.Fatalf("issued %d, violations %v, %v", rep.Totals.Issued, rep.Violations, err)
				}
			}
			b.ReportMetric(float64(claims*size)*float64(b.N)/b.Elapsed().Seconds(), "counters/s")
		})
	}
}
