package sweeper

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"

	"github.com/idgen/idgen/harness/redisharness"
	"github.com/idgen/idgen/shared/idcodec"
	"github.com/idgen/idgen/shared/platform/audit"
	"github.com/idgen/idgen/shared/registry"
	"github.com/idgen/idgen/shared/registry/pebblestore"
	"github.com/idgen/idgen/shared/registry/redisstore"
	"github.com/idgen/idgen/shared/registry/redisstore/redisstoretest"
	"github.com/idgen/idgen/shared/saga"
	"github.com/idgen/idgen/shared/saga/sagatest"
)

// registrar is what the tests use of a store besides Store.
type registrar interface {
	Store
	Register(ctx context.Context, iss registry.Issue, idemTTLMS, nowMS int64) (*registry.IdemEntry, error)
}

// refusingAudit is an audit log that refuses every entry while refuse is
// set, as a full audit disk does (the entry is not written).
type refusingAudit struct {
	next   saga.Recorder
	refuse atomic.Bool
}

var _ saga.Recorder = (*refusingAudit)(nil)

func (r *refusingAudit) Record(e audit.Event) error {
	if r.refuse.Load() {
		return errors.New("audit: no space left on device")
	}
	return r.next.Record(e)
}

// instance is one sweeping process: its sweeper, audit log and file.
type instance struct {
	s     *Sweeper
	audit *refusingAudit
	path  string
}

// env is instances sharing one registry.
type env struct {
	t     *testing.T
	reg   registrar
	g     *redisharness.Group // Redis mode: a primary with one replica
	insts []*instance
}

// newInstance adds an instance on store with marks.
func (e *env) newInstance(store Store, marks saga.Marker) *instance {
	e.t.Helper()
	path := filepath.Join(e.t.TempDir(), "audit.log")
	al, err := audit.Open(path, "sweeper-test")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = al.Close() })
	ra := &refusingAudit{next: al}
	s, err := New(Config{}, Deps{Store: store, Audit: ra, Marks: marks, Logger: zaptest.NewLogger(e.t).Named("sweeper")})
	if err != nil {
		e.t.Fatal(err)
	}
	in := &instance{s: s, audit: ra, path: path}
	e.insts = append(e.insts, in)
	return in
}

// newRedisEnv is n instances, each with a store in durable mode and a
// client of its own for the marks, sharing a primary with one replica.
func newRedisEnv(t *testing.T, n int) *env {
	t.Helper()
	g := redisharness.StartReplicatedT(t, redisharness.Options{}, 1, 0)
	e := &env{t: t, g: g}
	for range n {
		store := redisstoretest.Open(t, redisstore.Config{Addrs: []string{g.Primary().Addr()}, WaitReplicas: 1})
		rdb := redis.NewClient(&redis.Options{Addr: g.Primary().Addr(), DisableIdentity: true})
		t.Cleanup(func() { _ = rdb.Close() })
		e.reg = store
		e.newInstance(store, &saga.RedisMarks{Client: rdb, Prefix: MarkPrefix})
	}
	return e
}

// newEmbeddedEnv is one instance on a Pebble store with its marks in it.
func newEmbeddedEnv(t *testing.T) *env {
	t.Helper()
	store, err := pebblestore.Open(pebblestore.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	e := &env{t: t, reg: store}
	e.newInstance(store, &saga.StoreMarks{Store: store, Prefix: MarkPrefix})
	return e
}

// register stores n pending records whose deadline has passed.
func (e *env) register(n int, first uint64) []idcodec.ID {
	e.t.Helper()
	now := time.Now().UnixMilli()
	var iss registry.Issue
	var ids []idcodec.ID
	for i := range n {
		id := idcodec.MustCompose(idcodec.Fields{TimestampMS: uint64(now), Worker: 1, Counter: first + uint64(i)})
		ids = append(ids, id)
		iss.Records = append(iss.Records, registry.Record{ID: id, State: registry.Pending, IssuedAtMS: now, Subject: "s", DeadlineMS: now - 1000,
			History: []registry.Step{{State: registry.Pending, AtMS: now, Actor: "s"}}})
	}
	if _, err := e.reg.Register(context.Background(), iss, 0, now); err != nil {
		e.t.Fatal(err)
	}
	return ids
}

// all runs fn for every instance at once.
func (e *env) all(fn func(s *Sweeper)) {
	var wg sync.WaitGroup
	for _, in := range e.insts {
		wg.Go(func() { fn(in.s) })
	}
	wg.Wait()
}

// entries counts the compensate entries per ID across every instance's
// log, and how many are marked recovered.
func (e *env) entries() (per map[string]int, recovered int) {
	e.t.Helper()
	var paths []string
	for _, in := range e.insts {
		paths = append(paths, in.path)
	}
	lines := sagatest.AuditLines(e.t, audit.ActionCompensate, paths...)
	for _, l := range lines {
		if l.Recovered {
			recovered++
		}
	}
	return sagatest.PerResource(lines), recovered
}

// suspects is how many suspects the instances hold.
func (e *env) suspects() int {
	n := 0
	for _, in := range e.insts {
		in.s.mu.Lock()
		n += len(in.s.suspects)
		in.s.mu.Unlock()
	}
	return n
}

// checkCompensated fails unless every ID is compensated by the sweeper.
func (e *env) checkCompensated(ids []idcodec.ID) {
	e.t.Helper()
	for _, id := range ids {
		rec, err := e.reg.Get(context.Background(), id)
		st, _ := saga.LastStep(rec, registry.Compensated)
		if err != nil || rec.State != registry.Compensated || st.Actor != saga.ActorSystem || st.Reason != saga.ReasonTimeout {
			e.t.Fatalf("%s: %+v %v, want compensated by the sweeper", id, rec, err)
		}
	}
}

// checkAudited fails unless every ID is compensated by the sweeper with
// exactly one audit entry across the instances' logs.
func (e *env) checkAudited(ids []idcodec.ID) {
	e.t.Helper()
	e.checkCompensated(ids)
	per, _ := e.entries()
	for _, id := range ids {
		if c := per[id.String()]; c != 1 {
			e.t.Errorf("%s has %d audit entries across the sweepers, want 1", id, c)
		}
	}
}

// TestSweepAuditedOnce: two instances sweep the same expired IDs; each
// compensation is audited exactly once across them, its mark under
// MarkPrefix.
func TestSweepAuditedOnce(t *testing.T) {
	e := newRedisEnv(t, 2)
	ids := e.register(50, 1)
	ctx := context.Background()
	e.all(func(s *Sweeper) { _, _ = s.sweep(ctx) })
	e.all(func(s *Sweeper) { s.resolve(ctx); _, _ = s.sweep(ctx) })
	e.checkAudited(ids)
	rdb := redis.NewClient(&redis.Options{Addr: e.g.Primary().Addr(), DisableIdentity: true})
	defer func() { _ = rdb.Close() }()
	for _, id := range ids {
		if v, err := rdb.Get(ctx, "idgen:sweep:audited:"+id.String()).Result(); err != nil || v != "1" {
			t.Fatalf("mark of %s: %q %v, want the done mark under idgen:sweep:audited:", id, v, err)
		}
	}
}

// TestSweepAmbiguousWriteAudited is the regression test of a bug found by
// tests/cmd/idgen-chaos (fault 8, the replica frozen): in durable mode the
// transition script ran on the primary but WAIT timed out, so every
// sweeper got ErrUnavailable and wrote no audit entry, while the
// compensation stood (replicated once the replica thawed) and the ID had
// left the deadline index. The sweepers read such IDs again and one of
// them audits each.
func TestSweepAmbiguousWriteAudited(t *testing.T) {
	e := newRedisEnv(t, 2)
	ids := e.register(50, 1000)
	ctx := context.Background()
	replica := e.g.Replicas()[0]
	if err := replica.Stop(); err != nil {
		t.Fatal(err)
	}
	e.all(func(s *Sweeper) { _, _ = s.sweep(ctx) })
	if err := replica.Cont(); err != nil {
		t.Fatal(err)
	}
	if per, _ := e.entries(); len(per) != 0 {
		t.Fatalf("%d IDs audited while no transition was acknowledged: the setup did not make the outcome ambiguous", len(per))
	}
	for _, in := range e.insts {
		if len(in.s.suspects) == 0 {
			t.Fatal("no suspect kept after the ambiguous failures")
		}
	}
	expired, err := e.reg.Expired(ctx, time.Now().UnixMilli(), 1000)
	if err != nil || len(expired) != 0 {
		t.Fatalf("deadline index holds %d IDs (%v): the compensations should stand", len(expired), err)
	}
	// The next ticks resolve the suspects; later ones change nothing.
	for range 3 {
		e.all(func(s *Sweeper) { s.resolve(ctx); _, _ = s.sweep(ctx) })
	}
	e.checkAudited(ids)
	if n := e.suspects(); n != 0 {
		t.Errorf("%d suspects left", n)
	}
}

// TestSweepAuditRefused: the audit log refuses the entries of the
// sweeper's compensations (a full audit disk). The compensations are
// stored and the IDs kept as suspects; once the log accepts entries again,
// the next tick writes each entry, marked recovered, and later ticks write
// none: exactly one per compensation. Redis (two instances) and an
// embedded store alike.
func TestSweepAuditRefused(t *testing.T) {
	for _, c := range []struct {
		name string
		env  func(t *testing.T) *env
	}{
		{"redis", func(t *testing.T) *env { return newRedisEnv(t, 2) }},
		{"pebble", newEmbeddedEnv},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := c.env(t)
			ids := e.register(20, 5000)
			ctx := context.Background()
			for _, in := range e.insts {
				in.audit.refuse.Store(true)
			}
			e.all(func(s *Sweeper) { _, _ = s.sweep(ctx) })
			e.checkCompensated(ids)
			if per, _ := e.entries(); len(per) != 0 {
				t.Fatalf("%d IDs audited while the log refused every entry", len(per))
			}
			if n := e.suspects(); n != len(ids) {
				t.Fatalf("%d suspects, want the %d refused entries", n, len(ids))
			}
			// Still refused: the next tick writes nothing and keeps them.
			e.all(func(s *Sweeper) { s.resolve(ctx) })
			if n := e.suspects(); n != len(ids) {
				t.Fatalf("%d suspects after a tick still refused, want %d", n, len(ids))
			}
			for _, in := range e.insts {
				in.audit.refuse.Store(false)
			}
			for range 3 {
				e.all(func(s *Sweeper) { s.resolve(ctx); _, _ = s.sweep(ctx) })
			}
			e.checkAudited(ids)
			if _, rec := e.entries(); rec != len(ids) {
				t.Errorf("%d entries marked recovered, want %d (written after their attempt)", rec, len(ids))
			}
			if n := e.suspects(); n != 0 {
				t.Errorf("%d suspects left", n)
			}
		})
	}
}

// TestRunStops: Run sweeps every Interval, and returns once its context
// ends.
func TestRunStops(t *testing.T) {
	e := newEmbeddedEnv(t)
	ids := e.register(5, 9000)
	s, err := New(Config{Interval: 10 * time.Millisecond}, Deps{Store: e.reg, Audit: e.insts[0].audit, Marks: &saga.StoreMarks{Store: e.reg.(saga.MarkStore), Prefix: MarkPrefix}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if per, _ := e.entries(); len(per) == len(ids) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the expired IDs were not swept within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	e.checkAudited(ids)
}

// TestNew: the required dependencies and the config's bounds.
func TestNew(t *testing.T) {
	var (
		store Store = (*pebblestore.Store)(nil)
		rec         = &refusingAudit{}
		marks       = &saga.StoreMarks{}
	)
	for _, c := range []struct {
		name string
		cfg  Config
		d    Deps
		ok   bool
	}{
		{"complete", Config{}, Deps{Store: store, Audit: rec, Marks: marks}, true},
		{"no store", Config{}, Deps{Audit: rec, Marks: marks}, false},
		{"no audit", Config{}, Deps{Store: store, Marks: marks}, false},
		{"no marks", Config{}, Deps{Store: store, Audit: rec}, false},
		{"negative interval", Config{Interval: -time.Second}, Deps{Store: store, Audit: rec, Marks: marks}, false},
		{"negative idempotency TTL", Config{IdempotencyTTL: -time.Second}, Deps{Store: store, Audit: rec, Marks: marks}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := New(c.cfg, c.d)
			if (err == nil) != c.ok {
				t.Fatalf("New: %v, want ok %v", err, c.ok)
			}
			if c.ok && (s.cfg.Interval != DefaultInterval || s.cfg.IdempotencyTTL != DefaultIdempotencyTTL || len(s.purge) != 1) {
				t.Fatalf("defaults: %+v, %d purgers; want 1s, 24h and the marks purged", s.cfg, len(s.purge))
			}
		})
	}
}
