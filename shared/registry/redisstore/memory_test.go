package redisstore

import (
	"context"
	"strconv"
	"sync"
	"testing"

	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/registry"
)

// TestBytesPerID: 100k IDs registered one by one cost at most 64 bytes each
// of Redis memory (INFO used_memory delta), because their buckets stay
// listpacks; registered in batches (one millisecond each), their records
// are runs (RunsField) and cost a few bytes each, most of them the
// bucket's two keys (the hash and its state map). A bucket with two runs
// passes hash-max-listpack-value and becomes a hash table. With an
// idempotency key hash in every record the figure is logged, not bounded.
func TestBytesPerID(t *testing.T) {
	addr := redisharnessStandalone(t, "noeviction")
	admin := raw(t, addr)
	ctx := context.Background()
	const n = 100_000
	tests := []struct {
		name     string
		shard    uint8
		perIssue int
		idem     bool
		limit    float64
	}{
		{"single IDs", 1, 1, false, 64},
		{"batches of 100", 2, 100, false, 6},
		{"batches of 1000", 3, 1000, false, 5},
		{"batches of 100 with idempotency key hash", 4, 100, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t, Config{Addrs: []string{addr}})
			before := infoInt(t, admin, "memory", "used_memory")
			var wg sync.WaitGroup
			perIssue := tt.perIssue
			for g := 0; g < 32; g++ {
				wg.Go(func() {
					for i := g; i < n/perIssue; i += 32 {
						ids := make([]idcodec.ID, perIssue)
						for j := range ids {
							ids[j] = idcodec.MustCompose(idcodec.Fields{TimestampMS: testMS + uint64(i), Worker: 7, Shard: tt.shard, Counter: uint64(i*perIssue + j)})
						}
						iss := pending(ids...)
						if tt.idem {
							kh := registry.IdemKeyHash("svc-payments", strconv.Itoa(i))
							for j := range iss.Records {
								iss.Records[j].IdemKeyHash = kh[:]
							}
						}
						if _, err := s.Register(ctx, iss, 0, testMS); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			after := infoInt(t, admin, "memory", "used_memory")
			per := float64(after-before) / n
			key, _ := s.bucket(idcodec.MustCompose(idcodec.Fields{TimestampMS: testMS, Worker: 7, Shard: tt.shard, Counter: 500}))
			enc := admin.ObjectEncoding(ctx, key).Val()
			st := s.Stats()
			t.Logf("%d IDs: used_memory +%d bytes = %.1f bytes/ID; bucket encoding %s; %d flushes, %.1f issues per flush",
				n, after-before, per, enc, st.Batches, float64(st.Ops)/float64(st.Batches))
			if tt.limit > 0 && per > tt.limit {
				t.Fatalf("%.1f bytes/ID, want <= %.0f", per, tt.limit)
			}
			if tt.perIssue == 1 && enc != "listpack" {
				t.Fatalf("bucket encoding %s, want listpack", enc)
			}
		})
	}
}
