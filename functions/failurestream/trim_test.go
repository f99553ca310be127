package failurestream_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/functions/failurestream"
	"github.com/idgen/idgen/shared/saga/sagatest"
)

// xlen is the length of stream, failing t on an error.
func (e *env) xlen(stream string) int64 {
	e.T.Helper()
	n, err := e.RDB.XLen(context.Background(), stream).Result()
	if err != nil {
		e.T.Fatal(err)
	}
	return n
}

// inStream reports whether entry id is still in the stream.
func (e *env) inStream(id string) bool {
	e.T.Helper()
	got, err := e.RDB.XRange(context.Background(), e.Stream, id, id).Result()
	if err != nil {
		e.T.Fatal(err)
	}
	return len(got) == 1
}

// waitLen polls until the stream holds at most max entries.
func (e *env) waitLen(max int64, timeout time.Duration) {
	e.T.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := e.xlen(e.Stream)
		if n <= max {
			return
		}
		if time.Now().After(deadline) {
			e.T.Fatalf("XLEN %s = %d after %v, want <= %d", e.Stream, n, timeout, max)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitPending polls until the default group has k entries pending.
func (e *env) waitPending(k int64) {
	e.T.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, err := e.RDB.XPending(context.Background(), e.Stream, failurestream.DefaultGroup).Result()
		if err == nil && p.Count == k {
			return
		}
		if time.Now().After(deadline) {
			e.T.Fatalf("pending %+v, %v; want %d", p, err, k)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// staysLen asserts, over 20 polls 10 ms apart (the acker's trim after its
// last XACK included), that the stream keeps n entries and entry id
// (unless "").
func (e *env) staysLen(n int64, id, what string) {
	e.T.Helper()
	for range 20 {
		if got := e.xlen(e.Stream); got != n || (id != "" && !e.inStream(id)) {
			e.T.Fatalf("%s: XLEN %d (want %d), entry %s present %v", what, got, n, id, id == "" || e.inStream(id))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// failures returns n well-formed failure entries of IDs never registered
// (null compensations: the cheapest case) and every k-th one malformed.
func failures(n, k int) (entries []map[string]any, malformed int) {
	for i, id := range sagatest.NewIDs(n) {
		if k > 0 && i%k == 0 {
			entries = append(entries, map[string]any{"id": "not-an-id", "reason": "r"})
			malformed++
			continue
		}
		entries = append(entries, failure(id, "saga aborted"))
	}
	return entries, malformed
}

// TestAcknowledgedEntriesTrimmed: after 2,000 entries are processed or
// dead-lettered and acknowledged, the failure stream holds at most one
// entry (the last delivered one), and every dead letter is in the
// dead-letter stream.
func TestAcknowledgedEntriesTrimmed(t *testing.T) {
	e := newEnv(t)
	_, _, m, w := e.soloWorker()
	run(t, w)
	entries, malformed := failures(2000, 40)
	for i := 0; i < len(entries); i += 500 {
		e.add(entries[i : i+500]...)
	}
	drained(t, w, 30*time.Second)
	e.waitLen(1, 5*time.Second)
	if n := e.xlen(w.DLQ()); n != int64(malformed) {
		t.Fatalf("%d dead letters, want %d", n, malformed)
	}
	if got := metric(t, m, "idgen_compensate_trimmed_total"); got < float64(len(entries)-1) {
		t.Fatalf("idgen_compensate_trimmed_total = %v, want >= %d", got, len(entries)-1)
	}
	if got := metric(t, m, "idgen_compensate_stream_length", "stream", e.Stream); got > 1 {
		t.Fatalf("idgen_compensate_stream_length = %v", got)
	}
}

// TestTrimKeepsUnhandledEntries: nothing at or after the oldest entry some
// consumer group has not acknowledged is trimmed: an entry in flight at
// this worker, an entry pending at a dead consumer, and entries another
// group has not read yet all stay in the stream (with everything after
// them) until they are acknowledged.
func TestTrimKeepsUnhandledEntries(t *testing.T) {
	const n = 200
	ctx := context.Background()

	t.Run("in flight", func(t *testing.T) {
		e := newEnv(t)
		store := e.Store()
		aud, _ := e.AuditLog("w1")
		entries, _ := failures(n, 0)
		held := sagatest.NewIDs(1)[0]
		entries[0] = failure(held, "slow")
		gate := gatedRegistry{next: store, up: make(chan struct{}), only: held}
		m := failurestream.NewMetrics()
		w := e.worker("w1", failurestream.Config{Metrics: m}, e.Core(gate, aud, e.RDB), aud, e.RDB)
		ids := e.add(entries...)
		run(t, w)
		waitProcessed(t, m, n-1)
		e.waitPending(1)
		e.staysLen(n, ids[0], "with the oldest entry in flight")
		close(gate.up)
		drained(t, w, 10*time.Second)
		e.waitLen(1, 5*time.Second)
	})

	t.Run("pending at a dead consumer", func(t *testing.T) {
		e := newEnv(t)
		store := e.Store()
		aud, _ := e.AuditLog("w1")
		entries, _ := failures(n, 0)
		ids := e.add(entries...)
		if err := e.RDB.XGroupCreate(ctx, e.Stream, failurestream.DefaultGroup, "0").Err(); err != nil {
			t.Fatal(err)
		}
		// A consumer reads the first entry and dies.
		if err := e.RDB.XReadGroup(ctx, &redis.XReadGroupArgs{Group: failurestream.DefaultGroup, Consumer: "dead", Streams: []string{e.Stream, ">"}, Count: 1}).Err(); err != nil {
			t.Fatal(err)
		}
		m := failurestream.NewMetrics()
		w := e.worker("w1", failurestream.Config{Metrics: m, ClaimIdle: time.Hour}, e.Core(store, aud, e.RDB), aud, e.RDB)
		run(t, w)
		waitProcessed(t, m, n-1)
		e.waitPending(1)
		e.staysLen(n, ids[0], "with the oldest entry pending at a dead consumer")
	})

	t.Run("another group", func(t *testing.T) {
		e := newEnv(t)
		store := e.Store()
		aud, _ := e.AuditLog("w1")
		if err := e.RDB.XGroupCreateMkStream(ctx, e.Stream, "archiver", "0").Err(); err != nil {
			t.Fatal(err)
		}
		entries, _ := failures(n, 0)
		e.add(entries...)
		m := failurestream.NewMetrics()
		w := e.worker("w1", failurestream.Config{Metrics: m}, e.Core(store, aud, e.RDB), aud, e.RDB)
		run(t, w)
		drained(t, w, 10*time.Second)
		e.staysLen(n, "", "with a group that read nothing")
		// The other group reads and acknowledges the first half.
		got, err := e.RDB.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "archiver", Consumer: "a", Streams: []string{e.Stream, ">"}, Count: n / 2}).Result()
		if err != nil {
			t.Fatal(err)
		}
		var acked []string
		for _, msg := range got[0].Messages {
			acked = append(acked, msg.ID)
		}
		if err := e.RDB.XAck(ctx, e.Stream, "archiver", acked...).Err(); err != nil {
			t.Fatal(err)
		}
		// The worker trims at its next acknowledgement.
		e.add(failure(sagatest.NewIDs(1)[0], "r"))
		drained(t, w, 10*time.Second)
		e.waitLen(n/2+2, 5*time.Second)
		if !e.inStream(acked[len(acked)-1]) {
			t.Fatal("the other group's last delivered entry was trimmed")
		}
	})
}

// waitProcessed polls until the worker finished at least k entries.
func waitProcessed(t *testing.T, m *failurestream.Metrics, k int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var sum float64
		for _, o := range []string{"applied", "replayed", "null_compensation", "dead_lettered"} {
			sum += metric(t, m, "idgen_compensate_processed_total", "outcome", o)
		}
		if sum >= float64(k) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v entries processed after 20 s, want %d", sum, k)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
