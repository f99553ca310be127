package failurestream_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/idgen/idgen/functions/failurestream"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/saga"
	"github.com/idgen/idgen/shared/saga/sagatest"
)

// metric returns the value of a counter or gauge with the given labels
// (name=value pairs), 0 when absent.
func metric(t testing.TB, m *failurestream.Metrics, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, mm := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range mm.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if c := mm.GetCounter(); c != nil {
				return c.GetValue()
			}
			return mm.GetGauge().GetValue()
		}
	}
	return 0
}

// TestStreamDuplicatesInterleavedWithCommit: the same failure event
// delivered 5 times through the stream, with a (refused) commit between the
// deliveries, and a commit before the first delivery of another ID.
func TestStreamDuplicatesInterleavedWithCommit(t *testing.T) {
	e := newEnv(t)
	store, path, m, w := e.soloWorker()
	run(t, w)
	ids := sagatest.PendingIDs(t, store, 2)
	a, b := ids[0], ids[1]
	ctx := context.Background()
	if _, _, err := store.Transition(ctx, b, registry.Change{To: registry.Committed, Actor: "svc", NowMS: sagatest.NowMS()}); err != nil {
		t.Fatal(err)
	}
	ev := func(id idcodec.ID) map[string]any {
		return map[string]any{"id": id.String(), "reason": "insufficient funds", "event_id": "evt-" + id.String()[:8]}
	}
	e.add(ev(a), ev(b), ev(a), ev(b))
	drained(t, w, 10*time.Second)
	for _, id := range ids {
		if _, _, err := store.Transition(ctx, id, registry.Change{To: registry.Committed, Actor: "svc", NowMS: sagatest.NowMS()}); !errors.Is(err, registry.ErrConflict) {
			t.Fatalf("commit after compensation: %v, want ErrConflict", err)
		}
	}
	e.add(ev(a), ev(b), ev(a), ev(b), ev(a), ev(b))
	drained(t, w, 10*time.Second)

	for _, id := range ids {
		if n := sagatest.CompensatedSteps(t, store, id); n != 1 {
			t.Fatalf("%s: %d compensated steps, want 1", id, n)
		}
	}
	counts := sagatest.PerResource(sagatest.AuditLines(t, audit.ActionCompensate, path))
	if counts[a.String()] != 1 || counts[b.String()] != 1 || len(counts) != 2 {
		t.Fatalf("audit entries per ID %v, want 1 each", counts)
	}
	if got := metric(t, m, "idgen_compensate_processed_total", "outcome", "applied"); got != 2 {
		t.Fatalf("applied = %v, want 2", got)
	}
	if got := metric(t, m, "idgen_compensate_processed_total", "outcome", "replayed"); got != 8 {
		t.Fatalf("replayed = %v, want 8", got)
	}
}

// TestStreamTwoWorkersOneID: 16 entries of one ID (and 16 of others)
// consumed concurrently by 2 workers (own registry clients, stream
// clients and audit logs): one effect, one audit entry.
func TestStreamTwoWorkersOneID(t *testing.T) {
	e := newEnv(t)
	s1, s2 := e.Store(), e.Store()
	a1, p1 := e.AuditLog("w1")
	a2, p2 := e.AuditLog("w2")
	c1, c2 := e.Client(), e.Client()
	m1, m2 := failurestream.NewMetrics(), failurestream.NewMetrics()
	// Count 4: each read takes a few entries, so both workers get some.
	w1 := e.worker("w1", failurestream.Config{Count: 4, Metrics: m1}, e.Core(s1, a1, c1), a1, c1)
	w2 := e.worker("w2", failurestream.Config{Count: 4, Metrics: m2}, e.Core(s2, a2, c2), a2, c2)
	for round := range 5 {
		ids := sagatest.PendingIDs(t, s1, 17)
		hot := ids[0]
		var entries []map[string]any
		for i := range 16 {
			entries = append(entries, failure(hot, "saga aborted"), failure(ids[1+i], "saga aborted"))
		}
		e.add(entries...)
		if round == 0 {
			run(t, w1)
			run(t, w2)
		}
		drained(t, w1, 10*time.Second)
		counts := sagatest.PerResource(sagatest.AuditLines(t, audit.ActionCompensate, p1, p2))
		for _, id := range ids {
			if counts[id.String()] != 1 {
				t.Fatalf("round %d: %s has %d audit entries, want 1", round, id, counts[id.String()])
			}
			if n := sagatest.CompensatedSteps(t, s2, id); n != 1 {
				t.Fatalf("round %d: %s has %d compensated steps", round, id, n)
			}
		}
	}
	applied := metric(t, m1, "idgen_compensate_processed_total", "outcome", "applied") + metric(t, m2, "idgen_compensate_processed_total", "outcome", "applied")
	dup := metric(t, m1, "idgen_compensate_processed_total", "outcome", "replayed") + metric(t, m2, "idgen_compensate_processed_total", "outcome", "replayed")
	if applied != 5*17 || dup != 5*15 {
		t.Fatalf("applied %v replayed %v, want %d and %d", applied, dup, 5*17, 5*15)
	}
	for _, m := range []*failurestream.Metrics{m1, m2} {
		if metric(t, m, "idgen_compensate_processed_total", "outcome", "applied") == 0 {
			t.Fatal("one worker processed nothing: the test did not share the stream")
		}
	}
}

// TestPoisonEntriesDeadLettered: malformed entries go to the DLQ at once
// with their error and one audit entry each, while the good entries around
// them are compensated.
func TestPoisonEntriesDeadLettered(t *testing.T) {
	e := newEnv(t)
	store, path, m, w := e.soloWorker()
	good := sagatest.PendingIDs(t, store, 6)
	poison := []struct {
		fields map[string]any
		err    string
	}{
		{map[string]any{"id": "not-a-uuid", "reason": "r"}, "not an idgen ID"},
		{map[string]any{"reason": "r", "event_id": "evt-no-id"}, "missing id"},
		{map[string]any{"id": good[0].String()}, "missing reason"},
		{map[string]any{"id": good[1].String(), "reason": "r", "occurred_at": "last tuesday"}, "RFC 3339"},
		{map[string]any{"id": "6ba7b810-9dad-41d1-80b4-00c04fd430c8", "reason": "r"}, "not an idgen ID"},
	}
	var entries []map[string]any
	for i, p := range poison {
		entries = append(entries, failure(good[i], "ok"), p.fields)
	}
	entries = append(entries, failure(good[5], "ok"))
	ids := e.add(entries...)
	run(t, w)
	drained(t, w, 10*time.Second)

	for _, id := range good {
		if n := sagatest.CompensatedSteps(t, store, id); n != 1 {
			t.Fatalf("%s: %d compensated steps", id, n)
		}
	}
	dlq, err := e.RDB.XRange(context.Background(), w.DLQ(), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(dlq) != len(poison) {
		t.Fatalf("%d dead letters, want %d: %v", len(dlq), len(poison), dlq)
	}
	byOrig := map[string]map[string]any{}
	for _, d := range dlq {
		byOrig[d.Values["original_id"].(string)] = d.Values
	}
	for i, p := range poison {
		v := byOrig[ids[2*i+1]] // entries are processed concurrently: any order
		if v == nil || !strings.Contains(v["error"].(string), p.err) || v["cause"] != "malformed" || v["deliveries"] != "1" || v["consumer"] != "w1" {
			t.Fatalf("dead letter %d: %v, want error with %q", i, v, p.err)
		}
		for k, want := range p.fields {
			if v[k] != want {
				t.Fatalf("dead letter %d lost field %s: %v", i, k, v)
			}
		}
	}
	dl := sagatest.AuditLines(t, audit.ActionDeadLetter, path)
	if len(dl) != len(poison) {
		t.Fatalf("dead-letter audit entries %+v", dl)
	}
	for _, a := range dl {
		want := e.Stream + "/" + ids[3] // the entry without an id
		if a.Outcome != audit.OutcomeFailed || a.Reason == "" || (a.Resource == want) != (a.RequestID == "evt-no-id") {
			t.Fatalf("dead-letter audit entry %+v", a)
		}
	}
	if got := metric(t, m, "idgen_compensate_dead_lettered_total", "cause", "malformed"); got != float64(len(poison)) {
		t.Fatalf("dead_lettered_total = %v", got)
	}
	if got := metric(t, m, "idgen_compensate_dlq_length"); got != float64(len(poison)) {
		t.Fatalf("dlq_length = %v", got)
	}
}

// bump delivers ids to a consumer that then dies, n times in all.
func (e *env) bump(consumer string, n int, ids ...string) {
	e.T.Helper()
	ctx := context.Background()
	if err := e.RDB.XGroupCreateMkStream(ctx, e.Stream, failurestream.DefaultGroup, "0").Err(); err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
		e.T.Fatal(err)
	}
	got, err := e.RDB.XReadGroup(ctx, &redis.XReadGroupArgs{Group: failurestream.DefaultGroup, Consumer: consumer, Streams: []string{e.Stream, ">"}, Count: int64(len(ids))}).Result()
	if err != nil || len(got[0].Messages) != len(ids) {
		e.T.Fatalf("read: %v %v", got, err)
	}
	for range n - 1 {
		if err := e.RDB.XClaim(ctx, &redis.XClaimArgs{Stream: e.Stream, Group: failurestream.DefaultGroup, Consumer: consumer, Messages: ids}).Err(); err != nil {
			e.T.Fatal(err)
		}
	}
}

// pendingAt returns how many entries consumer holds pending.
func (e *env) pendingAt(consumer string) int64 {
	e.T.Helper()
	cs, err := e.RDB.XInfoConsumers(context.Background(), e.Stream, failurestream.DefaultGroup).Result()
	if err != nil && !strings.Contains(err.Error(), "NOGROUP") {
		e.T.Fatal(err)
	}
	for _, c := range cs {
		if c.Name == consumer {
			return c.Pending
		}
	}
	return 0
}

// TestTakeOverAndMaxDeliveries: entries pending at a dead consumer are
// taken over after ClaimIdle and applied; one delivered more than
// MaxDeliveries times is dead-lettered unprocessed.
func TestTakeOverAndMaxDeliveries(t *testing.T) {
	e := newEnv(t)
	store := e.Store()
	aud, path := e.AuditLog("w1")
	ids := sagatest.PendingIDs(t, store, 51)
	entries := failuresOf("r", ids[:50]...)
	took := e.add(entries...)
	e.bump("dead-1", 2, took...) // two deliveries, never acknowledged
	poisoned := e.add(failure(ids[50], "r"))
	e.bump("dead-2", 6, poisoned...) // a crash loop: 6 deliveries
	m := failurestream.NewMetrics()
	w := e.worker("w1", failurestream.Config{Metrics: m, ClaimIdle: 200 * time.Millisecond, MaxDeliveries: 5}, e.Core(store, aud, e.RDB), aud, e.RDB)
	start := time.Now()
	run(t, w)
	drained(t, w, 10*time.Second)
	t.Logf("took over and drained in %v", time.Since(start))
	counts := sagatest.PerResource(sagatest.AuditLines(t, audit.ActionCompensate, path))
	for _, id := range ids[:50] {
		if counts[id.String()] != 1 {
			t.Fatalf("%s: %d audit entries", id, counts[id.String()])
		}
	}
	rec, err := store.Get(context.Background(), ids[50])
	if err != nil || rec.State != registry.Pending {
		t.Fatalf("dead-lettered entry was applied: %+v %v", rec, err)
	}
	dlq, err := e.RDB.XRange(context.Background(), w.DLQ(), "-", "+").Result()
	if err != nil || len(dlq) != 1 || dlq[0].Values["cause"] != "max_deliveries" || dlq[0].Values["deliveries"] != "7" || dlq[0].Values["id"] != ids[50].String() {
		t.Fatalf("dlq %v %v", dlq, err)
	}
	if got := metric(t, m, "idgen_compensate_reclaimed_total"); got != 51 {
		t.Fatalf("reclaimed = %v, want 51", got)
	}
}

// TestResumeOwnPending: a worker restarted under the same consumer name
// resumes the entries it had read before it died.
func TestResumeOwnPending(t *testing.T) {
	e := newEnv(t)
	store := e.Store()
	aud, path := e.AuditLog("w1")
	ids := sagatest.PendingIDs(t, store, 10)
	entries := failuresOf("r", ids...)
	e.bump("w1", 1, e.add(entries...)...)
	// ClaimIdle an hour: only the own-pending read can find them.
	w := e.worker("w1", failurestream.Config{ClaimIdle: time.Hour}, e.Core(store, aud, e.RDB), aud, e.RDB)
	run(t, w)
	drained(t, w, 10*time.Second)
	if n := len(sagatest.AuditLines(t, audit.ActionCompensate, path)); n != 10 {
		t.Fatalf("%d audit entries, want 10", n)
	}
}

// TestTransientFailuresRetried: the registry is unavailable for a while,
// then loses a response after storing: the entries stay pending, are
// retried with backoff, and each is applied and audited once.
func TestTransientFailuresRetried(t *testing.T) {
	e := newEnv(t)
	store := e.Store()
	aud, path := e.AuditLog("w1")
	fr := &sagatest.FlakyRegistry{Next: store}
	fr.FailN.Store(30)
	fr.LostN.Store(5)
	m := failurestream.NewMetrics()
	w := e.worker("w1", failurestream.Config{Metrics: m, BackoffBase: time.Millisecond, BackoffMax: 20 * time.Millisecond, Count: 8},
		e.Core(fr, aud, e.RDB), aud, e.RDB)
	ids := sagatest.PendingIDs(t, store, 20)
	entries := failuresOf("r", ids...)
	e.add(entries...)
	run(t, w)
	drained(t, w, 20*time.Second)
	counts := sagatest.PerResource(sagatest.AuditLines(t, audit.ActionCompensate, path))
	for _, id := range ids {
		if counts[id.String()] != 1 {
			t.Fatalf("%s: %d audit entries", id, counts[id.String()])
		}
	}
	if got := metric(t, m, "idgen_compensate_retried_total"); got != 35 {
		t.Fatalf("retried_total = %v, want 35", got)
	}
	// A lost response may hit the retry of an earlier one: 1..5 IDs.
	if got := metric(t, m, "idgen_compensate_audit_recovered_total"); got < 1 || got > 5 {
		t.Fatalf("audit_recovered_total = %v, want 1..5 (the lost responses)", got)
	}
}

// slowRegistry delays every transition.
type slowRegistry struct {
	next saga.Transitioner
	d    time.Duration
}

func (s slowRegistry) Transition(ctx context.Context, id idcodec.ID, ch registry.Change) (registry.Record, registry.Outcome, error) {
	time.Sleep(s.d)
	return s.next.Transition(ctx, id, ch)
}

// TestGracefulShutdown stops a worker mid-stream: Run returns promptly,
// what it acknowledged is applied and audited, nothing is lost: a second
// worker finishes the rest, every ID audited once.
func TestGracefulShutdown(t *testing.T) {
	e := newEnv(t)
	store := e.Store()
	a1, p1 := e.AuditLog("w1")
	a2, p2 := e.AuditLog("w2")
	ids := sagatest.PendingIDs(t, store, 600)
	entries := failuresOf("r", ids...)
	e.add(entries...)
	m := failurestream.NewMetrics()
	w1 := e.worker("w1", failurestream.Config{Metrics: m, ClaimIdle: 300 * time.Millisecond}, e.Core(slowRegistry{store, 5 * time.Millisecond}, a1, e.RDB), a1, e.RDB)
	stop := run(t, w1)
	for metric(t, m, "idgen_compensate_processed_total", "outcome", "applied") < 100 {
		time.Sleep(5 * time.Millisecond)
	}
	t0 := time.Now()
	stop()
	if d := time.Since(t0); d > 3*time.Second {
		t.Fatalf("shutdown took %v", d)
	}
	st, err := w1.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	done := len(sagatest.AuditLines(t, audit.ActionCompensate, p1))
	if st.Lag == 0 || done >= 600 {
		t.Fatalf("stopped with lag %d after %d applied: the test did not stop mid-stream", st.Lag, done)
	}
	if int64(done) < 600-st.Lag-st.Pending {
		t.Fatalf("%d audited but %d acknowledged", done, 600-st.Lag-st.Pending)
	}
	w2 := e.worker("w2", failurestream.Config{ClaimIdle: 300 * time.Millisecond}, e.Core(store, a2, e.RDB), a2, e.RDB)
	run(t, w2)
	drained(t, w2, 20*time.Second)
	counts := sagatest.PerResource(sagatest.AuditLines(t, audit.ActionCompensate, p1, p2))
	for _, id := range ids {
		if counts[id.String()] != 1 {
			t.Fatalf("%s: %d audit entries", id, counts[id.String()])
		}
	}
}

func TestMetricsAndHealth(t *testing.T) {
	e := newEnv(t)
	_, _, m, w := e.soloWorker()
	srv := httptest.NewServer(failurestream.Handler(m, map[string]failurestream.Check{"redis": w.Ping}))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	e.add(map[string]any{"id": "x", "reason": "r"})
	run(t, w)
	drained(t, w, 10*time.Second)
	code, body := get("/metrics")
	for _, want := range []string{
		`idgen_compensate_processed_total{outcome="dead_lettered"} 1`, "idgen_compensate_retried_total 0",
		`idgen_compensate_dead_lettered_total{cause="malformed"} 1`, `idgen_compensate_lag{group="compensate",stream="` + e.Stream + `"} 0`,
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Fatalf("/metrics %d lacks %q:\n%s", code, want, body)
		}
	}
	if code, body := get("/health"); code != 200 || !strings.Contains(body, `"redis":"ok"`) {
		t.Fatalf("/health %d %s", code, body)
	}
	down := httptest.NewServer(failurestream.Handler(failurestream.NewMetrics(), map[string]failurestream.Check{
		"audit": func(context.Context) error { return errors.New("disk full") },
	}))
	defer down.Close()
	resp, err := http.Get(down.URL + "/health/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("/health/ready with a failing check: %d", resp.StatusCode)
	}
}

// gatedRegistry fails every transition with ErrUnavailable (fail) or
// holds it (!fail) until up is closed; with only set, it does so to the
// transitions of that ID alone and passes the others on.
type gatedRegistry struct {
	next saga.Transitioner
	up   chan struct{}
	fail bool
	only idcodec.ID // zero: every ID
}

var _ saga.Transitioner = gatedRegistry{}

func (g gatedRegistry) Transition(ctx context.Context, id idcodec.ID, ch registry.Change) (registry.Record, registry.Outcome, error) {
	if g.only != (idcodec.ID{}) && id != g.only {
		return g.next.Transition(ctx, id, ch)
	}
	if g.fail {
		select {
		case <-g.up:
		default:
			return registry.Record{}, 0, registry.ErrUnavailable
		}
	}
	select {
	case <-g.up:
	case <-ctx.Done():
		return registry.Record{}, 0, ctx.Err()
	}
	return g.next.Transition(ctx, id, ch)
}

// TestLiveWorkerKeepsItsEntry: a worker that is live but slow far longer
// than ClaimIdle (retrying through a registry outage with short or long
// backoff, or in one attempt that takes long) keeps its entry fresh: a
// peer does not take it over (which would burn deliveries towards the
// DLQ: the chaos suite saw a live worker's entry dead-lettered), the
// delivery count stays 1, and the entry is applied and audited once.
func TestLiveWorkerKeepsItsEntry(t *testing.T) {
	// Refreshes every ClaimIdle/3 leave 2/3 of it as slack for a loaded
	// CI machine.
	const claimIdle = 400 * time.Millisecond
	for _, tc := range []struct {
		name        string
		fail        bool // transient failures (else one attempt blocks)
		backoffBase time.Duration
		backoffMax  time.Duration
	}{
		{"retries with backoff under ClaimIdle", true, 10 * time.Millisecond, 50 * time.Millisecond},
		{"retries with backoff over ClaimIdle", true, 4 * claimIdle, 4 * claimIdle},
		{"one attempt longer than ClaimIdle", false, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			store := e.Store()
			aud, path := e.AuditLog("w1")
			gate := gatedRegistry{next: store, up: make(chan struct{}), fail: tc.fail}
			m1, m2 := failurestream.NewMetrics(), failurestream.NewMetrics()
			cfg := failurestream.Config{ClaimIdle: claimIdle, BackoffBase: tc.backoffBase, BackoffMax: tc.backoffMax, MaxDeliveries: 2}
			cfg.Metrics = m1
			w1 := e.worker("w1", cfg, e.Core(gate, aud, e.RDB), aud, e.RDB)
			cfg.Metrics = m2
			c2 := e.Client()
			w2 := e.worker("w2", cfg, e.Core(store, aud, c2), aud, c2)
			id := sagatest.PendingIDs(t, store, 1)[0]
			e.add(failure(id, "r"))
			run(t, w1)
			for deadline := time.Now().Add(10 * time.Second); e.pendingAt("w1") == 0; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("w1 did not read the entry")
				}
			}
			run(t, w2)
			time.Sleep(8 * claimIdle)
			if got := metric(t, m2, "idgen_compensate_reclaimed_total"); got != 0 {
				t.Fatalf("the peer took over %v entries of a live worker", got)
			}
			p, err := e.RDB.XPendingExt(context.Background(), &redis.XPendingExtArgs{Stream: e.Stream, Group: failurestream.DefaultGroup, Start: "-", End: "+", Count: 10}).Result()
			if err != nil || len(p) != 1 || p[0].Consumer != "w1" || p[0].RetryCount != 1 {
				t.Fatalf("pending while w1 works on it: %+v %v; want one entry at w1, delivered once", p, err)
			}
			close(gate.up)
			drained(t, w1, 10*time.Second)
			if got := metric(t, m1, "idgen_compensate_processed_total", "outcome", "applied"); got != 1 {
				t.Fatalf("applied by the live worker: %v", got)
			}
			if n := len(sagatest.AuditLines(t, audit.ActionCompensate, path)); n != 1 {
				t.Fatalf("%d audit entries", n)
			}
			if n, err := e.RDB.XLen(context.Background(), w1.DLQ()).Result(); err != nil || n != 0 {
				t.Fatalf("dead letters: %d %v", n, err)
			}
		})
	}
}

// TestTakeOverWaitsOutADeadAttemptsLease is the chaos suite's case: a
// worker died after storing an effect and claiming its audit entry, before
// writing it. The peers that take the entry over retry (ErrAuditBusy, with
// a backoff longer than ClaimIdle) until the dead attempt's lease expires;
// meanwhile they must not take the entry from each other (each takeover
// counts a delivery, and the entry would reach the dead-letter stream).
// Then one of them writes the missing entry, marked recovered, once.
func TestTakeOverWaitsOutADeadAttemptsLease(t *testing.T) {
	const lease = 3 * time.Second
	e := newEnv(t)
	store := e.Store()
	id := sagatest.PendingIDs(t, store, 1)[0]
	ctx := context.Background()
	actor := "compensate:" + failurestream.DefaultStreamSource
	if _, out, err := store.Transition(ctx, id, registry.Change{To: registry.Compensated, Reason: "r", Actor: actor, NowMS: time.Now().UnixMilli()}); err != nil || out != registry.Applied {
		t.Fatalf("the dead attempt's effect: %v %v", out, err)
	}
	core := func(aud saga.Recorder, c redis.Cmdable) *saga.Core {
		m := e.Marks(c)
		m.LeaseTTL = lease
		return &saga.Core{Registry: store, Audit: aud, Marks: m}
	}
	if won, err := core(nil, e.RDB).Marks.Claim(ctx, id, "dead-attempt"); err != nil || !won {
		t.Fatalf("the dead attempt's claim: %v %v", won, err)
	}
	e.bump("dead-1", 1, e.add(failure(id, "r"))...)

	cfg := failurestream.Config{ClaimIdle: 400 * time.Millisecond, BackoffBase: 600 * time.Millisecond, BackoffMax: 1200 * time.Millisecond, MaxDeliveries: 3}
	var paths []string
	var ms []*failurestream.Metrics
	var w *failurestream.Worker
	for _, name := range []string{"w1", "w2"} {
		aud, path := e.AuditLog(name)
		c := e.Client()
		cfg.Metrics = failurestream.NewMetrics()
		w = e.worker(name, cfg, core(aud, c), aud, c)
		run(t, w)
		paths, ms = append(paths, path), append(ms, cfg.Metrics)
	}
	start := time.Now()
	drained(t, w, 3*lease+5*time.Second)
	t.Logf("drained %v after the takeover began (lease %v)", time.Since(start), lease)
	if n, err := e.RDB.XLen(ctx, e.Stream+failurestream.DLQSuffix).Result(); err != nil || n != 0 {
		t.Fatalf("dead letters: %d %v", n, err)
	}
	if got := metric(t, ms[0], "idgen_compensate_reclaimed_total") + metric(t, ms[1], "idgen_compensate_reclaimed_total"); got != 1 {
		t.Fatalf("%v takeovers, want 1 (the dead consumer's entry, once)", got)
	}
	lines := sagatest.AuditLines(t, audit.ActionCompensate, paths...)
	if len(lines) != 1 || !lines[0].Recovered || lines[0].Resource != id.String() {
		t.Fatalf("audit entries %+v; want the dead attempt's entry once, recovered", lines)
	}
}
