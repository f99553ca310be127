package failurestream_test

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/idgen/idgen/functions/failurestream"
	"github.com/idgen/idgen/shared/saga"
	"github.com/idgen/idgen/shared/saga/sagatest"
)

// BenchmarkStream measures compensations per second through the stream
// with one worker: b.N entries of registered pending IDs are added first,
// then the time runs from the worker's start until every entry is
// acknowledged. Audit entries go to a real file (fsync per group). The
// baseline is the core called directly by Count goroutines (no stream),
// in the same run.
func BenchmarkStream(b *testing.B) {
	b.Run("stream-1-worker", func(b *testing.B) { benchStream(b, true) })
	// Without the audited marks (no recovery of an audit entry lost in a
	// crash): what the marks cost.
	b.Run("stream-1-worker-no-marks", func(b *testing.B) { benchStream(b, false) })
	b.Run("baseline-core-direct", func(b *testing.B) {
		e := newEnv(b)
		store := e.Store()
		aud, _ := e.AuditLog("bench")
		core := e.Core(store, aud, e.RDB)
		ids := sagatest.PendingIDs(b, store, b.N)
		var next atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		t0 := time.Now()
		var wg sync.WaitGroup
		for range failurestream.DefaultCount {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= int64(len(ids)) {
						return
					}
					if _, err := core.Compensate(context.Background(), saga.Event{ID: ids[i].String(), Reason: "bench"}); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		d := time.Since(t0)
		b.StopTimer()
		b.ReportMetric(float64(b.N)/d.Seconds(), "compensations/s")
		b.ReportMetric(float64(runtime.GOMAXPROCS(0)), "procs")
	})
}

// benchStream runs b.N compensations through one worker.
func benchStream(b *testing.B, marks bool) {
	e := newEnv(b)
	store := e.Store()
	aud, _ := e.AuditLog("bench")
	ids := sagatest.PendingIDs(b, store, b.N)
	entries := make([]map[string]any, 0, 1000)
	for i, id := range ids {
		entries = append(entries, failure(id, "bench"))
		if len(entries) == cap(entries) || i == len(ids)-1 {
			e.add(entries...)
			entries = entries[:0]
		}
	}
	m := failurestream.NewMetrics()
	core := e.Core(store, aud, e.RDB)
	if !marks {
		core.Marks = nil
	}
	w := e.worker("bench", failurestream.Config{Metrics: m, Logger: zap.NewNop()}, core, aud, e.RDB)
	b.ReportAllocs()
	b.ResetTimer()
	t0 := time.Now()
	stop := run(b, w)
	for metric(b, m, "idgen_compensate_processed_total", "outcome", "applied") < float64(b.N) {
		time.Sleep(time.Millisecond)
	}
	drained(b, w, time.Minute)
	d := time.Since(t0)
	b.StopTimer()
	stop()
	b.ReportMetric(float64(b.N)/d.Seconds(), "compensations/s")
}
